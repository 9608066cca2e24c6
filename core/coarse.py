"""Stage 1: the coarse hash-grid NeRF, optimised against the guidance."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

import torch
from torch import Tensor

from .cameras import ViewSamplerConfig, sample_views
from .errors import NumericalError
from .events import StageReporter
from .field import FieldConfig, NeRFField
from .guidance.reference import ReferenceGuidance
from .occupancy import OccupancyConfig, OccupancyGrid
from .volume import VolumeConfig, VolumeRenderer, render_rays


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
        preview_every: Steps between live preview images when the caller asks for them (0: none).
    """

    steps: int = 1500
    rays_per_step: int = 4096
    lr: float = 1e-2
    lr_mlp: float = 1e-3
    opacity_weight: float = 1.0
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    occupancy: OccupancyConfig = dc_field(default_factory=OccupancyConfig)
    volume: VolumeConfig = dc_field(default_factory=VolumeConfig)
    preview_every: int = 50


def make_optimizer(model: NeRFField, lr_grid: float, lr_mlp: float, *others: torch.nn.Module) -> torch.optim.Adam:
    """Adam with separate learning rates for hash tables and MLP weights (instant-ngp style eps); the parameters of
    ``others`` (the learned background) train at the MLP rate."""
    grid, mlp = [], []
    for name, p in model.named_parameters():
        (grid if "encoding" in name or "table" in name else mlp).append(p)
    mlp += [p for module in others for p in module.parameters()]
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


@dataclass
class CoarseSDSConfig:
    """The coarse stage under score distillation (text to 3D).

    Attributes:
        render_size: Rendered image size (the pixel prior's resolution, or a multiple of it).
        shading: Shading of the renders: ``albedo``, ``lambertian`` or ``textureless``; ``mixed`` draws
            per step with ``lambertian_prob`` / ``textureless_prob`` after ``shading_warmup`` albedo-only steps
            (DreamFusion's shading augmentation).
        lambertian_prob: Probability of lambertian shading in ``mixed`` mode.
        textureless_prob: Probability of textureless shading in ``mixed`` mode.
        shading_warmup: Albedo-only steps before ``mixed`` shading starts.
        sparsity_weight: Weight of the mean-opacity (sparsity) penalty that clears haze.
        views: The camera distribution.
    """

    render_size: int = 32
    shading: Literal["albedo", "lambertian", "textureless", "mixed"] = "lambertian"
    lambertian_prob: float = 0.5
    textureless_prob: float = 0.2
    shading_warmup: int = 100
    sparsity_weight: float = 0.1
    views: ViewSamplerConfig = dc_field(default_factory=ViewSamplerConfig)


def pick_shading(cfg: CoarseSDSConfig, step: int, generator: torch.Generator) -> str:
    """The shading mode of this step."""
    if cfg.shading != "mixed":
        return cfg.shading
    if step <= cfg.shading_warmup:
        return "albedo"
    r = float(torch.rand(1, generator=generator))
    if r < cfg.textureless_prob:
        return "textureless"
    return "lambertian" if r < cfg.textureless_prob + cfg.lambertian_prob else "albedo"


def train_coarse_sds(cfg: CoarseConfig, sds_cfg: CoarseSDSConfig, guidance, bbox: Tensor, device: torch.device,
                     generator: torch.Generator, reporter: StageReporter,
                     preview_fn=None, density_prior: Tensor | None = None
                     ) -> tuple[NeRFField, OccupancyGrid, VolumeRenderer]:
    """Optimise the coarse NeRF by score distillation.

    The renderer is made here with the field: with ``cfg.volume.background == "learned"`` it owns the background
    MLP, which trains in the same optimiser and is returned with the field (the engine state keeps it).

    Args:
        cfg: Field, occupancy, renderer and optimiser settings (shared with the reference path).
        sds_cfg: Views, shading and regularisers of the SDS path.
        guidance: Callable ``(rgb [B, H, W, 3], azimuth [B], elevation [B], step, total, generator) -> dict`` with
            ``loss_sds``.
        bbox: ``[2, 3]`` scene box.
        device: Where to optimise.
        generator: The job's random generator (CPU).
        reporter: Progress and cancellation.
        preview_fn: Optional ``(field, occupancy, renderer) -> uint8 image`` called every ``cfg.preview_every``
            steps.
        density_prior: Optional ``[R, R, R]`` raw density over the box the field starts from (an edit's mesh;
            see :meth:`NeRFField.set_density_prior`).
    """
    model = NeRFField(cfg.field, bbox.to(device)).to(device)
    if density_prior is not None:
        model.set_density_prior(density_prior.to(device))
    occ = OccupancyGrid(cfg.occupancy, bbox.to(device)).to(device)
    renderer = VolumeRenderer(cfg.volume).to(device)
    opt = make_optimizer(model, cfg.lr, cfg.lr_mlp, renderer)
    for step in range(1, cfg.steps + 1):
        occ.update(model, step)
        cams, az, el = sample_views(sds_cfg.views, sds_cfg.render_size, generator)
        shading = pick_shading(sds_cfg, step, generator)
        out = renderer.render_image(model, cams, occ, shading=shading, perturb=True, generator=generator)
        g = guidance(out["rgb"], az.to(device), el.to(device), step, cfg.steps, generator)
        loss = g["loss_sds"]
        if sds_cfg.sparsity_weight > 0:
            loss = loss + sds_cfg.sparsity_weight * out["opacity"].mean()
        if not torch.isfinite(loss):
            raise NumericalError("The coarse stage diverged (NaN loss); lower the guidance scale or learning rate.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        preview = None
        if preview_fn is not None and cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
            preview = preview_fn(model, occ, renderer)
        reporter.step(step, loss.item(), preview=preview)
    return model, occ, renderer
