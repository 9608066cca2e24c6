"""Small triangle-mesh utilities: normals, regularisers, measures and clean-up.

Meshes are ``verts [V, 3]`` float tensors and ``faces [F, 3]`` int64 tensors wound counter-clockwise seen
from outside (normals ``(b - a) x (c - a)`` point outward), as produced by ``marching_tets``. Everything
that returns a float is differentiable w.r.t. ``verts``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from ..runtime.errors import InputError


def _check_mesh(verts: Tensor, faces: Tensor) -> Tensor:
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise InputError(f"Mesh vertices must have shape [V, 3]; got {tuple(verts.shape)}.")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise InputError(f"Mesh faces must be triangles with shape [F, 3]; got {tuple(faces.shape)}.")
    return faces.long()


def _safe_normalize(v: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """``v / |v|`` with a NaN-free gradient at 0, and the length ``[..., 1]``."""
    length = (v * v).sum(dim=-1, keepdim=True).clamp_min(eps * eps).sqrt()
    return v / length, length


def _face_cross(verts: Tensor, faces: Tensor) -> Tensor:
    """``[F, 3]`` un-normalised face normals ``(b - a) x (c - a)`` (length = twice the area)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return torch.linalg.cross(b - a, c - a, dim=-1)


def face_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Unit face normals ``[F, 3]`` (zero for degenerate faces).

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices.
    """
    faces = _check_mesh(verts, faces)
    return _safe_normalize(_face_cross(verts, faces))[0]


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals ``[V, 3]``.

    A vertex that no face uses (or whose faces cancel out) gets ``(0, 0, 1)``, so the result is always unit
    length and finite.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices.
    """
    faces = _check_mesh(verts, faces)
    fn = _face_cross(verts, faces)  # [F, 3], length = 2 * area
    acc = torch.zeros_like(verts)
    for k in range(3):
        acc = acc.index_add(0, faces[:, k], fn)
    n, length = _safe_normalize(acc)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=verts.dtype, device=verts.device).expand_as(n)
    return torch.where(length > 1e-10, n, up)


def mesh_edges(faces: Tensor) -> Tensor:
    """Unique undirected edges ``[E, 2]`` of a triangle mesh, each row sorted (``a < b``)."""
    faces = faces.long()
    if faces.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.int64, device=faces.device)
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)
    e, _ = e.sort(dim=1)
    return torch.unique(e, dim=0)


def uniform_laplacian(verts: Tensor, faces: Tensor) -> Tensor:
    """Uniform Laplacian ``[V, 3]``: mean of each vertex's neighbours minus the vertex (0 for isolated ones).

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices.
    """
    faces = _check_mesh(verts, faces)
    e = mesh_edges(faces)
    if e.shape[0] == 0:
        return torch.zeros_like(verts)
    num_v = verts.shape[0]
    deg = torch.bincount(e.reshape(-1), minlength=num_v).to(verts.dtype)[:, None]  # [V, 1]
    nbr = torch.zeros_like(verts).index_add(0, e[:, 0], verts[e[:, 1]]).index_add(0, e[:, 1], verts[e[:, 0]])
    delta = nbr / deg.clamp_min(1.0) - verts
    return torch.where(deg > 0, delta, torch.zeros_like(delta))


def laplacian_loss(verts: Tensor, faces: Tensor) -> Tensor:
    """Mean squared distance from each (non-isolated) vertex to the mean of its neighbours; a smoothness loss.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices.

    Returns:
        Scalar loss in squared scene units (0 for a mesh without faces).
    """
    faces = _check_mesh(verts, faces)
    used = torch.zeros(verts.shape[0], dtype=torch.bool, device=verts.device)
    used[faces.reshape(-1)] = True
    if not bool(used.any()):
        return verts.sum() * 0.0
    delta = uniform_laplacian(verts, faces)
    return (delta[used] ** 2).sum(dim=-1).mean()


def _interior_edge_face_pairs(faces: Tensor, num_v: int) -> Tensor:
    """``[P, 2]`` indices of the two faces on each edge shared by exactly two faces."""
    num_f = faces.shape[0]
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)
    e, _ = e.sort(dim=1)
    keys = e[:, 0] * num_v + e[:, 1]  # [3F]
    face_id = torch.arange(num_f, device=faces.device).repeat(3)
    keys, order = keys.sort()
    face_id = face_id[order]
    _, counts = torch.unique_consecutive(keys, return_counts=True)
    group_size = torch.repeat_interleave(counts, counts)  # [3F] size of each element's group
    first = torch.ones_like(keys, dtype=torch.bool)
    first[1:] = keys[1:] != keys[:-1]
    start = first & (group_size == 2)
    idx = start.nonzero()[:, 0]
    return torch.stack([face_id[idx], face_id[idx + 1]], dim=-1)


#: Forms of :func:`normal_consistency_loss`: ``"cosine"``, ``1 - cos`` of the angle between adjacent face normals
#: (threestudio's; about half the angle squared, so a crease costs less spread over many edges: it rounds them);
#: ``"angle"``, the distance between the two normals (about the angle; total variation of the normals: a crease
#: costs its angle once however sharp, while small wrinkles are penalised harder than by the cosine).
NormalForm = Literal["cosine", "angle"]
NORMAL_FORMS: tuple[str, ...] = get_args(NormalForm)


def normal_consistency_loss(verts: Tensor, faces: Tensor, form: NormalForm = "cosine", eps: float = 0.01) -> Tensor:
    """Mean over interior edges of how much the two adjacent face normals differ.

    Edges on a boundary or shared by more than two faces are ignored.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices, consistently wound.
        form: One of :data:`NORMAL_FORMS`: ``"cosine"``, ``1 - cos(angle)``; ``"angle"``, ``|n1 - n2|`` (``2 sin``
            of half the angle), smoothed as ``sqrt(|n1 - n2|^2 + eps^2) - eps`` to be differentiable at 0.
        eps: The smoothing of ``"angle"``.

    Returns:
        Scalar loss in ``[0, 2]`` (0 for a plane, or when there is no interior edge).
    """
    if form not in NORMAL_FORMS:
        raise ValueError(f"form must be one of {NORMAL_FORMS}, got {form!r}")
    faces = _check_mesh(verts, faces)
    if faces.shape[0] < 2:
        return verts.sum() * 0.0
    pairs = _interior_edge_face_pairs(faces, verts.shape[0])
    if pairs.shape[0] == 0:
        return verts.sum() * 0.0
    n = face_normals(verts, faces)
    cos = (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(dim=-1)
    if form == "cosine":
        return (1.0 - cos).mean()
    return ((2.0 * (1.0 - cos)).clamp_min(0.0) + eps * eps).sqrt().sub(eps).mean()


def mesh_area(verts: Tensor, faces: Tensor) -> Tensor:
    """Total surface area (scalar)."""
    faces = _check_mesh(verts, faces)
    return 0.5 * _face_cross(verts, faces).norm(dim=-1).sum()


def mesh_volume(verts: Tensor, faces: Tensor) -> Tensor:
    """Signed enclosed volume (scalar) by the divergence theorem; positive for a closed, outward-wound mesh."""
    faces = _check_mesh(verts, faces)
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return (a * torch.linalg.cross(b, c, dim=-1)).sum() / 6.0


def compact(verts: Tensor, faces: Tensor, return_index: bool = False):
    """Drop vertices that no face uses and renumber the faces.

    Args:
        verts: ``[V, 3]`` positions (or any ``[V, ...]`` per-vertex tensor).
        faces: ``[F, 3]`` vertex indices.
        return_index: Also return ``kept [V']``, the original index of every kept vertex (to carry other
            per-vertex attributes along).

    Returns:
        ``(verts [V', 3], faces [F, 3])``, plus ``kept`` when ``return_index``. Gradients flow to the input.
    """
    faces = faces.long()
    kept = torch.unique(faces.reshape(-1))
    remap = torch.full((verts.shape[0],), -1, dtype=torch.int64, device=faces.device)
    remap[kept] = torch.arange(kept.shape[0], device=faces.device)
    out = (verts[kept], remap[faces])
    return (*out, kept) if return_index else out


def largest_components(verts: Tensor, faces: Tensor, keep: int = 1,
                       min_fraction: float = 0.0) -> tuple[Tensor, Tensor]:
    """Keep the largest connected components (by face count) and drop the rest, e.g. floaters.

    Components are sets of faces connected through shared vertices. The ``keep`` largest are kept, except
    those with fewer than ``min_fraction`` of all faces. Unused vertices are removed.

    Args:
        verts: ``[V, 3]`` positions.
        faces: ``[F, 3]`` vertex indices.
        keep: How many components to keep at most (>= 1).
        min_fraction: Drop kept components smaller than this fraction of the total face count.

    Returns:
        verts ``[V', 3]`` (differentiable w.r.t. the input) and faces ``[F', 3]``.
    """
    faces = _check_mesh(verts, faces)
    if keep < 1:
        raise InputError(f"largest_components needs keep >= 1; got {keep}.")
    if faces.shape[0] == 0:
        return verts[:0], faces
    f_np = faces.detach().cpu().numpy()
    num_v = verts.shape[0]
    rows = np.concatenate([f_np[:, 0], f_np[:, 1], f_np[:, 2]])
    cols = np.concatenate([f_np[:, 1], f_np[:, 2], f_np[:, 0]])
    graph = coo_matrix((np.ones(rows.shape[0], dtype=np.int8), (rows, cols)), shape=(num_v, num_v))
    _, labels = connected_components(graph, directed=False)
    face_label = labels[f_np[:, 0]]
    sizes = np.bincount(face_label)
    order = np.argsort(-sizes, kind="stable")[:keep]
    order = order[sizes[order] >= min_fraction * f_np.shape[0]]
    mask = torch.from_numpy(np.isin(face_label, order)).to(faces.device)
    return compact(verts, faces[mask])
