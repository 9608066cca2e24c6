"""Re-texture an existing mesh from a prompt, its geometry fixed.

Reads any GLB/glTF/OBJ (node transforms applied, several primitives merged), renders a copy of it in the
prior's frame (centred, its bounding sphere scaled to ``fit_radius``) while SDS optimises a colour field on
its surface, and bakes that field onto the mesh's own UVs when they are usable, else onto a fresh xatlas
unwrap. The output keeps the input's vertex positions and faces bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...protocol import SD21_BASE
from ..finish.bake import BakeConfig, bake_texture, unwrap
from ..guidance.sds import SDSConfig
from ..meshio import TexturedMesh
from ..priors.models import PriorConfig, load_prior
from ..priors.prompts import PromptConfig
from ..runtime.device import seeded_job
from ..runtime.errors import InputError
from ..runtime.events import CancelToken, ProgressCallback, StageReporter, StageTimes
from ..scene.field import FieldConfig, HashGridConfig, NeRFField
from ..settings.presets import RETEXTURE_PRESETS, config_maker
from ..stages.mesh import ColorLearningRates, MeshSDSConfig, mesh_stage_preview, train_mesh
from ..stages.objectives import MeshScoreDistillation
from .generate import make_guidance
from .io import check_inputs, read_input, result_extras, result_summary, write_outputs


@dataclass
class UVCheckConfig:
    """When a mesh's own UVs are good enough to bake onto.

    Attributes:
        max_overlap: Largest fraction of UV area covered twice or more (mirrored or stacked islands).
        max_degenerate: Largest fraction of the surface (by 3D area) whose faces have no UV area.
        check_size: Side of the grid the overlap is measured on.
    """

    max_overlap: float = 0.05
    max_degenerate: float = 0.02
    check_size: int = 512


#: The most faces a re-texture takes (each step rasterises the whole mesh; the bake covers every face).
MAX_RETEXTURE_FACES = 2_000_000


@dataclass
class TextureStageConfig:
    """The texture stage of a re-texture: the mesh stage with its geometry frozen, so only what the colour uses.

    Attributes:
        steps: Optimisation steps.
        render_size: Side of the rendered images.
        lr: The optimiser's learning rate (the colour field's).
        preview_every: Steps between live preview images when the caller asks for them (0: none).
    """

    steps: int = 400
    render_size: int = 128
    lr: ColorLearningRates = field(default_factory=ColorLearningRates)
    preview_every: int = 50


@dataclass
class RetextureConfig:
    """A re-texturing (or editing) job.

    Attributes:
        seed: Seed of every random choice.
        fit_radius: Radius of the bounding sphere the mesh is scaled to in the prior's frame.
        fine_model: The prior (pixel or latent); a re-texture is a mesh stage, so its prior is the fine one (every
            job names its priors ``coarse_model`` / ``fine_model``).
        prompt: View-dependent prompting.
        color_field: The colour field optimised on the surface (its density head is unused).
        fine_guidance: SDS settings (the mesh stage's, as in every job).
        mesh: The mesh stage with its surface fixed: steps, render size, the colour's learning rate, preview
            interval.
        mesh_sds: Views, shading and background (as a generate's ``mesh_sds``).
        bake: Texture size and padding (and unwrapping when the UVs are not usable).
        uv_check: When the mesh's UVs are used.
        allow_new_uvs: Unwrap the mesh when its UVs are not usable; False: refuse instead (the Blender add-on sets
            this when modifiers change the topology, as new UVs could not be put on the original mesh).
    """

    seed: int = 0
    fit_radius: float = 0.6
    fine_model: PriorConfig = field(default_factory=lambda: PriorConfig(model=SD21_BASE))
    prompt: PromptConfig = field(default_factory=PromptConfig)
    color_field: FieldConfig = field(default_factory=lambda: FieldConfig(
        grid=HashGridConfig(n_levels=8, log2_hashmap_size=16, base_resolution=16, finest_resolution=512),
        density_bias="none"))
    fine_guidance: SDSConfig = field(default_factory=SDSConfig)
    mesh: TextureStageConfig = field(default_factory=TextureStageConfig)
    mesh_sds: MeshSDSConfig = field(default_factory=MeshSDSConfig)
    bake: BakeConfig = field(default_factory=BakeConfig)
    uv_check: UVCheckConfig = field(default_factory=UVCheckConfig)
    allow_new_uvs: bool = True


retexture_config = config_maker(RetextureConfig, RETEXTURE_PRESETS)


# ------------------------------------------------------------------------------------------------ frames and UVs


@dataclass
class Frame:
    """Maps the input's coordinates to the prior's frame: ``x' = (x - centre) * scale``."""

    centre: np.ndarray
    scale: float

    @classmethod
    def fit(cls, verts: np.ndarray, radius: float) -> Frame:
        lo, hi = verts.min(0).astype(np.float64), verts.max(0).astype(np.float64)
        half_diag = float(np.linalg.norm(hi - lo)) / 2
        if not np.isfinite(half_diag) or half_diag <= 1e-12:
            raise InputError("The mesh has no extent (all vertices at one point); nothing to texture.")
        return cls((lo + hi) / 2, radius / half_diag)

    def to_prior(self, verts: np.ndarray) -> np.ndarray:
        return ((verts.astype(np.float64) - self.centre) * self.scale).astype(np.float32)

    def from_prior(self, verts: np.ndarray) -> np.ndarray:
        return (verts.astype(np.float64) / self.scale + self.centre).astype(np.float32)


def uv_problems(verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None, cfg: UVCheckConfig) -> str:
    """Why the mesh's UVs cannot take a baked texture ("" when they can)."""
    from ...kernels.raster import rasterize

    if uvs is None:
        return "the mesh has no UV map"
    if uvs.shape != (len(verts), 2) or not np.isfinite(uvs).all():
        return "the UVs are malformed"
    if uvs.min() < -1e-4 or uvs.max() > 1 + 1e-4:
        return "the UVs leave the 0-1 square (a tiling texture)"
    tri_uv = uvs[faces].astype(np.float64)
    e1, e2 = tri_uv[:, 1] - tri_uv[:, 0], tri_uv[:, 2] - tri_uv[:, 0]
    uv_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    tri = verts[faces].astype(np.float64)
    area3d = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    degenerate = area3d[uv_area < 1e-10].sum() / max(area3d.sum(), 1e-30)
    if degenerate > cfg.max_degenerate:
        return f"{100 * degenerate:.0f}% of the surface has no UV area"
    n = cfg.check_size
    uv_t = torch.from_numpy(uvs.astype(np.float32))
    clip = torch.cat([uv_t * 2 - 1, torch.zeros_like(uv_t[:, :1]), torch.ones_like(uv_t[:, :1])], dim=-1)
    with torch.no_grad():
        covered = float((rasterize(clip[None], torch.from_numpy(faces.astype(np.int32)), (n, n))[..., 3] > 0).sum())
    union, total = covered / (n * n), float(uv_area.sum())
    overlap = 1.0 - union / max(total, 1e-30)
    if overlap > cfg.max_overlap:
        return f"{100 * overlap:.0f}% of the UV area overlaps (mirrored or stacked islands)"
    return ""


class FixedMesh(torch.nn.Module):
    """A mesh that does not change: the geometry the re-texturing renders."""

    verts: Tensor
    faces: Tensor

    def __init__(self, verts: Tensor, faces: Tensor) -> None:
        super().__init__()
        self.register_buffer("verts", verts)
        self.register_buffer("faces", faces)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.verts, self.faces


def _color_field(cfg: RetextureConfig, dev: torch.device) -> NeRFField:
    r = cfg.fit_radius * 1.05
    bbox = torch.tensor([[-r, -r, -r], [r, r, r]], dtype=torch.float32, device=dev)
    return NeRFField(cfg.color_field, bbox).to(dev)


# ------------------------------------------------------------------------------------------------ re-texture


def run_retexture(mesh: str | os.PathLike, prompt: str, out: str | os.PathLike, cfg: RetextureConfig,
                  negative_prompt: str = "", device: str = "auto", callback: ProgressCallback | None = None,
                  cancel: CancelToken | None = None, preset: str = "custom",
                  preview: str | os.PathLike | None = None) -> dict[str, Any]:
    """Give the mesh in ``mesh`` a new texture from ``prompt``; its geometry is kept bit for bit.

    Returns:
        A summary: output path, counts, whether the input's UVs were used (and why not), seconds per stage.
    """
    prompt, negative_prompt, out_path, dev = check_inputs(prompt, negative_prompt, out, preview, device)
    with seeded_job(cfg.seed, dev) as gen:
        verts, faces, uvs = read_input(mesh, MAX_RETEXTURE_FACES)
        timings = StageTimes()
        why_not = uv_problems(verts, faces, uvs, cfg.uv_check)
        if why_not:
            if not cfg.allow_new_uvs:
                raise InputError(f"The mesh cannot be re-textured on its UVs ({why_not}), and new UVs cannot be added "
                                 "to it here: add or fix a UV map (or apply the modifiers), then try again.")
            if len(faces) > cfg.bake.max_faces_for_unwrap:
                raise InputError(f"The mesh needs new UVs ({why_not}) but has {len(faces):,} faces; unwrapping is "
                                 f"limited to {cfg.bake.max_faces_for_unwrap:,}. Give it a UV map or decimate it.")
            verts, faces, uvs, _ = unwrap(verts, faces, cfg.bake)  # positions copied, not recomputed
        assert uvs is not None  # no problem found: the input has a UV map
        frame = Frame.fit(verts, cfg.fit_radius)

        with timings.stage("load"):
            guidance = make_guidance(load_prior(cfg.fine_model, dev), prompt, negative_prompt, cfg.prompt,
                                     cfg.fine_guidance)

        with timings.stage("texture"):
            colour = _color_field(cfg, dev)
            fixed = FixedMesh(torch.from_numpy(frame.to_prior(verts)).to(dev),
                              torch.from_numpy(faces.astype(np.int64)).to(dev))
            live = callback is not None
            watch = mesh_stage_preview(cfg.fit_radius * 1.3, cfg.mesh_sds)
            objective = MeshScoreDistillation(guidance, cfg.mesh.render_size, cfg=cfg.mesh_sds)
            train_mesh(cfg.mesh, objective, colour, fixed, gen,
                       StageReporter("texture", cfg.mesh.steps, callback, cancel, every=5), freeze_geometry=True,
                       preview_fn=watch if live else None)

        with timings.stage("bake"):
            texture, _ = bake_texture(fixed.verts, fixed.faces, uvs, lambda p: colour.albedo(p).clamp(0, 1),
                                      cfg.bake.texture_size, cfg.bake.padding, chunk=cfg.bake.chunk, device=dev)
            result = TexturedMesh(verts=verts, faces=faces, uvs=uvs, normals=None, texture=texture, name=prompt[:60])
        if cancel is not None:
            cancel.check()
        extras = result_extras("retexture", prompt=prompt, negative_prompt=negative_prompt, seed=cfg.seed,
                               preset=preset, model=cfg.fine_model.model,
                               source_uvs="kept" if not why_not else f"new unwrap ({why_not})")
        write_outputs(result, out_path, preview, extras)
        return result_summary(out_path, len(faces), len(verts), cfg, timings, uvs_kept=not why_not,
                              uv_problem=why_not, models={"fine": cfg.fine_model.model})
