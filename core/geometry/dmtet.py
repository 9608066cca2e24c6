"""Differentiable iso-surface on a tetrahedral grid (DMTet-style marching tetrahedra).

Sign convention used throughout: ``sdf < 0`` is inside the object, ``sdf >= 0`` is outside, and the
extracted triangles are wound counter-clockwise seen from outside, so their normals
``(b - a) x (c - a)`` point toward positive SDF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime.errors import ConfigError, InputError
from .tetgrid import _check_bbox, grid_edges, make_tet_grid

# The six edges of a tetrahedron as pairs of local vertex indices.
_LOCAL_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _build_case_table() -> tuple[Tensor, Tensor]:
    """Triangles for each of the 16 inside/outside cases of a positively oriented tet.

    Bit ``i`` of the case index is set when local vertex ``i`` is inside. The winding of each triangle is
    chosen on the reference tet (with crossings at edge midpoints) so that its normal points from the inside
    vertices toward the outside ones. An orientation-preserving affine map (any positively oriented tet) and
    moving the crossings along their edges never make these triangles degenerate, so the winding holds for
    every positively oriented tet and every crossing position.

    Returns:
        table ``[16, 2, 3]`` local edge indices (-1 where a case has fewer triangles) and counts ``[16]``.
    """
    ref = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    edge_of = {frozenset(e): n for n, e in enumerate(_LOCAL_EDGES)}
    table = torch.full((16, 2, 3), -1, dtype=torch.int64)
    counts = torch.zeros(16, dtype=torch.int64)
    for case in range(16):
        ins = [i for i in range(4) if case >> i & 1]
        outs = [i for i in range(4) if not case >> i & 1]
        if len(ins) in (0, 4):
            continue
        if len(ins) == 2:
            (a, b), (c, d) = ins, outs
            quad = [edge_of[frozenset(p)] for p in ((a, c), (a, d), (b, d), (b, c))]  # cyclic around the quad
            tris = [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        else:
            lone = ins[0] if len(ins) == 1 else outs[0]
            tris = [[edge_of[frozenset((lone, o))] for o in range(4) if o != lone]]
        outward = ref[outs].mean(0) - ref[ins].mean(0)
        for t, tri in enumerate(tris):
            p = torch.stack([ref[list(_LOCAL_EDGES[e])].mean(0) for e in tri])
            normal = torch.linalg.cross(p[1] - p[0], p[2] - p[0])
            if torch.dot(normal, outward) < 0:
                tri = [tri[0], tri[2], tri[1]]
            table[case, t] = torch.tensor(tri)
        counts[case] = len(tris)
    return table, counts


_TRI_TABLE, _TRI_COUNT = _build_case_table()


def marching_tets(verts: Tensor, sdf: Tensor, tets: Tensor, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Extract the zero level set of a per-vertex SDF on a tetrahedral grid, differentiably.

    Convention: ``sdf < 0`` inside, ``sdf >= 0`` outside; faces are wound so that their normals point
    outward (toward positive SDF), which makes the signed volume of a closed surface positive. Each grid edge
    with a sign change gives one surface vertex, shared by all tets around that edge, at the linear zero
    crossing ``p = (v_a * s_b - v_b * s_a) / (s_b - s_a)``; a tet gives one or two triangles. The result is
    watertight wherever the surface does not reach the grid boundary. Only the tets that cross the surface
    are processed.

    Args:
        verts: ``[V, 3]`` grid vertex positions (may carry gradients, e.g. deformed positions).
        sdf: ``[V]`` signed distance (or any level-set function) at the vertices (may carry gradients).
        tets: ``[T, 4]`` int64 vertex indices of positively oriented tets (as from ``make_tet_grid``).
        eps: Smallest ``|s_b - s_a|`` used in the division; guards against two near-zero values.

    Returns:
        mesh_verts ``[M, 3]`` (differentiable w.r.t. ``verts`` and ``sdf``) and faces ``[K, 3]`` int64. Both are
        empty (``M = K = 0``) when the SDF has no sign change.
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise InputError(f"Grid vertices must have shape [V, 3]; got {tuple(verts.shape)}.")
    if sdf.shape != verts.shape[:1]:
        raise InputError(f"The SDF must have one value per grid vertex, shape [{verts.shape[0]}]; "
                         f"got {tuple(sdf.shape)}.")
    if tets.dim() != 2 or tets.shape[1] != 4:
        raise InputError(f"Tetrahedra must have shape [T, 4]; got {tuple(tets.shape)}.")
    dev = verts.device
    num_v = verts.shape[0]
    tets = tets.long()
    with torch.no_grad():
        inside = sdf.detach() < 0  # [V]
        # Filter first (uint8 gathers keep this cheap for millions of tets).
        n_in = torch.take(inside.to(torch.uint8), tets).sum(dim=1, dtype=torch.uint8)  # [T]
        tets_c = tets[(n_in > 0) & (n_in < 4)]  # [Tc, 4]
        if tets_c.shape[0] == 0:
            return verts.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64, device=dev)
        weights = torch.tensor([1, 2, 4, 8], dtype=torch.int64, device=dev)
        case = (inside[tets_c].long() * weights).sum(dim=1)  # [Tc]
        local = torch.tensor(_LOCAL_EDGES, dtype=torch.int64, device=dev)
        edges = tets_c[:, local]  # [Tc, 6, 2]
        edges, _ = edges.sort(dim=-1)
        cut = inside[edges[..., 0]] != inside[edges[..., 1]]  # [Tc, 6]
        keys = edges[..., 0] * num_v + edges[..., 1]
        uniq, inverse = torch.unique(keys[cut], return_inverse=True)
        edge_vert = torch.full(cut.shape, -1, dtype=torch.int64, device=dev)
        edge_vert[cut] = inverse
        ia, ib = uniq // num_v, uniq % num_v
        table, counts = _TRI_TABLE.to(dev), _TRI_COUNT.to(dev)
        tri_local = table[case]  # [Tc, 2, 3]
        rows = torch.arange(tets_c.shape[0], device=dev)
        first = edge_vert[rows[:, None], tri_local[:, 0]]  # [Tc, 3]
        two = counts[case] == 2
        second = edge_vert[rows[two][:, None], tri_local[two, 1]]
        faces = torch.cat([first, second], dim=0)

    s_a, s_b = sdf[ia], sdf[ib]
    denom = s_b - s_a  # never 0 exactly (opposite sides), but may be tiny
    denom = torch.where(denom >= 0, denom.clamp_min(eps), denom.clamp_max(-eps))
    t = (-s_a / denom).clamp(0.0, 1.0)[:, None]  # [M, 1] weight of v_b
    v_a, v_b = verts[ia], verts[ib]
    mesh_verts = v_a + t * (v_b - v_a)  # == (v_a * s_b - v_b * s_a) / (s_b - s_a)
    return mesh_verts, faces


@dataclass
class DMTetConfig:
    """Settings of the differentiable tet-grid surface.

    Attributes:
        resolution: Tet grid resolution: cubes per axis (each split into six tets). 64 is a good mesh-stage
            default; 128 gives finer detail at about 8x the memory.
        deform_scale: Largest vertex offset, in units of one grid cell, applied as ``tanh(deform) * scale``.
            Values above 0.5 let neighbouring vertices cross and flip tets.
        learn_deform: Whether the vertex offsets are optimised (``False`` freezes them at zero).
    """

    resolution: int = 64
    deform_scale: float = 0.5
    learn_deform: bool = True

    def __post_init__(self) -> None:
        if int(self.resolution) != self.resolution or self.resolution < 2:
            raise ConfigError(f"dmtet.resolution must be an integer >= 2; got {self.resolution!r}.")
        if not self.deform_scale >= 0:
            raise ConfigError(f"dmtet.deform_scale must be >= 0 (grid cells); got {self.deform_scale!r}.")


SdfSource = Callable[[Tensor], Tensor] | Tensor


class DMTetGeometry(nn.Module):
    """An SDF and per-vertex offsets on a tet grid; ``forward()`` extracts the current mesh.

    Parameters: ``sdf [V]`` and ``deform [V, 3]`` (offsets before ``tanh``). The grid, tets and edges are
    buffers rebuilt from the config and box (not saved in ``state_dict``); ``grid_verts`` is in x-major lattice
    order, so ``sdf.reshape(R + 1, R + 1, R + 1)[i, j, k]`` is the value at lattice point ``(x_i, y_j, z_k)``.
    Until :meth:`init_from_sdf` is called the SDF is a sphere whose radius is a third of the box's smallest
    extent.

    Args:
        cfg: The grid settings.
        bbox: ``[2, 3]`` min and max corner of the region the surface can occupy.
    """

    bbox: Tensor
    grid_verts: Tensor
    tets: Tensor
    cell: Tensor

    def __init__(self, cfg: DMTetConfig, bbox: Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        bbox = _check_bbox(bbox)
        verts, tets = make_tet_grid(cfg.resolution, bbox)
        self.register_buffer("bbox", bbox)
        self.register_buffer("grid_verts", verts, persistent=False)  # [V, 3]
        self.register_buffer("tets", tets, persistent=False)  # [T, 4]
        self.register_buffer("cell", (bbox[1] - bbox[0]) / cfg.resolution, persistent=False)  # [3] per-axis cell size
        self._edges: Tensor | None = None
        center = bbox.mean(dim=0)
        radius = float((bbox[1] - bbox[0]).min()) / 3.0
        self.sdf = nn.Parameter((verts - center).norm(dim=-1) - radius)
        self.deform = nn.Parameter(torch.zeros_like(verts), requires_grad=cfg.learn_deform)

    @property
    def cell_size(self) -> float:
        """The smallest grid cell edge in scene units (cells are cubes when the box is)."""
        return float(self.cell.min())

    @property
    def edges(self) -> Tensor:
        """``[E, 2]`` all grid edges (computed once, on the module's device)."""
        if self._edges is None or self._edges.device != self.sdf.device:
            self._edges = grid_edges(self.cfg.resolution, device=self.sdf.device)
        return self._edges

    @torch.no_grad()
    def init_from_sdf(self, fn_or_values: SdfSource, chunk: int = 262144) -> None:
        """Set the SDF parameter from a function of position or from values.

        Args:
            fn_or_values: Either a callable mapping ``[N, 3]`` world positions to ``[N]`` (or ``[N, 1]``) SDF
                values (called on the undeformed grid in chunks, without gradients), or a ``[V]`` tensor.
                Negative means inside.
            chunk: Grid vertices per call of the callable.

        Raises:
            InputError: Values of the wrong shape or with NaN/inf.
        """
        if callable(fn_or_values):
            parts = [torch.as_tensor(fn_or_values(p)).reshape(-1) for p in self.grid_verts.split(chunk)]
            values = torch.cat(parts) if parts else self.sdf.new_zeros(0)
        else:
            values = torch.as_tensor(fn_or_values)
            if values.dim() == 2 and values.shape[1] == 1:
                values = values[:, 0]
        if values.shape != self.sdf.shape:
            raise InputError(f"The SDF needs one value per tet-grid vertex ({self.sdf.shape[0]} values for "
                             f"resolution {self.cfg.resolution}); got shape {tuple(values.shape)}.")
        if not torch.isfinite(values).all():
            raise InputError("The SDF values contain NaN or inf; check the field the mesh is extracted from.")
        self.sdf.copy_(values.to(self.sdf))

    def deform_offsets(self) -> Tensor:
        """``[V, 3]`` vertex offsets, bounded by ``deform_scale`` grid cells per axis."""
        return torch.tanh(self.deform) * (self.cfg.deform_scale * self.cell)

    def deformed_verts(self) -> Tensor:
        """``[V, 3]`` grid vertex positions after the offsets."""
        return self.grid_verts + self.deform_offsets()

    def forward(self) -> tuple[Tensor, Tensor]:
        """The current surface: verts ``[M, 3]`` (differentiable) and faces ``[K, 3]`` int64, normals outward.

        Both are empty when the SDF has no sign change on the grid.
        """
        return marching_tets(self.deformed_verts(), self.sdf, self.tets)

    def sdf_edge_regularizer(self) -> Tensor:
        """Sign-flip regulariser: discourages SDF sign changes along grid edges (removes floaters, smooths).

        Over the grid edges whose ends have different signs, the mean binary cross-entropy between
        ``sigmoid(s_a)`` and the side of ``s_b`` (1 outside, 0 inside), and symmetrically for ``s_b``.

        Returns:
            Scalar loss (0 with a gradient path when no edge changes sign).
        """
        e = self.edges
        s_a, s_b = self.sdf[e[:, 0]], self.sdf[e[:, 1]]
        out_a, out_b = s_a.detach() >= 0, s_b.detach() >= 0
        flip = out_a != out_b
        if not bool(flip.any()):
            return self.sdf.sum() * 0.0
        logits = torch.cat([s_a[flip], s_b[flip]])
        targets = torch.cat([out_b[flip], out_a[flip]]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets)

