"""Per-vertex tangents in the MikkTSpace convention, the one Blender and glTF viewers use when a file gives none.

Each face corner's tangent is the direction of increasing ``u`` and its bitangent of increasing ``v`` with ``v``
pointing up the image (glTF's ``1 - v``), both projected onto the plane of the vertex normal, weighted by the
corner's angle, summed over the corners of each vertex (a UV seam already splits vertices), then made orthonormal
to the normal. The fourth component is the handedness ``w``: the bitangent is ``w * cross(n, t)``. The GLB also
stores them (``TANGENT``), so a viewer needs no guess.
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit length along its last axis (zero vectors stay zero)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n < 1e-20, 1.0, n)


def vertex_tangents(verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """``[V, 4]`` unit tangents and handedness (see the module's doc) of a mesh with per-vertex ``uvs`` (glTF
    convention) and unit ``normals``."""
    v, f = np.asarray(verts, np.float64), np.asarray(faces, np.int64)
    uv = np.asarray(uvs, np.float64) * [1.0, -1.0]  # v up the image
    n = unit(np.asarray(normals, np.float64))
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    t0, t1, t2 = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    d1, d2 = t1 - t0, t2 - t0
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    sign = np.where(det < 0, -1.0, 1.0)[:, None]
    face_t = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * sign  # dP/du, scaled by |det| (only directions matter)
    face_b = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * sign  # dP/dv
    tan = np.zeros_like(v)
    bit = np.zeros_like(v)
    for k in range(3):
        a, b, c = v[f[:, k]], v[f[:, (k + 1) % 3]], v[f[:, (k + 2) % 3]]
        angle = np.arccos(np.clip((unit(b - a) * unit(c - a)).sum(1), -1.0, 1.0))[:, None]
        nk = n[f[:, k]]
        tk = unit(face_t - nk * (face_t * nk).sum(1, keepdims=True))
        bk = unit(face_b - nk * (face_b * nk).sum(1, keepdims=True))
        np.add.at(tan, f[:, k], angle * tk)
        np.add.at(bit, f[:, k], angle * bk)
    tan = tan - n * (tan * n).sum(1, keepdims=True)
    fallback = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])  # no UV gradient: any
    flat = np.linalg.norm(tan, axis=1, keepdims=True) < 1e-12
    tan = np.where(flat, fallback - n * (fallback * n).sum(1, keepdims=True), tan)
    tan = unit(tan)
    w = np.where((np.cross(n, tan) * bit).sum(1) < 0, -1.0, 1.0)
    return np.concatenate([tan, w[:, None]], axis=1).astype(np.float32)
