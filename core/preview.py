"""Preview images of a textured mesh: the same rasteriser and texture lookup the engine trains with."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..kernels.raster import antialias, interpolate, rasterize, texture
from .cameras import Cameras, orbit_cameras
from .export import TexturedMesh


def render_textured(mesh: TexturedMesh, cams: Cameras, shaded: bool = False, bg: float = 1.0) -> Tensor:
    """Render ``mesh`` from ``cams``: ``[B, H, W, 3]`` in ``[0, 1]`` composited on a grey level ``bg``.

    Args:
        mesh: The textured mesh (engine frame, Z up).
        cams: Cameras to render from.
        shaded: Multiply the texture by a headlight term (ambient 0.4 + diffuse 0.6) to show the shape;
            otherwise the texture is shown flat and unlit.
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
            o, d = cams.rays()
            col = col * (0.4 + 0.6 * (n * -d).sum(-1, keepdim=True).abs())
        mask = (rast[..., 3:] > 0).to(col.dtype)
        rgba = antialias(torch.cat([col * mask, mask], dim=-1), rast, clip, f)
        a = rgba[..., 3:].clamp(0, 1)
        return (rgba[..., :3] + (1 - a) * bg).clamp(0, 1)


def preview_cameras(verts: np.ndarray, n_views: int = 4, size: int = 256, elevation: float = 20.0,
                    fov_deg: float = 40.0) -> Cameras:
    """``n_views`` cameras around a mesh's bounding sphere, starting at the front (-Y), framing it fully."""
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    az = torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views)
    return orbit_cameras(az, torch.full((n_views,), elevation), dist, fov_deg, size, target=tuple(centre.tolist()))


def write_preview(mesh: TexturedMesh, path: str | os.PathLike, size: int = 256, n_views: int = 4) -> Path:
    """Write a contact sheet (``n_views`` shaded views in a row) as PNG, atomically."""
    cams = preview_cameras(np.asarray(mesh.verts), n_views, size)
    img = render_textured(mesh, cams, shaded=True)
    sheet = (torch.cat(list(img), dim=1).numpy() * 255 + 0.5).astype(np.uint8)
    return write_png_atomic(sheet, path)


def write_png_atomic(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 ``[H, W, 3|4]`` image as PNG under a temporary name, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
