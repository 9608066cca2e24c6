"""Differentiable triangle rasterisation: rasterise and interpolate (:mod:`.antialias` and :mod:`.texture` finish the
image), and the backend choice of all four ops.

The public functions follow nvdiffrast's conventions, so that nvdiffrast (CUDA context only, never
OpenGL) is a drop-in fast path on CUDA tensors; on the CPU the visibility pass (which triangle is
nearest at each pixel) runs in C++ (``kernels/csrc/raster_cpu.cpp``, the same arithmetic, the same
result) and the differentiable part stays in PyTorch; everywhere else a pure-PyTorch reference runs
(CPU, CUDA, Apple MPS).

Conventions:
    * ``rast [B, H, W, 4]`` holds ``(u, v, z_ndc, tri_id + 1)``; ``tri_id + 1 == 0`` is background.
      An attribute interpolates as ``u * a0 + v * a1 + (1 - u - v) * a2`` with ``a_k`` the attribute
      of vertex ``tri[f, k]``. ``u, v`` are perspective-correct and differentiable w.r.t. ``pos_clip``.
    * Pixel ``(row i, col j)`` has its centre at NDC ``x = (2 j + 1) / W - 1``, ``y = (2 i + 1) / H - 1``
      (row 0 is NDC ``y = -1``; the engine's cameras flip ``y`` so images are top-row-first).
    * Visibility: the smallest ``z_ndc`` wins, ties go to the lower triangle id. Triangles with a vertex
      at ``w <= 0`` are skipped, samples with ``z_ndc`` outside ``[-1, 1]`` are culled, no back-face culling.
    * Texture ``uv`` in ``[0, 1]``, ``(0, 0)`` = top-left corner of the image (glTF), bilinear, clamped.

The reference rasteriser is watertight: edge functions of an edge shared by two triangles are computed
bitwise identically (endpoints in a canonical order) and a sample exactly on an edge is owned as if it
were nudged by an infinitesimal ``(eps, eps^2)``, so every sample is covered by exactly one side.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .backends import force_reference, warn_fallback_once
from .cpu_build import cpu_ops, cpu_ops_for
from .cpu_build import reason as cpu_reason
from .errors import KernelInputError, KernelUnavailable

_KERNEL = "raster"
_MAX_KEY = torch.iinfo(torch.int64).max
_DEPTH_LEVELS = 2**31 - 1
_ID_BITS = 32
_nvdr = None  # the nvdiffrast.torch module once imported, False when it is not importable
_contexts: dict = {}


# --------------------------------------------------------------------------------------------- backend


def available() -> bool:
    """True when nvdiffrast (the CUDA fast path) can be imported."""
    global _nvdr
    if _nvdr is None:
        try:
            import nvdiffrast.torch as dr

            _nvdr = dr
        except Exception:  # any import failure means "not available"
            _nvdr = False
    return _nvdr is not False


def fast_path(*tensors: Tensor):
    """The nvdiffrast module when the raster ops should dispatch to it for these tensors (all CUDA, float32), else
    None: the one place that picks the backend of rasterise, interpolate, antialias and texture."""
    if force_reference() or not all(t.is_cuda for t in tensors):
        return None
    if not available():
        warn_fallback_once(_KERNEL, "nvdiffrast is not installed")
        return None
    return _nvdr if all(t.dtype == torch.float32 for t in tensors if t.is_floating_point()) else None


def _context(device: torch.device):
    key = str(device)
    if key not in _contexts:
        _contexts[key] = _nvdr.RasterizeCudaContext(device=device)
    return _contexts[key]


# --------------------------------------------------------------------------------------------- checks


def check_pos_tri(pos_clip: Tensor, tri: Tensor) -> Tensor:
    """Validate ``pos_clip [B, V, 4] | [V, 4]`` and ``tri [F, 3]``; returns ``pos_clip`` as ``[B, V, 4]``."""
    if not isinstance(pos_clip, Tensor) or not pos_clip.is_floating_point():
        raise KernelInputError("pos_clip must be a floating-point tensor of clip-space positions [B, V, 4] or [V, 4].")
    if pos_clip.dim() == 2:
        pos_clip = pos_clip[None]
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise KernelInputError(f"pos_clip must have shape [B, V, 4] or [V, 4], got {tuple(pos_clip.shape)}.")
    if not isinstance(tri, Tensor) or tri.dtype not in (torch.int32, torch.int64):
        raise KernelInputError("tri must be an int32 or int64 tensor of vertex indices [F, 3].")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise KernelInputError(f"tri must have shape [F, 3], got {tuple(tri.shape)}.")
    if tri.device != pos_clip.device:
        raise KernelInputError(f"tri is on {tri.device} but pos_clip is on {pos_clip.device}; put both on one device.")
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= pos_clip.shape[1]):
        raise KernelInputError(f"tri holds vertex indices outside [0, {pos_clip.shape[1] - 1}].")
    return pos_clip


def check_rast(rast: Tensor, name: str = "rast") -> None:
    if not isinstance(rast, Tensor) or rast.dim() != 4 or rast.shape[-1] != 4 or not rast.is_floating_point():
        raise KernelInputError(f"{name} must be the [B, H, W, 4] float output of rasterize().")


def pixel_xy(pos: Tensor, height: int, width: int) -> Tensor:
    """Pixel coordinates ``[..., 2]`` (pixel centres at integers) of clip positions ``[..., 4]``."""
    w = pos[..., 3]
    x = (pos[..., 0] / w + 1.0) * (0.5 * width) - 0.5
    y = (pos[..., 1] / w + 1.0) * (0.5 * height) - 0.5
    return torch.stack([x, y], dim=-1)


def cross2(a: Tensor, b: Tensor) -> Tensor:
    """2D cross product of ``[..., 2]`` vectors."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


# --------------------------------------------------------------------------------------------- rasterize


def rasterize(pos_clip: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """Rasterise triangles into a ``[B, H, W, 4]`` buffer of ``(u, v, z_ndc, tri_id + 1)``.

    Args:
        pos_clip: Clip-space vertex positions ``[B, V, 4]`` (or ``[V, 4]``, treated as ``B = 1``).
        tri: Triangle vertex indices ``[F, 3]`` (int32 or int64).
        resolution: Output size ``(H, W)``.

    Returns:
        ``rast [B, H, W, 4]``; ``u, v`` (and ``z``) are differentiable w.r.t. ``pos_clip``.
    """
    pos_clip = check_pos_tri(pos_clip, tri)
    if len(resolution) != 2 or int(resolution[0]) <= 0 or int(resolution[1]) <= 0:
        raise KernelInputError(f"resolution must be two positive integers (H, W), got {resolution!r}.")
    res = (int(resolution[0]), int(resolution[1]))
    if fast_path(pos_clip) is not None:
        rast, _ = _nvdr.rasterize(_context(pos_clip.device), pos_clip.contiguous(), tri.int().contiguous(), res)
        return rast
    if cpu_ops_for("raster (CPU)", pos_clip) is not None:
        return rasterize_cpu(pos_clip, tri, res)
    return rasterize_reference(pos_clip, tri, res)


def _triangle_setup(pos: Tensor, tri: Tensor, height: int, width: int):
    """Per-triangle setup (no grad) for the ``T = B * F`` triangles, kept only where they touch a pixel centre.

    Returns:
        active ``[T']`` flat triangle ids ``b * F + f``; params ``[22, T']`` (per edge ``Ax, Ay, dx, dy`` x3,
        edge sign x3, tie ownership x3, vertex ``z_ndc`` x3, ``1 / |2 area|``); bounding-box corner ``x0, y0``
        and size ``bw, bh`` ``[T']`` (int64).
    """
    w = pos[..., 3]  # [B, V]
    vx = (pos[..., 0] / w + 1.0) * (0.5 * width) - 0.5
    vy = (pos[..., 1] / w + 1.0) * (0.5 * height) - 0.5
    vz = pos[..., 2] / w
    idx = tri.long().t()  # [3, F]
    # Component-major corner values [3, T]: corner k of triangle b * F + f.
    cx, cy, cz, cw = (a[:, idx].permute(1, 0, 2).reshape(3, -1) for a in (vx, vy, vz, w))
    area2 = (cx[1] - cx[0]) * (cy[2] - cy[0]) - (cy[1] - cy[0]) * (cx[2] - cx[0])  # [T]
    valid = (cw > 0).all(0) & torch.isfinite(area2) & (area2 != 0) & ~((cz < -1).all(0) | (cz > 1).all(0))
    big = float(max(width, height) + 1)
    x0 = torch.ceil(cx.amin(0).nan_to_num(0.0).clamp(-1.0, big)).long().clamp_min(0)
    y0 = torch.ceil(cy.amin(0).nan_to_num(0.0).clamp(-1.0, big)).long().clamp_min(0)
    bw = (torch.floor(cx.amax(0).nan_to_num(0.0).clamp(-1.0, big)).long().clamp_max(width - 1) - x0 + 1)
    bh = (torch.floor(cy.amax(0).nan_to_num(0.0).clamp(-1.0, big)).long().clamp_max(height - 1) - y0 + 1)
    active = torch.nonzero(valid & (bw > 0) & (bh > 0)).squeeze(1)
    cx, cy, cz, area2 = cx[:, active], cy[:, active], cz[:, active], area2[active]
    orient = torch.sign(area2)
    rows: list[Tensor] = [torch.empty(0)] * 22
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        swap = (cx[j] < cx[i]) | ((cx[j] == cx[i]) & (cy[j] < cy[i]))  # canonical endpoint order
        ax, ay = torch.where(swap, cx[j], cx[i]), torch.where(swap, cy[j], cy[i])
        dx, dy = torch.where(swap, cx[i], cx[j]) - ax, torch.where(swap, cy[i], cy[j]) - ay
        s = torch.where(swap, -orient, orient)
        # Sign of the edge function at the sample nudged by (eps, eps^2): -dy, or dx when dy == 0.
        tie = torch.where(dy != 0, -dy, dx)
        rows[4 * k:4 * k + 4] = [ax, ay, dx, dy]
        rows[12 + k], rows[15 + k], rows[18 + k] = s, (s * tie > 0).to(cx.dtype), cz[k]
    rows[21] = 1.0 / area2.abs()
    return active, torch.stack(rows, 0), x0[active], y0[active], bw[active], bh[active]


def _chunk_keys(params: Tensor, tids: Tensor, x0: Tensor, y0: Tensor, bw: Tensor, start: Tensor, first: int,
                stop: int, num_faces: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Depth keys of the (triangle, pixel) candidates with global pair index in ``[first, stop)``.

    ``start [T']`` is the first pair index of each active triangle (sorted). Returns flat pixel indices
    ``[n]`` into ``[B * H * W]`` and int64 keys ``[n]`` (quantised depth << 32 | triangle id).
    """
    dev = params.device
    bounds = torch.searchsorted(start, torch.tensor([first, stop], device=dev), right=True).tolist()
    t0, t1 = bounds[0] - 1, bounds[1]
    st = start[t0:t1]
    en = torch.cat([start[t0 + 1:t1], start.new_tensor([stop])])
    counts = en.clamp_max(stop) - st.clamp_min(first)
    local = torch.repeat_interleave(torch.arange(t0, t1, device=dev), counts)  # [n] active-triangle index
    k = torch.arange(first, stop, device=dev) - start[local]
    w_box = bw[local]
    row_off = torch.div(k, w_box, rounding_mode="floor")
    col = x0[local] + (k - row_off * w_box)
    row = y0[local] + row_off
    prm = params[:, local]  # [22, n]
    px, py = col.to(prm.dtype), row.to(prm.dtype)
    inside = None
    depth = torch.zeros_like(px)
    for e in range(3):
        ef = prm[4 * e + 2] * (py - prm[4 * e + 1]) - prm[4 * e + 3] * (px - prm[4 * e])
        sef = prm[12 + e] * ef
        ins = (sef > 0) | ((ef == 0) & (prm[15 + e] > 0))
        inside = ins if inside is None else inside & ins
        depth = depth + sef * prm[18 + e]
    depth = depth * prm[21]
    inside &= (depth >= -1) & (depth <= 1)
    sel = torch.nonzero(inside).squeeze(1)
    tid = tids[local[sel]]
    bidx = torch.div(tid, num_faces, rounding_mode="floor")
    pix = (bidx * height + row[sel]) * width + col[sel]
    q = ((depth[sel] + 1) * (0.5 * _DEPTH_LEVELS)).long()
    return pix, (q << _ID_BITS) | (tid - bidx * num_faces)


def _visibility_keys(pos_clip: Tensor, tri: Tensor, height: int, width: int, max_pairs: int = 2**21,
                     ops=None) -> Tensor:
    """Per-pixel smallest depth key ``[B * H * W]`` (``_MAX_KEY`` where uncovered); ``ops``: the C++ kernels."""
    bsz, nfaces = pos_clip.shape[0], tri.shape[0]
    keys = torch.full((bsz * height * width,), _MAX_KEY, dtype=torch.long, device=pos_clip.device)
    if not nfaces:
        return keys
    with torch.no_grad():
        active, params, x0, y0, bw, bh = _triangle_setup(pos_clip.detach(), tri, height, width)
        if ops is not None:
            return ops.raster_keys(params, active, x0, y0, bw, bh, bsz, nfaces, height, width)
        count = bw * bh
        start = torch.cumsum(count, 0) - count
        total = int(count.sum()) if count.numel() else 0
        for first in range(0, total, max_pairs):
            pix, key = _chunk_keys(params, active, x0, y0, bw, start, first, min(first + max_pairs, total),
                                   nfaces, height, width)
            keys.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)
    return keys


def _rast_from_keys(pos_clip: Tensor, tri: Tensor, keys: Tensor, height: int, width: int) -> Tensor:
    """The differentiable ``rast`` buffer from the visibility keys: perspective-correct barycentrics and depth."""
    bsz, nverts, _ = pos_clip.shape
    rast = torch.zeros(bsz * height * width, 4, dtype=pos_clip.dtype, device=pos_clip.device)
    idx = torch.nonzero(keys != _MAX_KEY).squeeze(1)  # [N] covered pixels
    if idx.numel() == 0:
        return rast.view(bsz, height, width, 4)
    face = keys[idx] & ((1 << _ID_BITS) - 1)
    bidx = idx // (height * width)
    pix = idx % (height * width)
    ndc_x = (2 * (pix % width) + 1).to(pos_clip.dtype) / width - 1
    ndc_y = (2 * (pix // width) + 1).to(pos_clip.dtype) / height - 1
    verts = pos_clip.reshape(-1, 4)[bidx[:, None] * nverts + tri.long()[face]]  # [N, 3, 4], differentiable
    # Perspective-correct barycentrics: weights lam with sum(lam_k * (xy_k - ndc * w_k)) = 0, sum(lam) = 1.
    rel = verts[..., :2] - torch.stack([ndc_x, ndc_y], -1)[:, None] * verts[..., 3:4]  # [N, 3, 2]
    lam = torch.stack([cross2(rel[:, 1], rel[:, 2]), cross2(rel[:, 2], rel[:, 0]), cross2(rel[:, 0], rel[:, 1])], 1)
    lam = lam / lam.sum(1, keepdim=True)
    z = (lam * verts[..., 2]).sum(1) / (lam * verts[..., 3]).sum(1)
    vals = torch.stack([lam[:, 0], lam[:, 1], z, (face + 1).to(pos_clip.dtype)], 1)
    return rast.index_put((idx,), vals).view(bsz, height, width, 4)


def rasterize_reference(pos_clip: Tensor, tri: Tensor, resolution: tuple[int, int],
                        max_pairs: int = 2**21) -> Tensor:
    """Pure-PyTorch :func:`rasterize` (any device); ``max_pairs`` bounds the (triangle, pixel) pairs per chunk."""
    if pos_clip.dim() == 2:
        pos_clip = pos_clip[None]
    height, width = resolution
    keys = _visibility_keys(pos_clip, tri, height, width, max_pairs)
    return _rast_from_keys(pos_clip, tri, keys, height, width)


def rasterize_cpu(pos_clip: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """:func:`rasterize` with the C++ visibility pass (CPU tensors); the same keys, hence the same buffer."""
    if pos_clip.dim() == 2:
        pos_clip = pos_clip[None]
    ops = cpu_ops()
    if ops is None:
        raise KernelUnavailable(f"the C++ CPU kernels are not available: {cpu_reason()}")
    height, width = resolution
    keys = _visibility_keys(pos_clip, tri, height, width, ops=ops)
    return _rast_from_keys(pos_clip, tri, keys, height, width)


# --------------------------------------------------------------------------------------------- interpolate


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """Interpolate per-vertex attributes over the rasterised image.

    Args:
        attr: Vertex attributes ``[B, V, C]`` (or ``[V, C]`` / ``[1, V, C]``, shared by the batch).
        rast: Output of :func:`rasterize` ``[B, H, W, 4]``.
        tri: The triangles given to :func:`rasterize` ``[F, 3]``.

    Returns:
        ``[B, H, W, C]``, zero on background; differentiable w.r.t. ``attr`` and (through ``u, v``) ``pos_clip``.
    """
    check_rast(rast)
    if not isinstance(attr, Tensor) or not attr.is_floating_point() or attr.dim() not in (2, 3):
        raise KernelInputError("attr must be a floating-point tensor of vertex attributes [B, V, C] or [V, C].")
    attr = attr[None] if attr.dim() == 2 else attr
    if attr.shape[0] not in (1, rast.shape[0]):
        raise KernelInputError(f"attr has batch {attr.shape[0]} but rast has batch {rast.shape[0]}; use 1 or the same.")
    check_pos_tri(attr.new_zeros(1, attr.shape[1], 4), tri)
    if fast_path(attr, rast) is not None:
        return _nvdr.interpolate(attr.contiguous(), rast, tri.int().contiguous())[0]
    return interpolate_reference(attr, rast, tri)


def interpolate_reference(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """Pure-PyTorch :func:`interpolate`."""
    attr = attr[None] if attr.dim() == 2 else attr
    bsz, height, width, _ = rast.shape
    nverts, chans = attr.shape[1], attr.shape[2]
    flat = rast.reshape(-1, 4)
    face = torch.round(flat[:, 3]).long() - 1
    idx = torch.nonzero(face >= 0).squeeze(1)
    out = torch.zeros(bsz * height * width, chans, dtype=attr.dtype, device=attr.device)
    if idx.numel() == 0:
        return out.view(bsz, height, width, chans)
    bidx = idx // (height * width) if attr.shape[0] > 1 else torch.zeros_like(idx)
    a = attr.reshape(-1, chans)[bidx[:, None] * nverts + tri.long()[face[idx]]]  # [N, 3, C]
    u, v = flat[idx, 0:1].to(attr.dtype), flat[idx, 1:2].to(attr.dtype)
    vals = u * a[:, 0] + v * a[:, 1] + (1 - u - v) * a[:, 2]
    return out.index_put((idx,), vals).view(bsz, height, width, chans)
