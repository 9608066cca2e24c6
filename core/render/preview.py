"""Preview images: of a finished textured mesh (the same rasteriser and texture lookup the engine trains with),
and live, while a stage trains (a row of fixed views of the current field or mesh, what the sidebar shows during a
job; rendering them draws no random numbers and changes no parameter, so a job with previews gives the same result
as one without)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..meshio import FileWrite, TexturedMesh, png_files, write_files
from ..scene.cameras import Cameras, orbit_cameras
from .mesh import render_mesh, render_textured
from .shading import LightConfig
from .volume import VolumeRenderer


def preview_cameras(verts: np.ndarray, n_views: int = 4, size: int = 256, elevation: float = 20.0,
                    fov_deg: float = 40.0) -> Cameras:
    """``n_views`` cameras around a mesh's bounding sphere, starting at the front (-Y), framing it fully."""
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    az = torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views)
    return orbit_cameras(az, torch.full((n_views,), elevation), dist, fov_deg, size, target=tuple(centre.tolist()))


def preview_files(mesh: TexturedMesh, path: str | os.PathLike, size: int = 256, n_views: int = 4) -> list[FileWrite]:
    """A contact sheet (``n_views`` shaded views in a row) as a PNG file, to write with a job's other outputs."""
    cams = preview_cameras(np.asarray(mesh.verts), n_views, size)
    return png_files(to_sheet(render_textured(mesh, cams, shaded=True)), path)


def write_preview(mesh: TexturedMesh, path: str | os.PathLike, size: int = 256, n_views: int = 4) -> Path:
    """Write the contact sheet of :func:`preview_files`, atomically."""
    write_files(preview_files(mesh, path, size, n_views))
    return Path(path)


# ---------------------------------------------------------------------------------------------- live previews

#: Views in a preview row, and their elevation (degrees).
N_VIEWS, ELEVATION = 4, 20.0


def preview_views(scene_radius: float, size: int, n_views: int = N_VIEWS, fov_deg: float = 40.0) -> Cameras:
    """``n_views`` cameras around the scene box's centre, front (-Y) first, framing a sphere of ``scene_radius``."""
    az = torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views)
    dist = 0.8 * scene_radius / float(np.sin(np.radians(fov_deg / 2)))
    return orbit_cameras(az, torch.full((n_views,), ELEVATION), dist, fov_deg, size)


def to_sheet(rgb: Tensor) -> np.ndarray:
    """``[B, H, W, 3]`` in [0, 1] -> one uint8 ``[H, B*W, 3]`` row."""
    row = torch.cat(list(rgb.detach().float().clamp(0, 1).cpu()), dim=1)
    return (row.numpy() * 255.0 + 0.5).astype(np.uint8)


def field_preview(scene_radius: float, size: int = 96) -> Callable[..., np.ndarray]:
    """A ``(field, occupancy, renderer) -> uint8 image`` for the coarse stage: lambertian renders from
    :func:`preview_views`, over the renderer's background (the learned one, when the stage learns one)."""
    cams = preview_views(scene_radius, size)

    def render(field, occupancy, renderer: VolumeRenderer) -> np.ndarray:
        with torch.no_grad():
            out = renderer.render_image(field, cams, occupancy, shading="lambertian", perturb=False)
        return to_sheet(out["rgb"])

    return render


def mesh_preview(scene_radius: float, size: int = 96, background: float = 1.0,
                 light: LightConfig | None = None) -> Callable[..., np.ndarray]:
    """A ``(geometry, colour field) -> uint8 image`` for the mesh stage: lambertian renders of the current mesh, lit
    by ``light`` (the stage's)."""
    cams = preview_views(scene_radius, size)

    def render(geo, color_field) -> np.ndarray:
        with torch.no_grad():
            verts, faces = geo()
            if faces.shape[0] == 0:
                return to_sheet(torch.full((len(cams), size, size, 3), background))
            bg = torch.full((1, 1, 1, 3), background, device=verts.device)
            out = render_mesh(verts, faces, cams.to(verts.device), color_field.albedo, bg, shading="lambertian",
                              light=light)
        return to_sheet(out["rgb"])

    return render
