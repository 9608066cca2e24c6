"""From the coarse field to the mesh stage's start: the occupied region of the field (cleaned of pinholes, hollows
and specks) as a signed distance on the tetrahedral grid."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from ..geometry.dmtet import DMTetGeometry
from ..runtime.errors import InputError


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


def iso_level(density: Tensor, level: float) -> float:
    """The iso level to mesh ``density`` at: ``level``, or, when too little of the grid (fewer than
    :data:`MIN_OCCUPIED_FRACTION` of its points) is above it (a short or weak coarse run, a faint object), the level
    adapted to the field (:func:`auto_iso_level`), so that whatever shape the field holds is meshed."""
    if int((density > level).sum()) >= max(1, MIN_OCCUPIED_FRACTION * density.numel()):
        return level
    auto = auto_iso_level(density)
    return auto if 0.0 < auto < level else level


def iso_occupancy(density: Tensor, level: float) -> Tensor:
    """Where ``density`` exceeds :func:`iso_level` (``level``, or the level adapted to a faint field)."""
    return density > iso_level(density, level)


@torch.no_grad()
def _start_occupancy(density_fn, grid_verts: Tensor, grid_shape: tuple[int, int, int], level: float, carve_fn,
                     min_fraction: float, source: str, hull_fallback: bool, carve_after_cleaning: bool
                     ) -> tuple[np.ndarray, Tensor, float]:
    """The cleaned occupancy ``grid_shape`` of :func:`initial_sdf`, the raw densities ``[V]`` and the level used."""
    dens = torch.cat([density_fn(c) for c in grid_verts.split(1 << 18)])
    hull = None if carve_fn is None else torch.cat([carve_fn(c) for c in grid_verts.split(1 << 18)])
    if hull is None or not hull_fallback:
        seen = dens if hull is None else torch.where(hull, dens, torch.zeros_like(dens))
        level = iso_level(seen, level)
        occ = seen > level
    else:
        occ = dens > level
        # An under-trained field (tiny budgets) may have no density above the iso level yet: the hull still is a
        # valid start for the mesh stage, which refines it against the images.
        occ = occ & hull if bool((occ & hull).any()) else hull
    occ_np = clean_occupancy(occ.reshape(grid_shape).cpu().numpy(), min_fraction)
    if hull is not None and carve_after_cleaning:
        occ_np &= hull.reshape(grid_shape).cpu().numpy()
    if not occ_np.any():
        raise InputError(EMPTY_FIELD[source])
    return occ_np, dens, level


@torch.no_grad()
def initial_sdf(density_fn, grid_verts: Tensor, grid_shape: tuple[int, int, int], bbox: Tensor, iso_density: float,
                carve_fn=None, min_fraction: float = 0.05, source: str = "images", hull_fallback: bool = True,
                carve_after_cleaning: bool = False, start: str = "occupancy", scene_diagonal: float | None = None
                ) -> Tensor:
    """SDF at the tet-grid vertices from the coarse density (and the visual hull, when given).

    Args:
        density_fn: ``x [N, 3] -> [N]`` coarse density.
        grid_verts: ``[V, 3]`` tet-grid vertices, a regular ``grid_shape`` lattice in ``[x, y, z]`` order.
        grid_shape: Lattice size per axis.
        bbox: ``[2, 3]`` the lattice's box.
        iso_density: Surface density times the scene box's diagonal. Without a visual hull it adapts to the field
            when too little is above it (:func:`iso_level`); with one, the hull is the fallback.
        carve_fn: Optional ``x [N, 3] -> bool [N]`` that is False where images see background.
        min_fraction: See :class:`~.mesh.MeshStageConfig`.
        source: What the coarse stage was fitted to, ``"images"`` or ``"text"``: the error for an empty field
            speaks of that (:data:`EMPTY_FIELD`).
        hull_fallback: With ``carve_fn``, start from the hull itself when no density inside it is above
            ``iso_density`` (many views: a tight hull); else the level adapts to the carved field as without one
            (one view: its hull is an open cone).
        carve_after_cleaning: With ``carve_fn``, carve again after the cleaning, which closes gaps narrower than
            a few cells: a hole the images see through (a torus seen from above, at the draft's 32 cells) stays
            open. Image to 3D does; ``reconstruct`` carves before the cleaning only, as measured for it.
        start: ``"occupancy"``: the signed distance to the cleaned occupancy (a surface on the lattice's
            half-cells); ``"density"``: ``cell * clamp((level - density) / level, -1, 1)``, whose zero crossing lies
            where the field crosses the level between lattice points (threestudio's continuous start), except where
            the cleaning changed the occupancy (filled hollows, dropped specks, carving): there one cell in or out.
        scene_diagonal: The scene box's diagonal that ``iso_density`` is relative to (None: ``bbox``'s).
    """
    diag = scene_diagonal or float((bbox[1] - bbox[0]).norm())
    occ_np, dens, level = _start_occupancy(density_fn, grid_verts, grid_shape, iso_density / diag, carve_fn,
                                           min_fraction, source, hull_fallback, carve_after_cleaning)
    cx, cy, cz = (float(c) for c in (bbox[1] - bbox[0]) / (torch.tensor(grid_shape) - 1))
    cell = (cx, cy, cz)
    if start == "density":
        occ = torch.from_numpy(occ_np.reshape(-1)).to(dens.device)
        size = min(cell)
        sdf = size * ((level - dens) / level).clamp(-1.0, 1.0)
        sdf = torch.where(occ != (dens > level), torch.where(occ, -size, size), sdf)
        return sdf.float().to(grid_verts.device)
    return torch.from_numpy(occupancy_to_sdf(occ_np, cell)).reshape(-1).to(grid_verts.device)


@torch.no_grad()
def object_box(density_fn, bbox: Tensor, resolution: int, iso_density: float, margin: float, carve_fn=None,
               min_fraction: float = 0.05, source: str = "images", hull_fallback: bool = True,
               carve_after_cleaning: bool = False) -> Tensor:
    """The box ``[2, 3]`` around the coarse object (the cleaned occupancy of :func:`initial_sdf` on a
    ``resolution``-cell lattice over the scene box ``bbox``), grown by ``margin`` times its size on each side and
    by at least two lattice cells, inside the scene box: where a tight tet grid puts all its cells."""
    from ..geometry.dmtet import make_tet_grid

    verts, _ = make_tet_grid(resolution, bbox)
    r = resolution + 1
    diag = float((bbox[1] - bbox[0]).norm())
    occ_np, _, _ = _start_occupancy(density_fn, verts.to(bbox.device), (r, r, r), iso_density / diag, carve_fn,
                                    min_fraction, source, hull_fallback, carve_after_cleaning)
    idx = np.argwhere(occ_np)
    cell = (bbox[1] - bbox[0]) / resolution
    lo = bbox[0] + torch.from_numpy(idx.min(0)).to(bbox) * cell
    hi = bbox[0] + torch.from_numpy(idx.max(0)).to(bbox) * cell
    grow = torch.maximum(margin * (hi - lo), 2 * cell)
    return torch.stack([torch.maximum(lo - grow, bbox[0]), torch.minimum(hi + grow, bbox[1])])


def init_geometry(cfg, bbox: Tensor, device: torch.device, density_fn, carve_fn=None,
                  source: str = "images", hull_fallback: bool = True, carve_after_cleaning: bool = False
                  ) -> DMTetGeometry:
    """The mesh stage's tetrahedral geometry (``cfg``: a :class:`~.mesh.MeshStageConfig`) over the scene box
    ``bbox`` or, with ``cfg.box == "object"``, over the coarse object's box (:func:`object_box`), its SDF
    initialised from ``density_fn`` (and ``carve_fn``) by :func:`initial_sdf` as ``cfg.start`` says."""
    bbox = bbox.to(device)
    options = (cfg.min_component_fraction, source, hull_fallback, carve_after_cleaning)
    grid_box = bbox
    if cfg.box == "object":
        grid_box = object_box(density_fn, bbox, cfg.dmtet.resolution, cfg.iso_density, cfg.box_margin, carve_fn,
                              *options)
    geo = DMTetGeometry(cfg.dmtet, grid_box).to(device)
    r = cfg.dmtet.resolution + 1
    geo.init_from_sdf(initial_sdf(density_fn, geo.grid_verts, (r, r, r), grid_box, cfg.iso_density, carve_fn,
                                  *options, start=cfg.start, scene_diagonal=float((bbox[1] - bbox[0]).norm())))
    return geo
