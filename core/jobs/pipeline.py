"""The one pipeline every shape-making job runs: coarse field -> surface -> mesh stage -> bake.

A job says what differs in a :class:`Pipeline` (what each stage is scored by, where the coarse field starts, how the
surface is carved, or a saved field and surface to start the mesh stage from) and :func:`run_pipeline` runs it:
text to 3D and image to 3D (:mod:`.generate`), edits (:mod:`.edit`: from a mesh's shape, or from a saved state)
and reconstruction from posed images (:mod:`.reconstruct`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..finish.bake import BakeConfig
from ..geometry.dmtet import DMTetGeometry
from ..meshio import TexturedMesh
from ..render.volume import VolumeRenderer
from ..runtime.events import CancelToken, ProgressCallback, StageReporter, StageTimes
from ..scene.field import NeRFField
from ..stages.coarse import CoarseConfig, train_coarse
from ..stages.interfaces import CoarseObjective, MeshObjectiveFn
from ..stages.mesh import MeshStageConfig, train_mesh
from ..stages.surface import init_geometry
from .io import finish_mesh


@dataclass
class Carving:
    """How the coarse field becomes the mesh stage's starting surface (:func:`~..stages.surface.init_geometry`).

    Attributes:
        carve: Optional ``points -> keep`` mask: space the inputs show to be empty (posed images, the picture).
        source: What the field was fitted to ("images" or "text"): how its density is read.
        hull_fallback: When the iso-surface is too thin, start from the occupied cells' hull.
        carve_after_cleaning: Carve after dropping small pieces instead of before.
    """

    carve: Callable[[Tensor], Tensor] | None = None
    source: str = "images"
    hull_fallback: bool = True
    carve_after_cleaning: bool = False


@dataclass
class Pipeline:
    """One job's coarse -> surface -> mesh -> bake.

    Attributes:
        name: The result's name.
        mesh: The mesh stage's settings.
        mesh_objective: Made when the mesh stage begins (it may load the mesh stage's prior): what it is scored by.
        bake: The final surface's unwrap, texture, budget and levels.
        keep_fraction: Pieces of the final surface smaller than this fraction of it are dropped.
        coarse: The coarse stage's settings (unused with ``start``).
        coarse_objective: What the coarse stage is scored by (unused with ``start``).
        carving: How the coarse field becomes the starting surface.
        density_prior: Optional ``[R, R, R]`` raw density the coarse field starts from (an edit's mesh).
        start: A saved coarse field and surface: the mesh stage starts from them (no coarse stage).
        mesh_stage: The mesh stage's name in progress and seconds ("mesh"; "edit" for an edit of a state).
        coarse_every: Steps between the coarse stage's progress events.
        coarse_preview: Optional ``(field, occupancy, renderer) -> image`` while the coarse stage trains.
        mesh_preview: Optional ``(geometry, colour field) -> image`` while the mesh stage trains.
    """

    name: str
    mesh: MeshStageConfig
    mesh_objective: Callable[[], MeshObjectiveFn]
    bake: BakeConfig
    keep_fraction: float
    coarse: CoarseConfig | None = None
    coarse_objective: CoarseObjective | None = None
    carving: Carving = field(default_factory=Carving)
    density_prior: Tensor | None = None
    start: tuple[NeRFField, DMTetGeometry] | None = None
    mesh_stage: str = "mesh"
    coarse_every: int = 5
    coarse_preview: Callable | None = None
    mesh_preview: Callable | None = None


@dataclass
class PipelineResult:
    """What a pipeline made: the textured mesh, and the field, surface and renderer it came from (for a state)."""

    mesh: TexturedMesh
    field: NeRFField
    geometry: DMTetGeometry
    renderer: VolumeRenderer | None


def run_pipeline(spec: Pipeline, bbox: Tensor, dev: torch.device, gen: torch.Generator, times: StageTimes,
                 callback: ProgressCallback | None = None, cancel: CancelToken | None = None) -> PipelineResult:
    """Run ``spec`` in the scene box ``bbox`` on ``dev`` with the job's generator; seconds per stage go to
    ``times`` ("coarse", the mesh stage's name, "bake")."""
    renderer = None
    if spec.start is None:
        assert spec.coarse is not None and spec.coarse_objective is not None, "a pipeline without a start trains one"
        with times.stage("coarse"):
            model, _, renderer = train_coarse(spec.coarse, spec.coarse_objective, bbox, dev, gen,
                                              StageReporter("coarse", spec.coarse.steps, callback, cancel,
                                                            every=spec.coarse_every),
                                              preview_fn=spec.coarse_preview, density_prior=spec.density_prior)
        spec.coarse_objective = None  # let its prior go before the mesh stage loads its own
        with times.stage(spec.mesh_stage):  # the mesh stage's prior (when it has its own), its starting surface
            objective = spec.mesh_objective()
            c = spec.carving
            geo = init_geometry(spec.mesh, bbox, dev, model.density, c.carve, source=c.source,
                                hull_fallback=c.hull_fallback, carve_after_cleaning=c.carve_after_cleaning)
    else:
        model, geo = spec.start
        with times.stage("load"):
            objective = spec.mesh_objective()
    with times.stage(spec.mesh_stage):
        train_mesh(spec.mesh, objective, model, geo, gen,
                   StageReporter(spec.mesh_stage, spec.mesh.steps, callback, cancel, every=5),
                   preview_fn=spec.mesh_preview)
    with times.stage("bake"):
        reporter = StageReporter("bake", 1, callback, cancel)
        mesh = finish_mesh(geo, model.albedo, spec.bake, spec.keep_fraction, spec.name[:60])
        reporter.step(1)
    return PipelineResult(mesh, model, geo, renderer)
