"""What a stage's renders are optimised against: posed images (reconstruction) or a diffusion prior by score
distillation (text to 3D, edits, re-texturing).

Every objective is a callable that samples its own views for a step, renders them and returns the step's loss:

* coarse stage: ``(field, occupancy, renderer, step, total, generator) -> loss``;
* mesh stage: ``(verts, faces, color_fn, step, total, generator) -> loss``.

Each also has a ``diverged`` message: what to change when its loss stops being finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..render.mesh import render_mesh
from ..render.shading import ShadingConfig, sample_lights
from ..scene.cameras import sample_views
from .interfaces import ColorFn, PosedGuidance, ScoreGuidance

if TYPE_CHECKING:
    from .coarse import CoarseSDSConfig
    from .mesh import MeshSDSConfig

G = TypeVar("G", PosedGuidance, ScoreGuidance)


@dataclass
class PosedRays:
    """The coarse stage against posed images: random rays, random backgrounds, photometric and alpha terms.

    Attributes:
        guidance: A :class:`~dreamsmith.core.guidance.reference.ReferenceGuidance`.
        rays_per_step: Rays per step.
        opacity_weight: Extra weight on matching the images' alpha (carves empty space).
        shading: What the renders are: the albedo, on a random colour per ray (drawn here).
    """

    guidance: PosedGuidance
    rays_per_step: int
    opacity_weight: float
    shading: ClassVar[ShadingConfig] = ShadingConfig(mode="albedo", background="random")
    diverged: ClassVar[str] = "The coarse stage diverged (NaN loss); lower the learning rate or try another seed."

    def __call__(self, field, occupancy, renderer, step: int, total: int, generator: torch.Generator) -> Tensor:
        o, d, target = self.guidance.sample_rays(self.rays_per_step, generator)
        bg = torch.rand(o.shape[0], 3, generator=generator).to(self.guidance.device)
        out = renderer.render(field, o, d, occupancy, bg_color=bg, perturb=True, generator=generator)
        loss = self.guidance.loss(out["rgb"], out["opacity"], target, bg)
        if self.opacity_weight > 0:
            loss = loss + self.opacity_weight * (out["opacity"] - target[:, 3]).abs().mean()
        return loss


def view_lights(light, shading: str, cams, generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """Each view's light direction and ambient share under ``light`` (a
    :class:`~dreamsmith.core.render.shading.LightConfig`) for a step shaded ``shading``; ``(None, None)`` (the
    renderer's fixed light, no random draws) when the step is unlit or the light does not vary."""
    if shading == "albedo" or not light.varies:
        return None, None
    return sample_lights(light, cams.centers, generator)


@dataclass
class ScoreDistillation:
    """The coarse stage by score distillation: random views around the box, shaded per step, scored by the prior.

    Attributes:
        guidance: ``(rgb [B, H, W, 3], azimuth [B], elevation [B], step, total, generator) -> dict`` with
            ``loss_sds`` (:class:`~dreamsmith.core.guidance.sds.SDSGuidance`).
        cfg: A :class:`~.coarse.CoarseSDSConfig` (views, shading, sparsity).
    """

    guidance: ScoreGuidance
    cfg: CoarseSDSConfig
    diverged: ClassVar[str] = "The coarse stage diverged (NaN loss); lower the guidance scale or learning rate."

    @property
    def shading(self) -> ShadingConfig:
        """The renders' shading (the renderer is made with its light and background)."""
        return self.cfg.shading

    def __call__(self, field, occupancy, renderer, step: int, total: int, generator: torch.Generator) -> Tensor:
        dev = field.bbox.device
        cams, az, el = sample_views(self.cfg.views, self.cfg.render_size, generator)
        shading = self.cfg.shading.pick(step, generator)
        light_dir, ambient = view_lights(self.cfg.shading.light, shading, cams, generator)
        w_orient = self.cfg.orientation_weight(step)
        out = renderer.render_image(field, cams, occupancy, shading=shading, perturb=True, generator=generator,
                                    normals=w_orient > 0, light_dir=light_dir, ambient=ambient)
        loss = self.guidance(out["rgb"], az.to(dev), el.to(dev), step, total, generator)["loss_sds"]
        if self.cfg.sparsity_weight > 0:
            o = out["opacity"]
            loss = loss + self.cfg.sparsity_weight * (o.mean() if self.cfg.sparsity_form == "mean"
                                                      else (o.square() + 0.01).sqrt().mean())
        if w_orient > 0:
            loss = loss + w_orient * out["orientation"].sum() / (out["opacity"] > 0).sum().clamp_min(1)
        return loss


def resize_targets(target: Tensor, size: int) -> Tensor:
    """Area-resize RGBA targets ``[B, H, W, 4]`` so the longer side is ``size`` (premultiplied while resizing)."""
    h, w = target.shape[1:3]
    if max(h, w) == size:
        return target
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    pre = torch.cat([target[..., :3] * target[..., 3:], target[..., 3:]], dim=-1).permute(0, 3, 1, 2)
    pre = F.interpolate(pre, size=(nh, nw), mode="area" if scale < 1 else "bilinear", align_corners=None)
    pre = pre.permute(0, 2, 3, 1)
    a = pre[..., 3:]
    return torch.cat([pre[..., :3] / a.clamp_min(1e-6), a], dim=-1)


@dataclass
class MeshObjective(Generic[G]):
    """What the mesh-stage objectives share: a guidance, and the size of the renders it sees.

    Attributes:
        guidance: What the renders are scored by.
        render_size: Longer side of the renders.
    """

    guidance: G
    render_size: int
    diverged: ClassVar[str] = "The mesh stage diverged (NaN loss); lower the learning rates or try another seed."

    def __call__(self, verts: Tensor, faces: Tensor, color_fn: ColorFn, step: int, total: int,
                 generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@dataclass
class PosedViews(MeshObjective[PosedGuidance]):
    """The mesh stage against posed images (a :class:`~dreamsmith.core.guidance.reference.ReferenceGuidance`):
    whole views, resized to ``render_size``, on random backgrounds.

    Attributes:
        views_per_step: Posed images rendered and compared per step.
    """

    views_per_step: int = 4

    def __call__(self, verts: Tensor, faces: Tensor, color_fn: ColorFn, step: int, total: int,
                 generator: torch.Generator) -> Tensor:
        g = self.guidance
        cams, target = g.sample_views(self.views_per_step, generator)
        scale = self.render_size / max(g.h, g.w)
        if scale != 1:
            cams = cams.resized(round(cams.width * scale), round(cams.height * scale))
            target = resize_targets(target, self.render_size)
        bg = torch.rand(len(cams), 1, 1, 3, generator=generator).to(g.device)
        out = render_mesh(verts, faces, cams, color_fn, bg)
        return g.loss(out["rgb"], out["alpha"], target, bg)


@dataclass(kw_only=True)
class MeshScoreDistillation(MeshObjective[ScoreGuidance]):
    """The mesh stage by score distillation (the guidance as in :class:`ScoreDistillation`): random square views of
    the mesh, shaded, on a grey background.

    Attributes:
        cfg: A :class:`~.mesh.MeshSDSConfig` (views, shading, light, background).
    """

    cfg: MeshSDSConfig
    diverged: ClassVar[str] = "The mesh stage diverged (NaN loss); lower the learning rates or guidance scale."

    def __call__(self, verts: Tensor, faces: Tensor, color_fn: ColorFn, step: int, total: int,
                 generator: torch.Generator) -> Tensor:
        dev = verts.device
        cams, az, el = sample_views(self.cfg.views, self.render_size, generator)
        look = self.cfg.shading
        if look.background == "random":
            bg = torch.rand(len(cams), 1, 1, 3, generator=generator).to(dev)
        else:
            bg = torch.full((1, 1, 1, 3), 0.0 if look.background == "black" else 1.0, device=dev)
        shading = look.pick(step, generator)
        light_dir, ambient = view_lights(look.light, shading, cams, generator)
        out = render_mesh(verts, faces, cams.to(dev), color_fn, bg, shading=shading, light=look.light,
                          light_dir=light_dir, ambient=ambient)
        return self.guidance(out["rgb"], az.to(dev), el.to(dev), step, total, generator)["loss_sds"]
