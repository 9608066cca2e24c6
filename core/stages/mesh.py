"""Stage 2: the mesh stage. The coarse density becomes an SDF on a tetrahedral grid (DMTet, :mod:`.surface`); the
iso-surface, its vertex offsets and the colour field are optimised through the rasteriser against an objective
(posed images or score distillation). Re-texturing runs the same loop with the geometry frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ..geometry.dmtet import DMTetConfig, DMTetGeometry
from ..geometry.mesh_ops import NormalForm, laplacian_loss, normal_consistency_loss
from ..render.preview import mesh_preview
from ..render.shading import ShadingConfig
from ..runtime.errors import ConfigError, NumericalError
from ..runtime.events import StageReporter
from ..scene.cameras import ViewSamplerConfig
from .interfaces import ColorSchedule, MeshObjectiveFn
from .loop import adam, run_steps


@dataclass
class ColorLearningRates:
    """The optimiser of a stage that trains the colour alone (a re-texture).

    Attributes:
        color: Adam's learning rate of the colour field (hash grid and albedo head).
    """

    color: float = 1e-2


@dataclass
class MeshLearningRates(ColorLearningRates):
    """The mesh stage's optimiser: Adam's learning rate of each part (apart from what the stage is scored by).

    Attributes:
        color: Adam's learning rate of the colour field (hash grid and albedo head).
        sdf: Of the SDF values, in units of grid cells.
        deform: Of the vertex offsets.
    """

    sdf: float = 0.05
    deform: float = 0.01


@dataclass
class MeshStageConfig:
    """The mesh stage.

    Attributes:
        steps: Optimisation steps.
        render_size: Longer side of the rendered images (posed images are resized to it).
        lr: The optimiser's learning rates (colour, SDF, offsets).
        iso_density: Density of the coarse field taken as the surface, times the box diagonal (scale-free).
        laplacian_weight: Weight of the uniform Laplacian smoothness term.
        normal_weight: Weight of the normal-consistency term.
        normal_form: How that term weighs the angle between adjacent faces
            (:data:`~dreamsmith.core.geometry.mesh_ops.NORMAL_FORMS`): ``"cosine"``, ``1 - cos`` (threestudio's:
            it rounds edges); ``"angle"``, about the angle itself (flat faces with sharp edges).
        sdf_weight: Weight of the SDF sign-flip regulariser.
        min_component_fraction: Pieces smaller than this fraction of the largest are dropped.
        box: Where the tet grid's cells go: ``"scene"``, the whole scene box; ``"object"``, the box around the
            coarse object grown by ``box_margin`` (about twice the resolution on the object, as threestudio's
            Magic3D refinement does).
        box_margin: The object box's growth on each side, as a fraction of its size (``box: object``).
        start: How the coarse density becomes the first SDF (:func:`.surface.initial_sdf`): ``"occupancy"``, the
            distance to the cleaned occupancy; ``"density"``, continuous in the density, keeping the surface's
            position between grid points (threestudio's start).
        dmtet: The tetrahedral grid.
        preview_every: Steps between live preview images when the caller asks for them (0: none).
    """

    steps: int = 400
    render_size: int = 128
    lr: MeshLearningRates = field(default_factory=MeshLearningRates)
    iso_density: float = 50.0
    laplacian_weight: float = 0.05
    normal_weight: float = 0.05
    normal_form: NormalForm = "cosine"
    sdf_weight: float = 0.01
    min_component_fraction: float = 0.05
    box: Literal["scene", "object"] = "scene"
    box_margin: float = 0.1
    start: Literal["occupancy", "density"] = "occupancy"
    dmtet: DMTetConfig = field(default_factory=DMTetConfig)
    preview_every: int = 50


@dataclass
class MeshReferenceConfig:
    """The mesh stage against posed images (reconstruction).

    Attributes:
        views_per_step: Posed images rendered and compared per step.
    """

    views_per_step: int = 4


@dataclass
class MeshSDSConfig:
    """The mesh stage under score distillation (text to 3D, edits and re-texturing).

    Attributes:
        shading: Mode or mix of modes, light and background of the renders (as the coarse stage's; a ``mixed``
            mode lets the prior see the albedo that the bake exports; no ``learned`` background here).
        views: The camera distribution.
    """

    shading: ShadingConfig = field(default_factory=lambda: ShadingConfig(lambertian_prob=0.375,
                                                                         textureless_prob=0.375))
    views: ViewSamplerConfig = field(default_factory=ViewSamplerConfig)

    def __post_init__(self) -> None:
        if self.shading.background == "learned":
            raise ConfigError("mesh_sds.shading.background cannot be 'learned' (the baked texture holds the albedo "
                              "only); choose white, black or random.")


def geometry_regularizers(cfg: MeshStageConfig, geo: DMTetGeometry, verts: Tensor, faces: Tensor) -> Tensor:
    """Weighted smoothness (Laplacian, normal consistency) and SDF sign-flip terms of the mesh stage."""
    loss = verts.new_zeros(())
    if cfg.laplacian_weight > 0:
        loss = loss + cfg.laplacian_weight * laplacian_loss(verts, faces) / geo.cell_size ** 2
    if cfg.normal_weight > 0:
        loss = loss + cfg.normal_weight * normal_consistency_loss(verts, faces, cfg.normal_form)
    if cfg.sdf_weight > 0:
        loss = loss + cfg.sdf_weight * geo.sdf_edge_regularizer()
    return loss


def geometry_config(cfg: ColorSchedule) -> MeshStageConfig:
    """``cfg`` as the mesh stage's config, which training the geometry needs (a colour-only config cannot)."""
    if not isinstance(cfg, MeshStageConfig):
        raise TypeError(f"training the geometry needs a MeshStageConfig, not {type(cfg).__name__}; "
                        "freeze the geometry to train the colour alone")
    return cfg


def mesh_optimizer(cfg: ColorSchedule, color_field, geo: DMTetGeometry | None,
                   stage: MeshStageConfig | None = None) -> torch.optim.Adam:
    """The colour field at ``cfg.lr.color``; with ``geo``, also its SDF (``stage.lr.sdf`` grid cells) and offsets
    (``stage``: the mesh stage's config, :func:`geometry_config`)."""
    groups = [{"params": color_field.color_parameters(), "lr": cfg.lr.color}]
    if geo is not None:
        stage = stage or geometry_config(cfg)
        groups += [{"params": [geo.sdf], "lr": stage.lr.sdf * geo.cell_size},
                   {"params": [geo.deform], "lr": stage.lr.deform}]
    return adam(groups)


def train_mesh(cfg: ColorSchedule, objective: MeshObjectiveFn, color_field, geo, generator: torch.Generator,
               reporter: StageReporter, freeze_geometry: bool = False, preview_fn=None):
    """Optimise the geometry (unless frozen) and the colour field against ``objective``; returns ``geo``.

    Args:
        cfg: A :class:`MeshStageConfig`; with the geometry frozen, any :class:`~.interfaces.ColorSchedule` (a
            re-texture's stage).
        objective: ``(verts, faces, color_fn, step, total, generator) -> loss`` with a ``diverged`` message
            (:class:`~.objectives.PosedViews`, :class:`~.objectives.MeshScoreDistillation`).
        color_field: A :class:`~dreamsmith.core.scene.field.NeRFField` whose ``albedo`` colours the surface; its
            :meth:`~dreamsmith.core.scene.field.NeRFField.color_parameters` are optimised.
        geo: A :class:`DMTetGeometry`, already initialised (:func:`.surface.init_geometry`), or, frozen, any module
            whose call gives ``(verts, faces)``.
        generator: The job's random generator.
        reporter: Progress and cancellation.
        freeze_geometry: Optimise only the colour (re-texturing).
        preview_fn: Optional ``(geo, color_field) -> uint8 image``.
    """
    stage = None if freeze_geometry else geometry_config(cfg)
    frozen = None
    if freeze_geometry:
        with torch.no_grad():
            frozen = geo()

    def loss(step: int) -> Tensor:
        verts, faces = frozen if frozen is not None else geo()
        if faces.shape[0] == 0:
            raise NumericalError("The mesh stage lost the surface (no faces); lower mesh.lr.sdf or the guidance scale, "
                                 "or use a larger preset.")
        value = objective(verts, faces, color_field.albedo, step, cfg.steps, generator)
        return value if stage is None else value + geometry_regularizers(stage, geo, verts, faces)

    run_steps(cfg.steps, mesh_optimizer(cfg, color_field, None if stage is None else geo, stage), loss, reporter,
              objective.diverged, cfg.preview_every,
              None if preview_fn is None else lambda: preview_fn(geo, color_field))
    return geo


def mesh_stage_preview(scene_radius: float, sds: MeshSDSConfig):
    """The mesh stage's live preview (:func:`~..render.preview.mesh_preview`) under its score-distillation light,
    on its background (white for ``random``)."""
    return mesh_preview(scene_radius, background=0.0 if sds.shading.background == "black" else 1.0,
                        light=sds.shading.light)
