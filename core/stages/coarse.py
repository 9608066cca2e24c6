"""Stage 1: the coarse hash-grid NeRF, optimised against an objective (posed images or score distillation)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

import torch
from torch import Tensor

from ..render.shading import ShadingConfig
from ..render.volume import VolumeConfig, VolumeRenderer
from ..runtime.errors import ConfigError
from ..runtime.events import StageReporter
from ..scene.cameras import ViewSamplerConfig
from ..scene.field import FieldConfig, NeRFField
from ..scene.occupancy import OccupancyConfig, OccupancyGrid
from .interfaces import CoarseObjective
from .loop import adam, run_steps


@dataclass
class CoarseLearningRates:
    """The coarse stage's optimiser: Adam's learning rate of each part (apart from what the stage is scored by).

    Attributes:
        grid: The hash table.
        mlp: The MLP heads (and the learned background, unless ``background``).
        background: The learned background; None: ``mlp``.
    """

    grid: float = 1e-2
    mlp: float = 1e-3
    background: float | None = None


@dataclass
class CoarseConfig:
    """The coarse stage.

    Attributes:
        steps: Optimisation steps.
        lr: The optimiser's learning rates.
        field: The NeRF field.
        occupancy: The occupancy grid that skips empty space.
        volume: The volume renderer.
        preview_every: Steps between live preview images when the caller asks for them (0: none).
    """

    steps: int = 1500
    lr: CoarseLearningRates = dc_field(default_factory=CoarseLearningRates)
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    occupancy: OccupancyConfig = dc_field(default_factory=OccupancyConfig)
    volume: VolumeConfig = dc_field(default_factory=VolumeConfig)
    preview_every: int = 50


@dataclass
class CoarseReferenceConfig:
    """The coarse stage against posed images (reconstruction), as ``mesh_reference`` is the mesh stage's.

    Attributes:
        rays_per_step: Random rays per step.
        opacity_weight: Extra weight on matching the images' alpha (carves empty space).
    """

    rays_per_step: int = 4096
    opacity_weight: float = 1.0


@dataclass
class CoarseSDSConfig:
    """The coarse stage under score distillation (text to 3D).

    Attributes:
        render_size: Rendered image size (the pixel prior's resolution, or a multiple of it).
        shading: Mode or mix of modes, light and background of the renders (a learned background trains with the
            field).
        sparsity_weight: Weight of the sparsity penalty that clears haze.
        sparsity_form: ``"mean"``: the mean opacity; ``"sqrt"``: the mean of ``sqrt(opacity^2 + 0.01)``
            (threestudio's Magic3D form).
        orientation: ``(first, last, steps)``: the weight of the orientation penalty (normals facing away from
            the camera where the ray sees them, Ref-NeRF / DreamFusion) rises linearly from ``first`` to ``last``
            over the first ``steps`` steps, then stays; ``(0, 0, 0)``: off. Any weight makes every view evaluate
            normals, albedo views included.
        views: The camera distribution.
    """

    render_size: int = 32
    shading: ShadingConfig = dc_field(default_factory=lambda: ShadingConfig(warmup=100))
    sparsity_weight: float = 0.1
    sparsity_form: Literal["mean", "sqrt"] = "mean"
    orientation: tuple[float, float, int] = (0.0, 0.0, 0)
    views: ViewSamplerConfig = dc_field(default_factory=ViewSamplerConfig)

    def __post_init__(self) -> None:
        if self.sparsity_form not in ("mean", "sqrt"):
            raise ConfigError(f"coarse_sds.sparsity_form must be 'mean' or 'sqrt' (got {self.sparsity_form!r}).")
        if len(self.orientation) != 3 or min(self.orientation[:2]) < 0 or self.orientation[2] < 0:
            raise ConfigError(f"coarse_sds.orientation is (first weight, last weight, steps), all >= 0 (got "
                              f"{self.orientation!r}).")
        self.orientation = (float(self.orientation[0]), float(self.orientation[1]), int(self.orientation[2]))

    def orientation_weight(self, step: int) -> float:
        """The orientation penalty's weight at ``step``."""
        first, last, steps = self.orientation
        return last if step >= steps else first + (last - first) * step / steps

def coarse_optimizer(cfg: CoarseConfig, field: NeRFField, renderer: VolumeRenderer) -> torch.optim.Adam:
    """The hash grid at ``cfg.lr.grid``; the MLP heads at ``cfg.lr.mlp``; the renderer's learned background at
    ``cfg.lr.background`` (None: with the MLP heads)."""
    lr = cfg.lr
    grid = field.grid_parameters()
    in_grid = {id(p) for p in grid}
    mlp = [p for p in field.parameters() if id(p) not in in_grid]
    background = list(renderer.parameters())
    if lr.background is None:
        return adam([{"params": grid, "lr": lr.grid}, {"params": mlp + background, "lr": lr.mlp}])
    return adam([{"params": grid, "lr": lr.grid}, {"params": mlp, "lr": lr.mlp},
                 {"params": background, "lr": lr.background}])


def train_coarse(cfg: CoarseConfig, objective: CoarseObjective, bbox: Tensor, device: torch.device,
                 generator: torch.Generator, reporter: StageReporter, preview_fn=None,
                 density_prior: Tensor | None = None) -> tuple[NeRFField, OccupancyGrid, VolumeRenderer]:
    """Optimise a coarse NeRF against ``objective``.

    The renderer is made here with the field, under the objective's shading: with a ``learned`` background it owns
    the background MLP, which trains in the same optimiser and is returned with the field (the engine state keeps it).

    Args:
        cfg: Field, occupancy, renderer, steps and learning rates.
        objective: ``(field, occupancy, renderer, step, total, generator) -> loss`` with a ``diverged`` message
            (:class:`~.objectives.PosedRays`, :class:`~.objectives.ScoreDistillation`).
        bbox: ``[2, 3]`` scene box.
        device: Where to optimise.
        generator: The job's random generator (CPU).
        reporter: Progress and cancellation.
        preview_fn: Optional ``(field, occupancy, renderer) -> uint8 image`` called every ``cfg.preview_every``
            steps.
        density_prior: Optional ``[R, R, R]`` raw density over the box the field starts from (an edit's mesh;
            see :meth:`NeRFField.set_density_prior`).
    """
    field = NeRFField(cfg.field, bbox.to(device)).to(device)
    if density_prior is not None:
        field.set_density_prior(density_prior.to(device))
    occ = OccupancyGrid(cfg.occupancy, bbox.to(device)).to(device)
    renderer = VolumeRenderer(cfg.volume, objective.shading).to(device)

    def loss(step: int) -> Tensor:
        occ.update(field, step)
        return objective(field, occ, renderer, step, cfg.steps, generator)

    run_steps(cfg.steps, coarse_optimizer(cfg, field, renderer), loss, reporter, objective.diverged,
              cfg.preview_every, None if preview_fn is None else lambda: preview_fn(field, occ, renderer))
    return field, occ, renderer
