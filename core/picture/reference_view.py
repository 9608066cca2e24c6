"""Image to 3D: the picture as an objective at its own camera, beside score distillation on every other view
(the recipe of Make-It-3D and Magic123, with the two stages of text to 3D).

Each step renders the reference view (albedo, on white, the background the picture was put on by
:func:`~dreamsmith.core.picture.load.load_reference`) and adds the colour and mask errors against the picture to the
stage's score-distillation loss, whose weight ramps in over the first ``sds_warmup`` of the stage (the visible side
is fitted first, then the prior fills in the rest). The reference camera looks at the scene's centre from azimuth 0
(the front, as the view words and a camera-conditioned prior count it) at the picture's elevation, so a prior that
takes the camera as an input is told the real angle of every view relative to the picture.

The novel-view objective is any stage objective (:class:`~.objectives.ScoreDistillation`,
:class:`~.objectives.MeshScoreDistillation`): a prior conditioned on the picture and the relative camera
(Zero-1-to-3) goes in its place as another guidance with the same call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from ..render.mesh import render_mesh, render_textured
from ..render.shading import ShadingConfig
from ..runtime.errors import ConfigError
from ..scene.cameras import Cameras, ViewSamplerConfig, mask_at_points, orbit_cameras
from ..stages.interfaces import CoarseObjective, ColorFn, MeshObjectiveFn
from .caption import CaptionConfig, word_lists
from .inversion import InversionConfig
from .load import ImageInputConfig, ReferenceImage

Condition = Literal["caption", "embedding", "none"]
CONDITIONS = get_args(Condition)


@dataclass
class ImageConfig:
    """Image to 3D: the reference view and its losses.

    Attributes:
        input: How the picture is read, masked and centred.
        elevation: Elevation of the reference camera, degrees (``--elevation``; 0: level with the object).
        fov: Vertical field of view of the reference camera, degrees (``--fov``); 0: the middle of the stage's
            score-distillation views (the prior's own).
        rgb_weight: Weight of the colour error (mean squared, over the reference view's pixels).
        mask_weight: Weight of the silhouette error (mean squared, rendered opacity against the picture's mask).
        sds_weight: Weight of score distillation on the other views, once ramped in.
        sds_warmup: Fraction of each stage over which the score-distillation weight ramps up from 0.
        coarse_edge_band: With ``ray_jitter``, the width (coarse reference pixels) of the band on each side of the
            picture's outline whose rays are left out of the coarse stage's losses (0: none). A ray grazing a sharp
            edge crosses little of the object; fitting it opaque thickens the field along it, which leaves rims
            on the edges seen from the side. The mesh stage's hard surface fits the outline after.
        ray_jitter: Send the coarse stage's reference rays through a random point of each pixel every step (else
            through the pixel centres, where a volume can fit the picture and leave the space between the rays
            free: the README's torus seen from above kept its hole only along those rays).
        carve: Carve the mesh stage's start with the picture: what the reference camera sees as background at a
            point of the tet grid (the mask grown by ``carve_margin``) is left empty there, also through the
            cleaning that closes narrow gaps. The coarse field is fitted at a few dozen pixels; a hole the picture
            sees through, or a rim beyond its outline, would otherwise reach the mesh stage, whose reference loss
            moves outlines but cannot open a hole its surface covers.
        carve_margin: How far the mask is grown before carving, as a fraction of the picture's side.
        coarse_size: Side of the coarse stage's reference render, pixels (0: the stage's render size).
        mesh_size: Side of the mesh stage's reference render, pixels (0: the stage's render size).
        score_size: Side of the render the result is scored at (IoU, colour error), pixels.
        condition: What guides the unseen sides when no prompt is given: ``"caption"``, the prompt found in the
            prior's vocabulary that best explains the picture (:mod:`~dreamsmith.core.picture.caption`; it is
            reported and recorded); ``"embedding"``, a text condition learned from the picture (textual inversion,
            :mod:`~dreamsmith.core.picture.inversion`); ``"none"``, unconditioned score distillation.
        caption: How the caption is searched for.
        inversion: How the embedding is learned (``steps`` 0: unconditioned).
        find_azimuth: With a prior that takes the camera as an input, estimate the picture's azimuth (the object's
            turn in the prior's frame) and put the reference camera there; the result is turned back so that the
            picture's view is its front (-Y).

    A picture's settings of the stages themselves (the mesh stage's ``min_component_fraction``) are the stage
    configs', set for pictures by ``settings.presets.PICTURE_OVERRIDES``.
    """

    input: ImageInputConfig = field(default_factory=ImageInputConfig)
    elevation: float = 0.0
    fov: float = 0.0
    rgb_weight: float = 1000.0
    mask_weight: float = 500.0
    sds_weight: float = 1.0
    sds_warmup: float = 0.2
    ray_jitter: bool = False
    coarse_edge_band: float = 0.0
    carve: bool = True
    carve_margin: float = 0.02
    coarse_size: int = 0
    mesh_size: int = 0
    score_size: int = 128
    condition: Condition = "embedding"
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    find_azimuth: bool = True


def check_image_config(cfg: ImageConfig) -> None:
    """Raise :class:`ConfigError` for settings no picture can run with."""
    if cfg.condition not in CONDITIONS:
        raise ConfigError(f"image.condition must be one of {', '.join(CONDITIONS)}, got {cfg.condition!r}.")
    if cfg.caption.batch < 1 or cfg.caption.sweeps < 1:
        raise ConfigError(f"image.caption needs at least one noised copy and one sweep (batch={cfg.caption.batch}, "
                          f"sweeps={cfg.caption.sweeps}).")
    if not 0.0 <= cfg.carve_margin < 0.5:
        raise ConfigError(f"image.carve_margin is a fraction of the picture's side, in [0, 0.5), "
                          f"got {cfg.carve_margin!r}.")
    if cfg.coarse_edge_band > 0 and not cfg.ray_jitter:
        raise ConfigError("image.coarse_edge_band needs image.ray_jitter (the band is left out of the jittered rays).")
    if cfg.condition == "caption":
        word_lists(cfg.caption)


def reference_fov(cfg: ImageConfig, views: ViewSamplerConfig) -> float:
    """The reference camera's field of view: the configured one, else the middle of the views' range."""
    return cfg.fov if cfg.fov > 0 else 0.5 * (views.fov_min + views.fov_max)


def reference_camera(cfg: ImageConfig, views: ViewSamplerConfig, size: int, azimuth: float = 0.0) -> Cameras:
    """The camera the picture was taken from: ``azimuth``, ``cfg.elevation``, at the middle distance of ``views``."""
    distance = 0.5 * (views.distance_min + views.distance_max)
    return orbit_cameras(torch.tensor([float(azimuth)]), torch.tensor([float(cfg.elevation)]), distance,
                         reference_fov(cfg, views), size)


@dataclass
class ReferenceTarget:
    """The picture at one render size: its camera, colour on white ``[1, S, S, 3]`` and mask ``[1, S, S]``, and the
    picture at its own resolution (``picture``, ``[1, 4, R, R]``, with a fifth channel, the rays' weight, when an
    edge band is left out) to look up between the pixels."""

    cameras: Cameras
    rgb: Tensor
    mask: Tensor
    picture: Tensor

    @classmethod
    def make(cls, ref: ReferenceImage, cfg: ImageConfig, views: ViewSamplerConfig, size: int,
             device: torch.device, edge_band: float = 0.0) -> ReferenceTarget:
        """The reference view of ``ref`` at ``size`` pixels, on ``device``; ``edge_band``: the width (render pixels)
        of the band on each side of the outline that the jittered rays leave out (:meth:`jittered`)."""
        full = torch.from_numpy(np.concatenate([ref.rgb, ref.mask[..., None]], axis=2)).permute(2, 0, 1)[None]
        rgba = full
        if rgba.shape[-1] != size:
            rgba = F.interpolate(rgba, size=(size, size), mode="area" if rgba.shape[-1] > size else "bilinear")
        rgba = rgba[0].permute(1, 2, 0).to(device)
        cams = reference_camera(cfg, views, size, ref.azimuth).to(device)
        if edge_band > 0:
            solid = ref.mask > 0.5
            reach = max(1, round(edge_band * ref.mask.shape[0] / size))
            band = ndimage.binary_dilation(solid, iterations=reach) & ~ndimage.binary_erosion(solid, iterations=reach)
            keep = torch.from_numpy((~band).astype(np.float32))[None, None]
            full = torch.cat([full, keep], dim=1)
        return cls(cams, rgba[None, ..., :3], rgba[None, ..., 3], full.to(device))

    def jittered(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """One ray per pixel at a random point of it: the ``[1, S, S, 2]`` offsets from the pixel centres (for
        :meth:`~dreamsmith.core.scene.cameras.Cameras.rays`), the picture's colour ``[1, S, S, 3]`` and mask
        ``[1, S, S]`` there (bilinear in the full-resolution picture), and the weight of each ray ``[1, S, S]``
        (0 in the band along the outline, when the target has one; else None).

        Rays through the pixel centres alone, the same every step, let a volume fit the picture along those rays
        and anything between them (seen at a finer resolution: a lattice of density beside the object, a torus's
        hole filled); rays anywhere in the pixel constrain the whole view.
        """
        size = self.rgb.shape[1]
        offsets = torch.rand((1, size, size, 2), generator=generator, device=generator.device).to(self.rgb) - 0.5
        centres = (torch.arange(size, device=self.rgb.device, dtype=self.rgb.dtype) + 0.5)
        x = (centres[None, None, :] + offsets[..., 0]) / size * 2.0 - 1.0
        y = (centres[None, :, None] + offsets[..., 1]) / size * 2.0 - 1.0
        rgba = F.grid_sample(self.picture, torch.stack([x, y], dim=-1), mode="bilinear", padding_mode="border",
                             align_corners=False).permute(0, 2, 3, 1)
        return offsets, rgba[..., :3], rgba[..., 3], (rgba[..., 4] if rgba.shape[-1] > 4 else None)

    def carve(self, points: Tensor, margin: float = 0.0) -> Tensor:
        """``[N]`` bool: False where the reference camera sees the picture's background at world ``points``
        ``[N, 3]`` (the mask grown by ``margin``, a fraction of the picture's side). Points outside the picture's
        frame or behind the camera are not judged (True)."""
        mask = self.picture[:, 3:4]
        grow = round(margin * mask.shape[-1])
        if grow > 0:
            mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
        alpha, seen = mask_at_points(self.cameras, mask, points, bilinear=True)
        return ~(seen & (alpha < 0.5))

    def loss(self, cfg: ImageConfig, rgb: Tensor, alpha: Tensor,
             want: tuple[Tensor, Tensor, Tensor | None] | None = None) -> Tensor:
        """Weighted colour and mask errors of a render of the reference view (``rgb`` on white; ``alpha``
        ``[1, S, S]`` or ``[1, S, S, 1]``) against the pixels, or against ``want`` (colour, mask and per-ray weight
        or None, where the rays went: :meth:`jittered`)."""
        want_rgb, want_mask, weight = want if want is not None else (self.rgb, self.mask, None)
        alpha = alpha.reshape(want_mask.shape)
        rgb_err, mask_err = ((rgb - want_rgb) ** 2).mean(-1), (alpha - want_mask) ** 2
        if weight is not None:
            rgb_err, mask_err = rgb_err * weight, mask_err * weight
        return cfg.rgb_weight * rgb_err.mean() + cfg.mask_weight * mask_err.mean()


def sds_ramp(cfg: ImageConfig, step: int, total: int) -> float:
    """The score-distillation weight at ``step`` of ``total``: 0 rising linearly to ``sds_weight``."""
    span = cfg.sds_warmup * total
    return cfg.sds_weight if span <= 0 else cfg.sds_weight * min(1.0, step / span)


@dataclass
class CoarseReference:
    """The coarse stage's objective for image to 3D: the reference view plus ``novel`` on the other views.

    Attributes:
        target: The picture at the coarse stage's reference size.
        cfg: Weights and schedule.
        novel: The objective of the other views (score distillation), or None (the picture alone).
    """

    target: ReferenceTarget
    cfg: ImageConfig
    novel: CoarseObjective | None
    diverged: ClassVar[str] = "The coarse stage diverged (NaN loss); lower the learning rate or the reference weights."

    @property
    def shading(self) -> ShadingConfig:
        """The other views' shading (the reference view is compared on white, in its own light)."""
        return self.novel.shading if self.novel is not None else ShadingConfig()

    def __call__(self, field, occupancy, renderer, step: int, total: int, generator: torch.Generator) -> Tensor:
        white = torch.ones(3, device=self.target.rgb.device)
        offsets, want = None, None
        if self.cfg.ray_jitter:
            offsets, want_rgb, want_mask, weight = self.target.jittered(generator)
            want = (want_rgb, want_mask, weight)
        out = renderer.render_image(field, self.target.cameras, occupancy, shading="albedo", bg_color=white,
                                    perturb=True, generator=generator, offsets=offsets)
        loss = self.target.loss(self.cfg, out["rgb"], out["opacity"], want)
        w = sds_ramp(self.cfg, step, total)
        if self.novel is not None and w > 0:
            loss = loss + w * self.novel(field, occupancy, renderer, step, total, generator)
        return loss


@dataclass
class MeshReference:
    """The mesh stage's objective for image to 3D: the reference view plus ``novel`` on the other views.

    Attributes:
        target: The picture at the mesh stage's reference size.
        cfg: Weights and schedule.
        novel: The objective of the other views, or None.
    """

    target: ReferenceTarget
    cfg: ImageConfig
    novel: MeshObjectiveFn | None
    diverged: ClassVar[str] = "The mesh stage diverged (NaN loss); lower the learning rates or the reference weights."

    def __call__(self, verts: Tensor, faces: Tensor, color_fn: ColorFn, step: int, total: int,
                 generator: torch.Generator) -> Tensor:
        white = torch.ones(1, 1, 1, 3, device=verts.device)
        out = render_mesh(verts, faces, self.target.cameras, color_fn, white)
        loss = self.target.loss(self.cfg, out["rgb"], out["alpha"])
        w = sds_ramp(self.cfg, step, total)
        if self.novel is not None and w > 0:
            loss = loss + w * self.novel(verts, faces, color_fn, step, total, generator)
        return loss


def turned_to_front(mesh, azimuth: float):
    """``mesh`` turned about Z by ``-azimuth`` degrees: the view from that azimuth becomes the front view."""
    if not azimuth:
        return mesh
    a = np.radians(-azimuth)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    normals = None if mesh.normals is None else (np.asarray(mesh.normals) @ rot.T).astype(np.float32)
    return dataclasses.replace(mesh.moved(lambda v: np.asarray(v, np.float64) @ rot.T), normals=normals)


def reference_scores(mesh, ref: ReferenceImage, cfg: ImageConfig, views: ViewSamplerConfig) -> dict[str, float]:
    """How the result (turned to the front) looks from the picture's camera: ``iou`` of its silhouette with the
    picture's mask and ``colour_error``, the mean absolute RGB difference (0..1) over the pixels both cover (flat,
    unlit texture)."""
    size = cfg.score_size
    target = ReferenceTarget.make(dataclasses.replace(ref, azimuth=0.0), cfg, views, size, torch.device("cpu"))
    on_white = render_textured(mesh, target.cameras, bg=1.0)[0]
    on_black = render_textured(mesh, target.cameras, bg=0.0)[0]
    covered = (on_white - on_black).abs().amax(-1) < 0.5
    want = target.mask[0] > 0.5
    union = (covered | want).sum().item()
    iou = (covered & want).sum().item() / union if union else 0.0
    both = covered & want
    err = (on_white - target.rgb[0]).abs().mean(-1)[both].mean().item() if both.any() else 1.0
    return {"iou": round(float(iou), 4), "colour_error": round(float(err), 4)}
