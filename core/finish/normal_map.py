"""Tangent-space normal maps: the bake of a detailed surface's normals onto a coarser mesh's UV layout.

A normal map (:func:`bake_normal_map`) stores, for each texel of the coarse mesh, the detailed surface's normal at
the nearest point of that surface, in the texel's tangent frame (:func:`~.meshio.tangents.vertex_tangents`,
MikkTSpace convention), as ``rgb = n * 0.5 + 0.5`` (OpenGL's +Y up, as glTF and Blender's Normal Map node read it).
"""

from __future__ import annotations

import numpy as np
import torch

from ...kernels.raster import interpolate, rasterize
from ..geometry.metrics import closest_points_on_mesh
from ..meshio.tangents import unit as _unit
from ..runtime.errors import InputError
from .bake import dilate


def uv_texels(uvs: np.ndarray, faces: np.ndarray, attributes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a mesh in UV space: the ``[H, W]`` mask of texels whose centre lies in a UV triangle and
    ``attributes`` (``[V, C]``) interpolated at those texels (``[N, C]``, in row-major texel order)."""
    uv = torch.from_numpy(np.asarray(uvs, np.float32))
    tri = torch.from_numpy(np.asarray(faces, np.int64).astype(np.int32))
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=-1)
    with torch.no_grad():
        rast = rasterize(clip[None], tri, (size, size))
        covered = rast[0, ..., 3] > 0
        values = interpolate(torch.from_numpy(np.asarray(attributes, np.float32)), rast, tri)[0][covered]
    return covered.numpy(), values.numpy().astype(np.float64)


def bake_normal_map(low_verts: np.ndarray, low_faces: np.ndarray, low_uvs: np.ndarray, low_normals: np.ndarray,
                    tangents: np.ndarray, high_verts: np.ndarray, high_faces: np.ndarray, high_normals: np.ndarray,
                    size: int, padding: int | None = 8) -> np.ndarray:
    """The tangent-space normal map ``[size, size, 3]`` uint8 of the surface ``high`` on the coarse mesh ``low``
    (laid out by ``low_uvs``, its frames from ``low_normals`` and ``tangents`` of
    :func:`~.meshio.tangents.vertex_tangents`).

    Raises:
        InputError: The coarse mesh's UVs cover no texel.
    """
    covered, at = frame_texels(low_verts, low_faces, low_uvs, low_normals, tangents, size)
    _, tri, bary = closest_points_on_mesh(at[:, :3], high_verts, high_faces, candidates=8)
    return normal_map_of(covered, at, tri, bary, high_faces, high_normals, padding)


def frame_texels(verts, faces, uvs, normals, tangents, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The covered texels ``[size, size]`` of a mesh's UV layout and, at each, ``[N, 10]``: position, normal and
    tangent with handedness (what :func:`normal_map_of` reads)."""
    covered, at = uv_texels(uvs, faces, np.concatenate([verts, normals, tangents], axis=1), size)
    if not covered.any():
        raise InputError("The mesh's UVs cover no texel centre; check the UVs or raise the texture size.")
    return covered, at


def normal_map_of(covered: np.ndarray, at: np.ndarray, tri: np.ndarray, bary: np.ndarray, high_faces: np.ndarray,
                  high_normals: np.ndarray, padding: int | None = 8) -> np.ndarray:
    """The normal map of :func:`bake_normal_map` from the texels ``(covered, at)`` of :func:`frame_texels` and their
    nearest points ``(tri, bary)`` on the detailed surface."""
    size = covered.shape[0]
    n, t, w = _unit(at[:, 3:6]), at[:, 6:9], np.where(at[:, 9] < 0, -1.0, 1.0)
    t = _unit(t - n * (t * n).sum(1, keepdims=True))
    b = w[:, None] * np.cross(n, t)
    hn = np.asarray(high_normals, np.float64)[np.asarray(high_faces, np.int64)[tri]]
    target = _unit((bary[:, :, None] * hn).sum(1))
    local = np.stack([(target * t).sum(1), (target * b).sum(1), (target * n).sum(1)], axis=1)
    local[:, 2] = np.maximum(local[:, 2], 0.0)  # a detail normal never faces into the coarse surface
    local = _unit(local)
    image = np.zeros((size, size, 3), np.float64)
    image[..., 2] = 1.0
    image[covered] = local
    image = dilate(image, covered, padding)
    return np.round((image * 0.5 + 0.5) * 255.0).clip(0, 255).astype(np.uint8)


def decode_normal_map(texels: np.ndarray, normals: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """World-space unit normals ``[N, 3]`` from normal-map texels ``[N, 3]`` (uint8 or 0-1 floats) and the frames
    (``normals [N, 3]``, ``tangents [N, 4]``) they were baked in: what a renderer does."""
    x = np.asarray(texels, np.float64)
    x = x / 255.0 if np.asarray(texels).dtype == np.uint8 else x
    local = x * 2.0 - 1.0
    n = _unit(np.asarray(normals, np.float64))
    t = np.asarray(tangents, np.float64)
    tt = _unit(t[:, :3] - n * (t[:, :3] * n).sum(1, keepdims=True))
    b = np.where(t[:, 3:] < 0, -1.0, 1.0) * np.cross(n, tt)
    return _unit(local[:, :1] * tt + local[:, 1:2] * b + local[:, 2:] * n)
