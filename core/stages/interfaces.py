"""The stages' interfaces, as :class:`typing.Protocol` classes a type checker holds the code to (``make typecheck``,
part of ``make test``): what a stage asks of its objective, what an objective asks of its guidance, and what the
mesh loop reads of its config. Any class with these members fits; nothing here is a base class to inherit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..render.shading import ShadingConfig
    from ..render.volume import VolumeRenderer
    from ..scene.cameras import Cameras
    from ..scene.field import NeRFField
    from ..scene.occupancy import OccupancyGrid

#: ``points [N, 3] -> albedo [N, 3]``: the colour of surface points (the colour field's ``albedo``).
ColorFn = Callable[[Tensor], Tensor]


class ScoreGuidance(Protocol):
    """A diffusion prior's verdict on renders (score distillation): ``loss_sds`` (and diagnostics) for images
    ``rgb [B, H, W, 3]`` seen from ``azimuth`` / ``elevation`` (degrees, ``[B]``) at step ``step`` of ``total_steps``
    (the timestep schedule may depend on it). :class:`~dreamsmith.core.guidance.sds.SDSGuidance` is one."""

    def __call__(self, rgb: Tensor, azimuth: Tensor, elevation: Tensor, step: int, total_steps: int,
                 generator: torch.Generator) -> dict[str, Tensor]: ...


class PosedGuidance(Protocol):
    """Posed images as a target (reconstruction): random rays or whole views with their pixels, and the photometric
    loss. :class:`~dreamsmith.core.guidance.reference.ReferenceGuidance` is one."""

    device: torch.device
    h: int
    w: int

    def sample_rays(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]: ...

    def sample_views(self, n: int, generator: torch.Generator) -> tuple[Cameras, Tensor]: ...

    def loss(self, rgb: Tensor, opacity: Tensor, target: Tensor, bg: Tensor) -> Tensor: ...


class CoarseObjective(Protocol):
    """What :func:`~.coarse.train_coarse` optimises: a step's loss from the field, its occupancy grid and renderer
    (views sampled by the objective itself), what to change when that loss stops being finite, and the shading its
    renders are made with (the renderer is made with its light and background)."""

    @property
    def diverged(self) -> str: ...

    @property
    def shading(self) -> ShadingConfig: ...

    def __call__(self, field: NeRFField, occupancy: OccupancyGrid, renderer: VolumeRenderer, step: int, total: int,
                 generator: torch.Generator) -> Tensor: ...


class MeshObjectiveFn(Protocol):
    """What :func:`~.mesh.train_mesh` optimises: a step's loss from the surface ``verts [V, 3]``, ``faces [F, 3]``
    and its colour, and what to change when that loss stops being finite."""

    @property
    def diverged(self) -> str: ...

    def __call__(self, verts: Tensor, faces: Tensor, color_fn: ColorFn, step: int, total: int,
                 generator: torch.Generator) -> Tensor: ...


class ColorRate(Protocol):
    """A stage's learning rates, of which the mesh loop reads the colour field's."""

    color: float


class ColorSchedule(Protocol):
    """What the mesh loop reads of any stage config: its steps, the colour field's learning rate and the preview
    interval (a re-texture's stage is no more than this; the mesh stage's config adds the geometry's)."""

    steps: int
    preview_every: int

    @property
    def lr(self) -> ColorRate: ...
