"""Texture baking: xatlas UV unwrap, UV-space rasterisation of a colour field, seam padding.

UV convention (glTF, shared with :mod:`.export`): ``(0, 0)`` is the top-left corner of the image, ``v`` grows
downward, texel ``(row r, col c)`` has its centre at ``((c + 0.5) / W, (r + 0.5) / H)``. xatlas packs charts in
an atlas whose texel ``(x, y)`` has ``y`` growing with the row of its own chart image, and returns ``(x / width,
y / height)``; we take those as ``(u, v)`` unchanged, so the baked image, :func:`sample_texture` and any glTF viewer
all agree.

Baking rasterises the mesh in UV space with ``pos_clip = (2u - 1, 2v - 1, 0, 1)``: the rasteriser maps image row
``i`` to ``ndc_y = (2i + 1) / H - 1``, i.e. to ``v = (i + 0.5) / H``, so row 0 of the result is the top of the
texture. Every covered texel gets ``color_fn`` of the 3D surface point under its centre; uncovered texels within
``padding`` pixels of a chart copy their nearest covered texel (so bilinear filtering and mip-maps do not pull
background into seams), and the rest are set to the mean baked colour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from ...kernels.raster import interpolate, rasterize
from ..meshio import TexturedMesh, vertex_normals
from ..meshio.mesh import check_arrays
from ..runtime.errors import ConfigError, InputError, NumericalError

ColorFn = Callable[[Tensor], Tensor]
"""``color_fn(points [N, 3]) -> rgb [N, 3]`` in ``[0, 1]``, called without grad."""


@dataclass
class BakeConfig:
    """How a mesh is unwrapped and its colour field baked into a texture.

    Attributes:
        texture_size: Side of the square texture in pixels.
        padding: Pixels of seam padding (nearest-texel dilation) around each UV chart; None fills every
            uncovered texel with its nearest covered one.
        max_faces_for_unwrap: The most faces xatlas is given: a job's own surface over it is decimated to it, an
            input mesh over it (re-texture) is refused. In one piece xatlas took hours on ~1M faces; in pieces a
            410k-face mesh unwraps in 21 s, but a 1024 texture holds it badly (a baked field's 99th-percentile
            error 37 levels against 2 at 100k faces: docs/benchmarks.md).
        chart_padding: Gap left between charts by the xatlas packer, in atlas texels (the atlas is sized to
            about ``texture_size``), so that bilinear sampling of one chart never reaches another.
        rotate_charts: Let xatlas rotate charts for a tighter pack.
        brute_force_pack: Slower, tighter xatlas packing.
        chart_max_iterations: xatlas chart-growing iterations (more: fewer, better-shaped charts; slower).
        unwrap_piece_faces: A mesh of more than ``unwrap_split_faces`` faces is unwrapped in pieces of about this
            many faces (the cells of an n x n x n grid over its box, n rounded from the cube root of faces / this;
            faces go by their centre), all charts packed in one atlas: xatlas's chart search grows faster than the
            face count (a 102k-face mesh in one piece 15 s, in 26 pieces of 4000 4 s, in 94 of 1000 1.3 s, with
            fewer seams and more of the atlas covered: docs/benchmarks.md). A piece's border is a seam. 0: one piece.
        unwrap_split_faces: Meshes of at most this many faces are unwrapped whole: xatlas is quick on them, and in
            pieces a 20k-face mesh's texture held a smooth field worse (99th-percentile error 15 levels against 5).
        chunk: Points per ``color_fn`` call.
        faces: The face budget: the written mesh has at most this many triangles, decimated from the full surface
            (quadric error, :mod:`.decimate`) before it is unwrapped; 0 keeps the full surface.
        lods: Levels of detail written: LOD0 at the budget (or full), each next one a quarter of the faces of the
            one before, each with its own UVs and maps (GLB only).
        normal_map: Bake a tangent-space normal map from the full surface onto every level coarser than it.
    """

    texture_size: int = 1024
    padding: int | None = 8
    max_faces_for_unwrap: int = 200_000
    chart_padding: int = 4
    rotate_charts: bool = True
    brute_force_pack: bool = False
    chart_max_iterations: int = 1
    unwrap_piece_faces: int = 1000
    unwrap_split_faces: int = 25_000
    chunk: int = 65536
    faces: int = 0
    lods: int = 1
    normal_map: bool = True

    def __post_init__(self) -> None:
        from .decimate import check_budget

        check_budget(self.faces)
        if not 1 <= self.lods <= 4:
            raise ConfigError(f"bake.lods must be 1 to 4 levels (got {self.lods}).")


def _numpy(x, dtype) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype))


def _check_mesh(verts: np.ndarray, faces: np.ndarray) -> None:
    check_arrays(verts, faces, "there is nothing to texture")
    if not np.isfinite(verts).all():
        raise InputError("The mesh has NaN or infinite vertex positions; it cannot be unwrapped or baked.")


def unwrap(verts, faces, config: BakeConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compute a UV atlas with xatlas; vertices on chart seams are duplicated.

    Args:
        verts: ``[V, 3]`` positions (numpy or torch).
        faces: ``[F, 3]`` vertex indices.
        config: Unwrap options (``max_faces_for_unwrap``, ``chart_padding``, ``texture_size``...).

    Returns:
        ``new_verts [V', 3]`` float32, ``new_faces [F, 3]`` int64 (same face order), ``uvs [V', 2]`` float32 in
        ``[0, 1]`` (glTF convention), ``vmapping [V']`` int64: the input vertex each new vertex copies.

    Raises:
        InputError: Empty or malformed mesh, or more faces than ``config.max_faces_for_unwrap``.
    """
    import xatlas

    cfg = config or BakeConfig()
    v = _numpy(verts, np.float32)
    f = _numpy(faces, np.int64)
    _check_mesh(v, f)
    if len(f) > cfg.max_faces_for_unwrap:
        raise InputError(f"The mesh has {len(f):,} faces; UV unwrapping is limited to {cfg.max_faces_for_unwrap:,} "
                         "(a texture holds denser meshes badly). Decimate the mesh, lower the iso-surface resolution, "
                         "or raise BakeConfig.max_faces_for_unwrap.")

    pieces = _pieces(v, f, unwrap_piece_size(len(f), cfg))

    def run(resolution: int) -> xatlas.Atlas:
        atlas = xatlas.Atlas()
        for _, used, local in pieces:
            atlas.add_mesh(v[used], local)
        chart = xatlas.ChartOptions()
        chart.max_iterations = cfg.chart_max_iterations
        pack = xatlas.PackOptions()
        pack.resolution = resolution
        pack.padding = cfg.chart_padding
        pack.bilinear = True
        pack.rotate_charts = cfg.rotate_charts
        pack.bruteForce = cfg.brute_force_pack
        atlas.generate(chart, pack)
        return atlas

    atlas = run(cfg.texture_size)
    if atlas.atlas_count != 1:  # charts did not fit one page at that resolution: let xatlas size the page itself
        atlas = run(0)
    maps, all_uvs, new_faces, start = [], [], np.empty_like(f), 0
    for i, (ids, used, local) in enumerate(pieces):
        piece_map, piece_faces, piece_uvs = atlas.get_mesh(i)
        if len(piece_faces) != len(local):
            raise InputError(f"xatlas dropped faces ({len(piece_faces)} of {len(local)} kept); the mesh may be "
                             "degenerate.")
        new_faces[ids] = piece_faces.astype(np.int64) + start
        maps.append(used[piece_map.astype(np.int64)])
        all_uvs.append(piece_uvs)
        start += len(piece_map)
    vmapping = np.concatenate(maps)
    return v[vmapping], new_faces, np.clip(np.concatenate(all_uvs), 0.0, 1.0).astype(np.float32), vmapping


def unwrap_piece_size(n_faces: int, cfg: BakeConfig) -> int:
    """The size of the pieces a mesh of ``n_faces`` is unwrapped in (0: whole; ``BakeConfig.unwrap_piece_faces``)."""
    return cfg.unwrap_piece_faces if n_faces > cfg.unwrap_split_faces else 0


def _pieces(v: np.ndarray, f: np.ndarray, piece_faces: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The mesh cut into the cells of an n x n x n grid over its box (``BakeConfig.unwrap_piece_faces``): per
    piece, its face ids, its vertex ids and its faces in those."""
    n = max(1, round((len(f) / piece_faces) ** (1.0 / 3.0))) if piece_faces > 0 else 1
    if n == 1:
        return [(np.arange(len(f)), np.arange(len(v)), f.astype(np.uint32))]
    centres = v[f].mean(axis=1)
    lo, size = centres.min(axis=0), np.maximum(np.ptp(centres, axis=0), 1e-12)
    cell = np.clip(((centres - lo) / size * n).astype(np.int64), 0, n - 1)
    key = (cell[:, 0] * n + cell[:, 1]) * n + cell[:, 2]
    out = []
    for k in np.unique(key):
        ids = np.flatnonzero(key == k)
        used, local = np.unique(f[ids], return_inverse=True)
        out.append((ids, used, local.reshape(-1, 3).astype(np.uint32)))
    return out


def dilate(image: np.ndarray, mask: np.ndarray, pixels: int | None) -> np.ndarray:
    """Fill texels outside ``mask`` with their nearest texel inside it.

    Args:
        image: ``[H, W, C]`` image.
        mask: ``[H, W]`` bool, True where ``image`` holds baked values.
        pixels: Fill only texels within this Euclidean distance of ``mask``; None fills everything. Texels left
            unfilled get the mean of the masked texels.

    Returns:
        The padded ``[H, W, C]`` image (a copy).
    """
    out = image.copy()
    if mask.all() or not mask.any():
        return out
    dist, (rows, cols) = distance_transform_edt(~mask, return_indices=True)
    fill = ~mask if pixels is None else (~mask) & (dist <= pixels)
    out[fill] = image[rows[fill], cols[fill]]
    rest = ~mask & ~fill
    if rest.any():
        out[rest] = image[mask].mean(axis=0).astype(image.dtype)
    return out


def bake_texture(verts, faces, uvs, color_fn: ColorFn, size: int | tuple[int, int], padding: int | None = 8, *,
                 chunk: int = 65536, device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bake ``color_fn`` over the mesh surface into a texture laid out by ``uvs``.

    Args:
        verts: ``[V, 3]`` positions (numpy or torch).
        faces: ``[F, 3]`` indices.
        uvs: ``[V, 2]`` per-vertex UVs in the glTF convention (e.g. from :func:`unwrap`).
        color_fn: ``points [N, 3] -> rgb [N, 3]`` in ``[0, 1]``; called in chunks under ``torch.no_grad()``.
        size: Texture side, or ``(H, W)``.
        padding: Seam padding in pixels (see :func:`dilate`); None fills every texel.
        chunk: Points per ``color_fn`` call.
        device: Where to rasterise and query ``color_fn``; default: ``verts``'s device for a tensor, else CPU.

    Returns:
        ``texture [H, W, 3]`` uint8 (row 0 = top, i.e. ``v = 0``) and ``mask [H, W]`` bool: texels whose centre
        lies inside a UV triangle (before padding).

    Raises:
        InputError: Malformed mesh or UVs, or UVs that cover no texel centre.
        NumericalError: ``color_fn`` returned NaN or infinite values.
    """
    if device is None:
        device = verts.device if isinstance(verts, Tensor) else "cpu"
    dims = np.atleast_1d(np.asarray(size, dtype=np.int64))  # a side, or (H, W)
    h, w = int(dims[0]), int(dims[-1])
    v_np, f_np, uv_np = _numpy(verts, np.float32), _numpy(faces, np.int64), _numpy(uvs, np.float32)
    _check_mesh(v_np, f_np)
    if uv_np.shape != (len(v_np), 2) or not np.isfinite(uv_np).all():
        raise InputError(f"UVs must be finite per-vertex [V, 2] = [{len(v_np)}, 2]; got {uv_np.shape}.")
    v = torch.from_numpy(v_np).to(device)
    tri = torch.from_numpy(f_np.astype(np.int32)).to(device)
    uv = torch.from_numpy(uv_np).to(device)
    pos_clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=-1)  # [V, 4]
    with torch.no_grad():
        rast = rasterize(pos_clip[None], tri, (h, w))  # [1, H, W, 4]
        covered = rast[0, ..., 3] > 0  # [H, W]
        if not bool(covered.any()):
            raise InputError("The mesh's UVs cover no texel centre; check the UVs or raise the texture size.")
        points = interpolate(v, rast, tri)[0][covered]  # [N, 3]
        colors = torch.empty(len(points), 3, dtype=torch.float32, device=device)
        for s in range(0, len(points), chunk):
            out = color_fn(points[s:s + chunk])
            if out.shape != (min(chunk, len(points) - s), 3):
                raise ValueError(f"color_fn must return [N, 3]; got {tuple(out.shape)}.")
            colors[s:s + chunk] = out.float()
        if not bool(torch.isfinite(colors).all()):
            raise NumericalError("The colour field returned NaN or inf while baking; the optimisation diverged "
                                 "(try a lower learning rate).")
        image = torch.zeros(h, w, 3, dtype=torch.float32, device=device)
        image[covered] = colors.clamp(0.0, 1.0)
    mask = covered.cpu().numpy()
    padded = dilate(image.cpu().numpy(), mask, padding)
    return np.round(padded * 255.0).astype(np.uint8), mask


def sample_texture(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """Bilinearly sample a texture at UVs, like a glTF viewer (repeat wrap, texel centres at ``(c + 0.5) / W``).

    Args:
        texture: ``[H, W, C]`` image, uint8 (scaled to ``[0, 1]``) or float.
        uvs: ``[N, 2]`` UVs in the glTF convention.

    Returns:
        ``[N, C]`` float32 samples.
    """
    tex = texture.astype(np.float32) / 255.0 if texture.dtype == np.uint8 else texture.astype(np.float32)
    h, w = tex.shape[:2]
    x = np.asarray(uvs[:, 0], dtype=np.float64) * w - 0.5
    y = np.asarray(uvs[:, 1], dtype=np.float64) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    c0, c1, r0, r1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    top = tex[r0, c0] * (1 - fx) + tex[r0, c1] * fx
    bottom = tex[r1, c0] * (1 - fx) + tex[r1, c1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def bake_mesh(verts, faces, color_fn: ColorFn, config: BakeConfig | None = None, name: str = "dreamsmith",
              device: torch.device | str | None = None) -> TexturedMesh:
    """Unwrap a mesh, bake ``color_fn`` into its texture and return an exportable :class:`TexturedMesh`.

    Args:
        verts: ``[V, 3]`` positions in the engine's Z-up frame.
        faces: ``[F, 3]`` indices.
        color_fn: ``points [N, 3] -> rgb [N, 3]`` in ``[0, 1]``.
        config: Unwrap and bake options.
        name: Object name for the export.
        device: Where ``color_fn`` is queried (see :func:`bake_texture`).
    """
    cfg = config or BakeConfig()
    if device is None and isinstance(verts, Tensor):
        device = verts.device
    v, f, uv, vmap = unwrap(verts, faces, cfg)
    texture, _ = bake_texture(v, f, uv, color_fn, cfg.texture_size, cfg.padding, chunk=cfg.chunk, device=device)
    # Normals from the welded input mesh, so seam duplicates share them.
    normals = vertex_normals(_numpy(verts, np.float32), _numpy(faces, np.int64))[vmap]
    return TexturedMesh(verts=v, faces=f, uvs=uv, normals=normals, texture=texture, name=name)
