"""The textured mesh the engine writes and reads, its checks and normals, the glTF axis change, and the
all-or-nothing file write every writer goes through."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..geometry import mesh_ops
from ..runtime.errors import InputError


@dataclass
class TexturedMesh:
    """A triangle mesh with one base-colour texture, in the engine's Z-up world frame.

    Attributes:
        verts: ``[V, 3]`` float32 positions.
        faces: ``[F, 3]`` int vertex indices, counter-clockwise seen from outside.
        uvs: ``[V, 2]`` float32 per-vertex UVs in the glTF convention (a vertex on a UV seam is duplicated).
        normals: ``[V, 3]`` float32 unit normals, or None to compute area-weighted vertex normals on export.
        texture: ``[H, W, 3]`` or ``[H, W, 4]`` uint8 image, row 0 = top.
        name: Object name (GLB node and mesh name, OBJ object name).
        normal_map: Optional ``[H, W, 3]`` uint8 tangent-space normal map (:mod:`dreamsmith.core.finish.normal_map`),
            laid out by ``uvs``: the detail of a finer surface this mesh was made from.
        tangents: ``[V, 4]`` float32 tangents and handedness of ``normal_map`` (MikkTSpace convention); with it.
        lods: Coarser levels of detail of the same object (each a :class:`TexturedMesh`, no further ``lods``),
            written beside this one as ``NAME_LOD1``, ``NAME_LOD2``, ...
    """

    verts: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray | None
    texture: np.ndarray
    name: str = "dreamsmith"
    normal_map: np.ndarray | None = None
    tangents: np.ndarray | None = None
    lods: tuple = ()

    def levels(self) -> list[TexturedMesh]:
        """This mesh and its coarser levels, finest first."""
        return [self, *self.lods]

    def moved(self, fn) -> TexturedMesh:
        """A copy with ``fn`` (``verts [V, 3] -> verts [V, 3]``, a rigid or scaling map) applied to every level's
        positions; normals and tangents are recomputed on export from the new positions (a tangent-space normal
        map moves with its frames)."""
        from dataclasses import replace

        return replace(self, verts=np.asarray(fn(self.verts), np.float32), normals=None, tangents=None,
                       lods=tuple(lod.moved(fn) for lod in self.lods))


def check_arrays(verts: np.ndarray, faces: np.ndarray, without_faces: str) -> None:
    """Refuse ``verts [V, 3]`` / ``faces [F, 3]`` that are empty, malformed or index past the vertices
    (``without_faces``: what the error says an empty mesh cannot do)."""
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) == 0:
        raise InputError(f"The mesh has no vertices or malformed positions (shape {verts.shape}, expected [V, 3]).")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise InputError(f"The mesh has no faces (faces shape {faces.shape}); {without_faces}.")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise InputError(f"Face indices must lie in [0, {len(verts) - 1}]; got [{faces.min()}, {faces.max()}].")


def checked(mesh: TexturedMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``mesh`` and return ``(verts, faces, uvs, normals, texture)`` as contiguous arrays of export dtypes."""
    verts = np.ascontiguousarray(np.asarray(mesh.verts, dtype=np.float32))
    faces = np.asarray(mesh.faces)
    uvs = np.ascontiguousarray(np.asarray(mesh.uvs, dtype=np.float32))
    tex = np.asarray(mesh.texture)
    check_arrays(verts, faces, "export needs at least one triangle")
    if uvs.shape != (len(verts), 2):
        raise InputError(f"UVs must be per-vertex [V, 2] = [{len(verts)}, 2]; got {uvs.shape}. Unwrap the mesh first.")
    if not (np.isfinite(verts).all() and np.isfinite(uvs).all()):
        raise InputError("The mesh has NaN or infinite positions or UVs; it cannot be exported.")
    if tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] not in (3, 4) or tex.shape[0] < 1 or tex.shape[1] < 1:
        raise InputError(f"The texture must be a uint8 [H, W, 3|4] image; got {tex.dtype} {tex.shape}.")
    normals = vertex_normals(verts, faces) if mesh.normals is None else np.asarray(mesh.normals, dtype=np.float32)
    if normals.shape != verts.shape:
        raise InputError(f"Normals must be [V, 3] like the positions; got {normals.shape}.")
    normals = _unit(normals)
    return verts, faces.astype(np.uint32), uvs, normals, np.ascontiguousarray(tex)


def _unit(n: np.ndarray) -> np.ndarray:
    """Normalise ``[N, 3]`` vectors; zero or non-finite ones become ``+Z``."""
    n = np.nan_to_num(np.asarray(n, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    bad = length[:, 0] < 1e-12
    out = n / np.where(length < 1e-12, 1.0, length)
    out[bad] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]``
    (:func:`~dreamsmith.core.geometry.mesh_ops.vertex_normals`), shared across vertices duplicated at UV seams.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` indices.
    """
    verts = np.asarray(verts, dtype=np.float64)
    # Weld exact duplicates (UV-seam copies) so seams do not show as hard edges.
    welded, weld = np.unique(verts, axis=0, return_inverse=True)
    weld = torch.from_numpy(weld.reshape(-1))
    tris = weld[torch.as_tensor(np.asarray(faces, dtype=np.int64))]
    return mesh_ops.vertex_normals(torch.from_numpy(welded), tris)[weld].numpy().astype(np.float32)


def to_gltf(p: np.ndarray) -> np.ndarray:
    """Z-up engine ``[N, 3]`` -> glTF / OBJ Y-up: ``(x, y, z) -> (x, z, -y)``."""
    return np.stack([p[:, 0], p[:, 2], -p[:, 1]], axis=1).astype(np.float32)


def from_gltf(p: np.ndarray) -> np.ndarray:
    """Y-up glTF / OBJ ``[N, 3]`` -> Z-up engine: ``(x, y, z) -> (x, -z, y)``."""
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1).astype(np.float32)


def atomic_write(targets: list[Path], writers: list[Callable[[Path], None]]) -> None:
    """Write each target through a temp file in its directory, then rename all into place; all or nothing."""
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        for target, write in zip(targets, writers, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            # A fresh name opened exclusively (not mkstemp, whose 0600 mode would stick to the result).
            tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
            with open(tmp, "xb"):
                pass
            temps.append(tmp)
            write(tmp)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for p in temps + placed:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        raise
