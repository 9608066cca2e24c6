"""Rasterised meshes: the mesh stage's renders (a colour field on the surface) and finished textured meshes."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...kernels.antialias import antialias
from ...kernels.raster import interpolate, rasterize
from ...kernels.texture import texture
from ..geometry.mesh_ops import vertex_normals
from ..meshio import TexturedMesh
from ..scene.cameras import Cameras, camera_light
from .shading import LightConfig, check_shading, shade

#: The light of a finished mesh's contact sheet: a headlight that also lights faces turned away (open meshes).
SHEET_LIGHT = LightConfig(ambient=0.4, diffuse=0.6)


def _composite(col: Tensor, mask: Tensor, rast: Tensor, clip: Tensor, faces: Tensor, bg) -> tuple[Tensor, Tensor]:
    """Antialias ``col [B, H, W, 3]`` covered where ``mask``, and composite it over ``bg``: ``(rgb, alpha)``."""
    rgba = antialias(torch.cat([col, mask[..., None].to(col.dtype)], dim=-1), rast, clip, faces)
    alpha = rgba[..., 3].clamp(0, 1)
    return rgba[..., :3] + (1 - alpha[..., None]) * bg, alpha


def render_mesh(verts: Tensor, faces: Tensor, cams: Cameras, color_fn, bg: Tensor, shading: str = "albedo",
                light: LightConfig | None = None, light_dir: Tensor | None = None,
                ambient: Tensor | None = None) -> dict[str, Tensor]:
    """Rasterise a mesh, colour its surface points with ``color_fn`` and antialias the silhouette.

    Args:
        verts, faces: The mesh.
        cams: Cameras to render from.
        color_fn: ``points [N, 3] -> albedo [N, 3]``.
        bg: Background colour ``[B, 1, 1, 3]`` (or broadcastable).
        shading: One of :data:`~.shading.SHADINGS`.
        light: The light of the lit modes; its ``(0, 0)`` offset is a point light at each camera.
        light_dir: Optional ``[B, 3]`` directions towards each camera's light (drawn by
            :func:`~.shading.sample_lights`), instead of ``light.offset``'s.
        ambient: Optional ``[B]`` ambient shares of each camera's soft light.

    Returns:
        ``rgb [B, H, W, 3]`` composited over ``bg``, ``alpha [B, H, W]``, ``rast``.
    """
    check_shading(shading)
    light = light or LightConfig()
    clip = cams.project(verts)
    rast = rasterize(clip, faces, (cams.height, cams.width))
    mask = rast[..., 3] > 0
    pts = interpolate(verts, rast, faces)
    col = torch.zeros(*mask.shape, 3, device=verts.device, dtype=verts.dtype)
    if mask.any():
        albedo = torch.ones_like(pts[mask]) if shading == "textureless" else color_fn(pts[mask])
        normals = to_light = None
        if shading != "albedo":
            normals = interpolate(vertex_normals(verts, faces), rast, faces)[mask]
            normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            if light_dir is not None:
                to_light = light_dir.to(pts)[:, None, None, :].expand_as(pts)[mask]
            elif any(light.offset):
                to_light = camera_light(cams, light.offset).to(pts)[:, None, None, :].expand_as(pts)[mask]
            else:
                centres = cams.centers.to(verts.device)[:, None, None, :].expand_as(pts)[mask]
                to_light = centres - pts[mask]
                to_light = to_light / to_light.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        amb = None if ambient is None else ambient.to(pts)[:, None, None].expand(mask.shape)[mask][:, None]
        col = col.index_put((mask,), shade(albedo, normals, to_light, shading, light, amb))
    rgb, alpha = _composite(col, mask, rast, clip, faces, bg)
    return {"rgb": rgb, "alpha": alpha, "rast": rast}


def render_textured(mesh: TexturedMesh, cams: Cameras, shaded: bool = False, bg: float = 1.0) -> Tensor:
    """Render ``mesh`` from ``cams``: ``[B, H, W, 3]`` in ``[0, 1]`` composited on a grey level ``bg``.

    Args:
        mesh: The textured mesh (engine frame, Z up).
        cams: Cameras to render from.
        shaded: Light the texture with :data:`SHEET_LIGHT` to show the shape; otherwise it is shown flat and unlit.
        bg: Background grey level.
    """
    v = torch.tensor(np.asarray(mesh.verts), dtype=torch.float32)
    f = torch.tensor(np.asarray(mesh.faces), dtype=torch.long)
    with torch.no_grad():
        clip = cams.project(v)
        rast = rasterize(clip, f, (cams.height, cams.width))
        uv = interpolate(torch.tensor(np.asarray(mesh.uvs), dtype=torch.float32), rast, f)
        col = texture(torch.tensor(np.asarray(mesh.texture)[..., :3], dtype=torch.float32) / 255.0, uv)
        if shaded and mesh.normals is not None:
            n = interpolate(torch.tensor(np.asarray(mesh.normals), dtype=torch.float32), rast, f)
            n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            to_cam = -cams.rays()[1]
            n = torch.where((n * to_cam).sum(-1, keepdim=True) < 0, -n, n)  # two-sided
            col = shade(col.reshape(-1, 3), n.reshape(-1, 3), to_cam.reshape(-1, 3), "lambertian",
                        SHEET_LIGHT).reshape(col.shape)
        mask = rast[..., 3] > 0
        rgb, _ = _composite(col * mask[..., None].to(col.dtype), mask, rast, clip, f, bg)
        return rgb.clamp(0, 1)
