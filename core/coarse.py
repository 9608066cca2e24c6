"""Stage 1: the coarse hash-grid NeRF, optimised against the guidance."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import torch
from torch import Tensor

from .errors import NumericalError
from .events import StageReporter
from .field import FieldConfig, NeRFField
from .guidance.reference import ReferenceGuidance
from .occupancy import OccupancyConfig, OccupancyGrid
from .volume import VolumeConfig, render_rays


@dataclass
class CoarseConfig:
    """The coarse stage.

    Attributes:
        steps: Optimisation steps.
        rays_per_step: Random rays per step (reference guidance).
        lr: Adam learning rate of the hash table.
        lr_mlp: Adam learning rate of the MLP heads.
        opacity_weight: Extra weight on matching the images' alpha (carves empty space).
        field: The NeRF field.
        occupancy: The occupancy grid that skips empty space.
        volume: The volume renderer.
        preview_every: Steps between preview images (0: none).
    """

    steps: int = 1500
    rays_per_step: int = 4096
    lr: float = 1e-2
    lr_mlp: float = 1e-3
    opacity_weight: float = 1.0
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    occupancy: OccupancyConfig = dc_field(default_factory=OccupancyConfig)
    volume: VolumeConfig = dc_field(default_factory=VolumeConfig)
    preview_every: int = 0


def make_optimizer(model: NeRFField, lr_grid: float, lr_mlp: float) -> torch.optim.Adam:
    """Adam with separate learning rates for hash tables and MLP weights (instant-ngp style eps)."""
    grid, mlp = [], []
    for name, p in model.named_parameters():
        (grid if "encoding" in name or "table" in name else mlp).append(p)
    groups = [{"params": grid, "lr": lr_grid}]
    if mlp:
        groups.append({"params": mlp, "lr": lr_mlp})
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)


def train_coarse_reference(cfg: CoarseConfig, guidance: ReferenceGuidance, bbox: Tensor, generator: torch.Generator,
                           reporter: StageReporter) -> tuple[NeRFField, OccupancyGrid]:
    """Fit the coarse NeRF to posed images; returns the field and its occupancy grid."""
    dev = guidance.device
    model = NeRFField(cfg.field, bbox.to(dev)).to(dev)
    occ = OccupancyGrid(cfg.occupancy, bbox.to(dev)).to(dev)
    opt = make_optimizer(model, cfg.lr, cfg.lr_mlp)
    for step in range(1, cfg.steps + 1):
        occ.update(model, step)
        o, d, target = guidance.sample_rays(cfg.rays_per_step, generator)
        bg = torch.rand(o.shape[0], 3, generator=generator).to(dev)
        out = render_rays(model, o, d, cfg.volume, occupancy=occ, bg_color=bg, perturb=True, generator=generator)
        loss = guidance.loss(out["rgb"], out["opacity"], target, bg)
        if cfg.opacity_weight > 0:
            loss = loss + cfg.opacity_weight * (out["opacity"] - target[:, 3]).abs().mean()
        if not torch.isfinite(loss):
            raise NumericalError("The coarse stage diverged (NaN loss); lower the learning rate or try another seed.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reporter.step(step, loss.item())
    return model, occ
