"""Stage 2: the mesh stage. The coarse density becomes an SDF on a tetrahedral grid (DMTet); the
iso-surface, its vertex offsets and the colour field are optimised through the rasteriser."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from ..kernels.raster import antialias, interpolate, rasterize
from .cameras import Cameras, ViewSamplerConfig, camera_light, sample_views
from .dmtet import DMTetConfig, DMTetGeometry
from .errors import InputError, NumericalError
from .events import StageReporter
from .mesh_ops import laplacian_loss, normal_consistency_loss, vertex_normals


@dataclass
class MeshStageConfig:
    """The mesh stage.

    Attributes:
        steps: Optimisation steps.
        render_size: Longer side of the rendered images (the targets are resized to it).
        lr_sdf: Adam learning rate of the SDF values (in units of grid cells).
        lr_deform: Adam learning rate of the vertex offsets.
        lr_color: Adam learning rate of the colour field's hash table (its MLP uses a tenth).
        iso_density: Density of the coarse field taken as the surface, times the box diagonal (scale-free).
        laplacian_weight: Weight of the uniform Laplacian smoothness term.
        normal_weight: Weight of the normal-consistency term.
        sdf_weight: Weight of the SDF sign-flip regulariser.
        min_component_fraction: Pieces smaller than this fraction of the largest are dropped.
        dmtet: The tetrahedral grid.
        preview_every: Steps between live preview images when the caller asks for them (0: none).
    """

    steps: int = 400
    render_size: int = 128
    lr_sdf: float = 0.05
    lr_deform: float = 0.01
    lr_color: float = 1e-2
    iso_density: float = 50.0
    laplacian_weight: float = 0.05
    normal_weight: float = 0.05
    sdf_weight: float = 0.01
    min_component_fraction: float = 0.05
    dmtet: DMTetConfig = field(default_factory=DMTetConfig)
    preview_every: int = 50


def occupancy_to_sdf(occ: np.ndarray, cell: tuple[float, float, float]) -> np.ndarray:
    """Signed distance (negative inside) of a boolean lattice occupancy, in world units (``cell``: spacing per axis)."""
    half = 0.5 * min(cell)
    inside = ndimage.distance_transform_edt(occ, sampling=cell) - half
    outside = ndimage.distance_transform_edt(~occ, sampling=cell) - half
    return np.where(occ, -inside, outside).astype(np.float32)


def clean_occupancy(occ: np.ndarray, min_fraction: float, close_gaps: int = 2) -> np.ndarray:
    """Keep what is solid as seen from outside, and drop pieces much smaller than the largest one.

    Empty space counts as outside only when it is reached from the grid's border through gaps wider than
    ``2 * close_gaps`` cells: a coarse field's shell often has pinholes, and through them the unconstrained hollow
    inside would otherwise become inner walls of the mesh. Enclosed cavities are filled the same way.
    """
    empty = ~occ
    probe = ndimage.binary_erosion(empty, iterations=close_gaps, border_value=1) if close_gaps > 0 else empty
    labels, _ = ndimage.label(probe)
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                       labels[:, :, [0, -1]].ravel()]))
    outside = np.isin(labels, border[border > 0])
    if close_gaps > 0:
        outside = ndimage.binary_dilation(outside, iterations=close_gaps) & empty
    occ = ~outside
    labels, n = ndimage.label(occ)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.nonzero(sizes >= min_fraction * sizes.max())[0] + 1
        occ = np.isin(labels, keep)
    return occ


#: Below this fraction of the grid above the configured iso level, the level adapts to the field.
MIN_OCCUPIED_FRACTION = 1e-4
#: What to say when the coarse field holds no object, by the kind of job that made it.
EMPTY_FIELD = {
    "images": "The coarse stage found no object to turn into a mesh; check that the images show the object on a "
              "transparent background, or use more steps (a larger preset).",
    "text": "The coarse stage made no object to turn into a mesh (its density is empty everywhere); give it more "
            "coarse steps or a larger preset, lower the guidance scale, or try another seed or a more concrete "
            "prompt.",
}


def auto_iso_level(density: Tensor, eps: float = 1e-5) -> float:
    """threestudio's automatic iso-surface threshold: the mean of the densities above ``eps`` (0 when none are)."""
    positive = density[density > eps]
    return float(positive.mean()) if positive.numel() else 0.0


def iso_occupancy(density: Tensor, level: float) -> Tensor:
    """Where ``density`` exceeds ``level``.

    When too little of the grid (fewer than :data:`MIN_OCCUPIED_FRACTION` of its points) is above ``level`` (a short
    or weak coarse run, a faint object), the level adapts to the field (:func:`auto_iso_level`), so that whatever
    shape the field holds is meshed.
    """
    occ = density > level
    if int(occ.sum()) >= max(1, MIN_OCCUPIED_FRACTION * density.numel()):
        return occ
    auto = auto_iso_level(density)
    return density > auto if 0.0 < auto < level else occ


@torch.no_grad()
def initial_sdf(density_fn, grid_verts: Tensor, grid_shape: tuple[int, int, int], bbox: Tensor, iso_density: float,
                carve_fn=None, min_fraction: float = 0.05, source: str = "images") -> Tensor:
    """SDF at the tet-grid vertices from the coarse density (and the visual hull, when given).

    Args:
        density_fn: ``x [N, 3] -> [N]`` coarse density.
        grid_verts: ``[V, 3]`` tet-grid vertices, a regular ``grid_shape`` lattice in ``[x, y, z]`` order.
        grid_shape: Lattice size per axis.
        bbox: ``[2, 3]`` scene box.
        iso_density: Surface density times the box diagonal. Without a visual hull it adapts to the field when too
            little is above it (:func:`iso_occupancy`); with one, the hull is the fallback.
        carve_fn: Optional ``x [N, 3] -> bool [N]`` that is False where images see background.
        min_fraction: See :class:`MeshStageConfig`.
        source: What the coarse stage was fitted to, ``"images"`` or ``"text"``: the error for an empty field
            speaks of that (:data:`EMPTY_FIELD`).
    """
    diag = float((bbox[1] - bbox[0]).norm())
    dens = torch.cat([density_fn(c) for c in grid_verts.split(1 << 18)])
    if carve_fn is None:
        occ = iso_occupancy(dens, iso_density / diag)
    else:
        occ = dens > iso_density / diag
        hull = torch.cat([carve_fn(c) for c in grid_verts.split(1 << 18)])
        # An under-trained field (tiny budgets) may have no density above the iso level yet: the hull still is a
        # valid start for the mesh stage, which refines it against the images.
        occ = occ & hull if bool((occ & hull).any()) else hull
    occ_np = clean_occupancy(occ.reshape(grid_shape).cpu().numpy(), min_fraction)
    if not occ_np.any():
        raise InputError(EMPTY_FIELD[source])
    cell = tuple(float(c) for c in (bbox[1] - bbox[0]) / (torch.tensor(grid_shape) - 1))
    return torch.from_numpy(occupancy_to_sdf(occ_np, cell)).reshape(-1).to(grid_verts.device)


def render_mesh(verts: Tensor, faces: Tensor, cams: Cameras, color_fn, bg: Tensor, shading: str = "albedo",
                ambient: float = 0.35, diffuse: float = 0.65,
                light_offset: tuple[float, float] = (0.0, 0.0)) -> dict[str, Tensor]:
    """Rasterise a mesh, colour its surface points with ``color_fn`` and antialias the silhouette.

    Args:
        verts, faces: The mesh.
        cams: Cameras to render from.
        color_fn: ``points [N, 3] -> albedo [N, 3]``.
        bg: Background colour ``[B, 1, 1, 3]`` (or broadcastable).
        shading: ``albedo`` (flat), ``lambertian`` (albedo times ambient + diffuse with a headlight) or
            ``textureless`` (white, lit the same way).
        ambient, diffuse: Lighting terms of the lit modes.
        light_offset: ``(0, 0)``: a point light at each camera; otherwise a directional light fixed to the camera
            (:func:`~dreamsmith.core.cameras.camera_light`).

    Returns:
        ``rgb [B, H, W, 3]`` composited over ``bg``, ``alpha [B, H, W]``, ``rast``.
    """
    clip = cams.project(verts)
    rast = rasterize(clip, faces, (cams.height, cams.width))
    mask = rast[..., 3] > 0
    pts = interpolate(verts, rast, faces)
    col = torch.zeros(*mask.shape, 3, device=verts.device, dtype=verts.dtype)
    if mask.any():
        if shading == "textureless":
            albedo = torch.ones_like(pts[mask])
        else:
            albedo = color_fn(pts[mask])
        if shading != "albedo":
            normals = interpolate(vertex_normals(verts, faces), rast, faces)[mask]
            normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            if any(light_offset):
                light = camera_light(cams, light_offset).to(pts)[:, None, None, :].expand_as(pts)[mask]
            else:
                centres = cams.centers.to(verts.device)[:, None, None, :].expand_as(pts)[mask]
                light = centres - pts[mask]
                light = light / light.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            albedo = albedo * (ambient + diffuse * (normals * light).sum(-1, keepdim=True).clamp_min(0))
        col = col.index_put((mask,), albedo)
    rgba = antialias(torch.cat([col, mask[..., None].to(col.dtype)], dim=-1), rast, clip, faces)
    alpha = rgba[..., 3].clamp(0, 1)
    return {"rgb": rgba[..., :3] + (1 - alpha[..., None]) * bg, "alpha": alpha, "rast": rast}


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


def geometry_regularizers(cfg: MeshStageConfig, geo: DMTetGeometry, verts: Tensor, faces: Tensor) -> Tensor:
    """Weighted smoothness (Laplacian, normal consistency) and SDF sign-flip terms of the mesh stage."""
    loss = verts.new_zeros(())
    if cfg.laplacian_weight > 0:
        loss = loss + cfg.laplacian_weight * laplacian_loss(verts, faces) / geo.cell_size ** 2
    if cfg.normal_weight > 0:
        loss = loss + cfg.normal_weight * normal_consistency_loss(verts, faces)
    if cfg.sdf_weight > 0:
        loss = loss + cfg.sdf_weight * geo.sdf_edge_regularizer()
    return loss


@dataclass
class MeshReferenceConfig:
    """The mesh stage against posed images (reconstruction).

    Attributes:
        views_per_step: Posed images rendered and compared per step.
    """

    views_per_step: int = 4


def train_mesh_reference(cfg: MeshStageConfig, ref_cfg: MeshReferenceConfig, guidance, color_field, bbox: Tensor,
                         generator: torch.Generator, reporter: StageReporter) -> DMTetGeometry:
    """Optimise DMTet geometry and the colour field against posed images."""
    dev = guidance.device
    geo = DMTetGeometry(cfg.dmtet, bbox.to(dev)).to(dev)
    r = cfg.dmtet.resolution + 1
    sdf0 = initial_sdf(color_field.density, geo.grid_verts, (r, r, r), bbox, cfg.iso_density, guidance.carve,
                       cfg.min_component_fraction)
    geo.init_from_sdf(sdf0)
    color_params = [p for n, p in color_field.named_parameters() if "density" not in n]
    groups = [{"params": [geo.sdf], "lr": cfg.lr_sdf * geo.cell_size},
              {"params": [geo.deform], "lr": cfg.lr_deform},
              {"params": color_params, "lr": cfg.lr_color}]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    scale = cfg.render_size / max(guidance.h, guidance.w)
    for step in range(1, cfg.steps + 1):
        cams, target = guidance.sample_views(ref_cfg.views_per_step, generator)
        if scale != 1:
            cams = cams.resized(round(cams.width * scale), round(cams.height * scale))
            target = resize_targets(target, cfg.render_size)
        bg = torch.rand(len(cams), 1, 1, 3, generator=generator).to(dev)
        verts, faces = geo()
        if faces.shape[0] == 0:
            raise NumericalError("The mesh stage lost the surface (no faces); lower lr_sdf or use a larger preset.")
        out = render_mesh(verts, faces, cams, color_field.albedo, bg)
        loss = guidance.loss(out["rgb"], out["alpha"], target, bg) + geometry_regularizers(cfg, geo, verts, faces)
        if not math.isfinite(loss.item()):
            raise NumericalError("The mesh stage diverged (NaN loss); lower the learning rates or try another seed.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reporter.step(step, loss.item())
    return geo


@dataclass
class MeshSDSConfig:
    """The mesh stage under score distillation (text to 3D and edits).

    Attributes:
        shading: Shading of the renders (``albedo`` | ``lambertian`` | ``textureless``).
        background: Grey level of the background the renders are composited on (the toy prior saw white).
        light_offset: Light of the lit modes, as in :func:`render_mesh`.
        views: The camera distribution.
    """

    shading: Literal["albedo", "lambertian", "textureless"] = "lambertian"
    background: float = 1.0
    light_offset: tuple[float, float] = (0.0, 0.0)
    views: ViewSamplerConfig = field(default_factory=ViewSamplerConfig)


def train_mesh_sds(cfg: MeshStageConfig, sds_cfg: MeshSDSConfig, guidance, color_field, geo: DMTetGeometry,
                   generator: torch.Generator, reporter: StageReporter, freeze_geometry: bool = False,
                   preview_fn=None) -> DMTetGeometry:
    """Optimise DMTet geometry (unless frozen) and the colour field by score distillation.

    Args:
        cfg: Steps, render size, learning rates, preview interval and, unless the geometry is frozen, its learning
            rates and regularisers (a :class:`MeshStageConfig`, or any config with the colour's fields when frozen).
        sds_cfg: Views, shading and background of the SDS renders.
        guidance: Callable ``(rgb, azimuth, elevation, step, total, generator) -> dict`` with ``loss_sds``.
        color_field: Module with ``albedo(points) -> [N, 3]``; its non-density parameters are optimised.
        geo: The tetrahedral geometry, already initialised.
        generator: The job's random generator.
        reporter: Progress and cancellation.
        freeze_geometry: Optimise only the colour (re-texturing).
        preview_fn: Optional ``(geo, color_field) -> uint8 image``.
    """
    dev = next(color_field.parameters()).device
    color_params = [p for n, p in color_field.named_parameters() if "density" not in n]
    groups = [{"params": color_params, "lr": cfg.lr_color}]
    if not freeze_geometry:
        groups += [{"params": [geo.sdf], "lr": cfg.lr_sdf * geo.cell_size},
                   {"params": [geo.deform], "lr": cfg.lr_deform}]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    bg = torch.full((1, 1, 1, 3), sds_cfg.background, device=dev)
    frozen = None
    if freeze_geometry:
        with torch.no_grad():
            frozen = geo()
    for step in range(1, cfg.steps + 1):
        cams, az, el = sample_views(sds_cfg.views, cfg.render_size, generator)
        cams = cams.to(dev)
        verts, faces = frozen if frozen is not None else geo()
        if faces.shape[0] == 0:
            raise NumericalError("The mesh stage lost the surface (no faces); lower lr_sdf or the guidance scale.")
        out = render_mesh(verts, faces, cams, color_field.albedo, bg, shading=sds_cfg.shading,
                          light_offset=sds_cfg.light_offset)
        loss = guidance(out["rgb"], az.to(dev), el.to(dev), step, cfg.steps, generator)["loss_sds"]
        if frozen is None:
            loss = loss + geometry_regularizers(cfg, geo, verts, faces)
        if not math.isfinite(loss.item()):
            raise NumericalError("The mesh stage diverged (NaN loss); lower the learning rates or guidance scale.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        preview = None
        if preview_fn is not None and cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps):
            preview = preview_fn(geo, color_field)
        reporter.step(step, loss.item(), preview=preview)
    return geo
