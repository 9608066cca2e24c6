"""A regular tetrahedral grid for the differentiable iso-surface (DMTet).

The box is divided into ``R^3`` cubes on a ``(R+1)^3`` vertex lattice and each cube is split into
six tetrahedra around its main diagonal (the Kuhn / Freudenthal split). Every cube uses the same
diagonal direction, so neighbouring cubes split their shared square faces along the same
diagonal and the tetrahedra fill the box without cracks or overlaps.

Vertex ``(i, j, k)`` (``0 <= i, j, k <= R`` along x, y, z) has index ``(i * (R + 1) + j) * (R + 1) + k``.
In this triangulation two lattice vertices share an edge exactly when their index offsets differ by
a non-zero vector in ``{0, 1}^3``, which :func:`grid_edges` uses to list the edges without sorting
millions of pairs.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ..runtime.errors import InputError


def _check_bbox(bbox: Tensor) -> Tensor:
    bbox = torch.as_tensor(bbox, dtype=torch.float32)
    if bbox.shape != (2, 3):
        raise InputError(f"The bounding box must have shape [2, 3] (min corner, max corner); got {tuple(bbox.shape)}.")
    if not torch.isfinite(bbox).all() or not (bbox[1] > bbox[0]).all():
        raise InputError(f"The bounding box must have max > min on every axis; got min {bbox[0].tolist()} and "
                         f"max {bbox[1].tolist()}.")
    return bbox


def _check_resolution(resolution: int) -> int:
    if int(resolution) != resolution or resolution < 1:
        raise InputError(f"The tet grid resolution must be a positive integer; got {resolution!r}.")
    return int(resolution)


def _kuhn_offsets(resolution: int) -> Tensor:
    """``[6, 4]`` vertex index offsets of the six positively oriented tets of the cube at index 0."""
    n = resolution + 1
    step = (n * n, n, 1)  # index offset of a unit step along x, y, z
    rows = []
    for perm in itertools.permutations(range(3)):
        v1 = step[perm[0]]
        v2 = v1 + step[perm[1]]
        v3 = v2 + step[perm[2]]
        # det[e_p0, e_p0 + e_p1, e_p0 + e_p1 + e_p2] = sign(perm); an odd permutation is flipped by a swap.
        inversions = sum(1 for a, b in itertools.combinations(perm, 2) if a > b)
        rows.append([0, v1, v2, v3] if inversions % 2 == 0 else [0, v1, v3, v2])
    return torch.tensor(rows, dtype=torch.int64)


def _cube_origins(resolution: int, device: torch.device | str | None = None) -> Tensor:
    """``[R^3]`` index of the min corner of every cube."""
    n = resolution + 1
    r = torch.arange(resolution, dtype=torch.int64, device=device)
    return ((r[:, None, None] * n + r[None, :, None]) * n + r[None, None, :]).reshape(-1)


def make_tet_grid(resolution: int, bbox: Tensor, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """A crack-free tetrahedral grid filling an axis-aligned box.

    Args:
        resolution: ``R``, the number of cubes along each axis (each cube holds six tetrahedra).
        bbox: ``[2, 3]`` min and max corner of the box.
        device: Where to build the tensors (CPU by default).

    Returns:
        verts ``[(R+1)^3, 3]`` float32 lattice positions and tets ``[6 R^3, 4]`` int64 vertex indices. Every
        tet is positively oriented: ``det[v1 - v0, v2 - v0, v3 - v0] > 0``.

    Raises:
        InputError: A non-positive resolution or a box with ``max <= min`` on some axis.
    """
    resolution = _check_resolution(resolution)
    bbox = _check_bbox(bbox).to(device)
    n = resolution + 1
    lin = torch.linspace(0.0, 1.0, n, dtype=torch.float32, device=bbox.device)
    ii, jj, kk = torch.meshgrid(lin, lin, lin, indexing="ij")
    unit = torch.stack([ii, jj, kk], dim=-1).reshape(-1, 3)  # [V, 3] in [0, 1]^3
    verts = bbox[0] + unit * (bbox[1] - bbox[0])
    tets = _cube_origins(resolution, bbox.device)[:, None, None] + _kuhn_offsets(resolution).to(bbox.device)[None]
    return verts, tets.reshape(-1, 4)


def grid_edges(resolution: int, device: torch.device | str | None = None) -> Tensor:
    """All edges of the grid of :func:`make_tet_grid`, computed from the lattice (no sort).

    Args:
        resolution: ``R`` as passed to :func:`make_tet_grid`.
        device: Where to build the tensor.

    Returns:
        ``[E, 2]`` int64 unique edges with ``edges[:, 0] < edges[:, 1]``, grouped by direction (not sorted).
        They are the same set as ``tet_edges(tets)``.
    """
    resolution = _check_resolution(resolution)
    n = resolution + 1
    r = torch.arange(n, dtype=torch.int64, device=device)
    out = []
    for dx, dy, dz in itertools.product((0, 1), repeat=3):
        if dx == dy == dz == 0:
            continue
        i, j, k = r[: n - dx], r[: n - dy], r[: n - dz]
        start = ((i[:, None, None] * n + j[None, :, None]) * n + k[None, None, :]).reshape(-1)
        out.append(torch.stack([start, start + (dx * n + dy) * n + dz], dim=-1))
    return torch.cat(out, dim=0)


def tet_edges(tets: Tensor) -> Tensor:
    """Unique edges of any tetrahedral mesh.

    Args:
        tets: ``[T, 4]`` vertex indices.

    Returns:
        ``[E, 2]`` int64 edges, each row sorted (``a < b``), rows in lexicographic order.
    """
    if tets.dim() != 2 or tets.shape[1] != 4:
        raise InputError(f"Tetrahedra must have shape [T, 4]; got {tuple(tets.shape)}.")
    if tets.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.int64, device=tets.device)
    tets = tets.long()
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], device=tets.device)
    e = tets[:, pairs].reshape(-1, 2)  # [6T, 2]
    e, _ = e.sort(dim=1)
    base = int(tets.max()) + 1
    keys = torch.unique(e[:, 0] * base + e[:, 1])
    return torch.stack([keys // base, keys % base], dim=-1)
