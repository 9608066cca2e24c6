"""Multiresolution hash-grid encoding (instant-ngp style), 3-D input, trilinear interpolation.

Convention (the reference and every backend must agree on it):

- Level ``l`` has ``R_l`` cells per axis over the unit cube, so ``R_l + 1`` grid vertices per axis.
  A point ``x`` in ``[0, 1]^3`` is scaled to ``s = x * R_l``; its cell is ``c = clamp(floor(s), 0, R_l - 1)``
  (so ``x = 1`` lies in the last cell with fraction 1) and ``t = s - c`` are its trilinear fractions.
- Vertex ``(i, j, k)`` of level ``l`` lives in row ``index`` of ``table[l]`` (``T = 2**log2_table`` rows):
  the dense index ``i + j (R_l + 1) + k (R_l + 1)^2`` when ``(R_l + 1)^3 <= T``, otherwise the spatial hash
  ``(i * 1) ^ (j * 2654435761) ^ (k * 805459861)`` computed in uint32 arithmetic, modulo ``T``.
- The output is ``[N, L * F]``: level-major, so columns ``l * F .. l * F + F - 1`` belong to level ``l``.

Inputs outside ``[0, 1]`` are clamped into it (callers mask what lies outside their box).

Implementations:

- :func:`hash_encode_reference`: plain PyTorch, differentiated by autograd with respect to both the table and
  ``x`` (double backward too). Memory-hungry; used when ``x`` requires grad (analytic normals) and by tests.
- :class:`_HashEncodeFunction`: the same forward, chunked over points, with a hand-written backward for the
  table (an ``index_add_`` scatter) that recomputes indices instead of storing them. It returns no gradient
  for ``x``. This is what :func:`hash_encode` runs when ``x`` does not require grad.
- :class:`_HashEncodeCPU`: the C++ kernel (``kernels/csrc/hashgrid_cpu.cpp``, :mod:`.cpu_build`): forward and
  table gradient fused per point and level, multi-threaded (the backward one level per thread, so it is
  deterministic). The default on CPU for float32/float64 when it can be built and ``x`` does not require grad.
- tiny-cuda-nn: probed lazily by :func:`available`. Its encoding owns a differently laid-out parameter
  vector and uses another vertex convention (half-cell offset, float per-level scales), so it cannot read
  the ``[L, T, F]`` table; :func:`tcnn_encoding` builds one for callers that choose it as a whole module.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .backends import force_reference, warn_fallback_once
from .cpu_build import cpu_ops_for
from .errors import KernelInputError, KernelUnavailable

# Spatial-hash primes 1, 2654435761, 805459861 (instant-ngp), 2654435761 as the int32 with the same low 32 bits.
_PRIMES_I32 = (1, 2654435761 - 2**32, 805459861)
# Points x levels handled per chunk, bounding the [8, L, N] intermediates (~chunk * 8 * (4 + 8 + 4 + 4 F) bytes).
# Small chunks stay in cache on CPU (2**18..2**19 measured best); GPUs want fewer, larger launches.
_CHUNK_POINT_LEVELS = 2**19
_CHUNK_POINT_LEVELS_GPU = 2**23


def _chunk_points(n_levels: int, device: torch.device) -> int:
    """Points per chunk for ``n_levels`` levels on ``device``."""
    budget = _CHUNK_POINT_LEVELS if device.type == "cpu" else _CHUNK_POINT_LEVELS_GPU
    return max(1, budget // n_levels)


def _check_inputs(x: Tensor, table: Tensor, resolutions: Tensor, log2_table: int) -> list[int]:
    """Raise :class:`~.errors.KernelInputError` for shapes or types the encoding cannot take; the resolutions."""
    if x.dim() != 2 or x.shape[1] != 3:
        raise KernelInputError(f"hash_encode expects points of shape [N, 3], got {list(x.shape)}.")
    if table.dim() != 3:
        raise KernelInputError(f"hash_encode expects a table of shape [L, T, F], got {list(table.shape)}.")
    n_levels, t_size, _ = table.shape
    if not 0 < log2_table <= 30 or t_size != 2**log2_table:
        raise KernelInputError(f"The table has {t_size} rows per level but log2_table={log2_table}; they must agree "
                         "(T = 2**log2_table, log2_table in 1..30).")
    if resolutions.dim() != 1 or resolutions.shape[0] != n_levels:
        raise KernelInputError(f"resolutions must have shape [{n_levels}] (one per table level), got "
                         f"{list(resolutions.shape)}.")
    if resolutions.dtype.is_floating_point or resolutions.dtype == torch.bool:
        raise KernelInputError("resolutions must be an integer tensor (cells per axis of each level).")
    if not table.dtype.is_floating_point or not x.dtype.is_floating_point:
        raise KernelInputError("hash_encode expects floating-point points and table.")
    if x.device != table.device:
        raise KernelInputError(f"Points are on {x.device} but the table is on {table.device}; move them to one device.")
    res = [int(r) for r in resolutions.tolist()]  # keep resolutions on the CPU: this is then free
    if min(res) < 1 or max(res) > 2**20:
        raise KernelInputError(f"Each level's resolution must be in 1..2**20 cells per axis, got {res}.")
    return res


class _Levels(NamedTuple):
    """Per-level constants of one call (tensors on the points' device, layout facts as Python values)."""

    res_f: Tensor  # [L] float cells per axis
    mult: Tensor  # [L, 3] int32 per-axis multipliers: dense strides or hash primes
    dense: Tensor  # [L] bool, True where the level is indexed densely
    n_dense: int  # number of dense levels
    dense_prefix: bool  # the dense levels are the first n_dense (the usual coarse-to-fine order)


def _levels(resolutions: list[int], log2_table: int, device: torch.device) -> _Levels:
    """Constants for levels with ``resolutions`` cells per axis (computed on the host: no device syncs)."""
    dense = [(r + 1) ** 3 <= 2**log2_table for r in resolutions]
    mult = [[1, r + 1, (r + 1) ** 2] if d else list(_PRIMES_I32) for r, d in zip(resolutions, dense, strict=True)]
    n_dense = sum(dense)
    return _Levels(torch.tensor(resolutions, dtype=torch.float32).to(device),
                   torch.tensor(mult, dtype=torch.int32).to(device), torch.tensor(dense).to(device),
                   n_dense, all(dense[:n_dense]))


def _corners(x: Tensor, lv: _Levels, log2_table: int) -> tuple[Tensor, Tensor]:
    """Rows and trilinear weights of the 8 cell corners of each point at each level.

    The layout is corner-major, then level, then point, so every elementwise op runs over contiguous memory
    (broadcasting over small trailing dims is several times slower on CPU) and level slices are blocks.

    Args:
        x: ``[N, 3]`` points in ``[0, 1]`` (clamped here).
        lv: Per-level constants from :func:`_levels`.
        log2_table: ``T = 2**log2_table`` rows per level.

    Returns:
        rows ``[8, L, N]`` int32 row within each level's table, weights ``[8, L, N]`` (differentiable in ``x``).
        Corner ``c`` has offsets ``(c >> 2 & 1, c >> 1 & 1, c & 1)`` along (x, y, z).
    """
    n, n_levels = x.shape[0], lv.res_f.shape[0]
    res = lv.res_f.to(torch.promote_types(x.dtype, torch.float32))[:, None]  # [L, 1]; half cannot resolve fine levels
    scaled = x.clamp(0.0, 1.0).t()[:, None, :] * res  # [3, L, N]
    cell = torch.minimum(scaled.detach().floor(), res - 1)  # [3, L, N]
    m = lv.mult.t()[:, :, None]  # [3, L, 1]
    # [3, 2, L, N]: lower / upper corner term per axis (written in place: torch.stack would copy them again).
    terms = torch.empty(3, 2, n_levels, n, dtype=torch.int32, device=x.device)
    torch.mul(cell.to(torch.int32), m, out=terms[:, 0])  # int32 products wrap like uint32
    torch.add(terms[:, 0], m, out=terms[:, 1])
    mask = 2**log2_table - 1

    def dense_rows(t: Tensor, out: Tensor | None = None) -> Tensor:
        return torch.add(t[0][:, None, None] + t[1][None, :, None], t[2][None, None, :], out=out)

    def hashed_rows(t: Tensor, out: Tensor | None = None) -> Tensor:
        t = t & mask  # masking the terms masks their xor
        return torch.bitwise_xor(t[0][:, None, None] ^ t[1][None, :, None], t[2][None, None, :], out=out)

    n_dense = lv.n_dense
    if n_dense == n_levels:
        rows = dense_rows(terms)
    elif n_dense == 0:
        rows = hashed_rows(terms)
    elif lv.dense_prefix:  # the usual case: coarse levels dense, fine levels hashed
        rows = torch.empty(2, 2, 2, n_levels, n, dtype=torch.int32, device=x.device)
        dense_rows(terms[:, :, :n_dense], out=rows[:, :, :, :n_dense])
        hashed_rows(terms[:, :, n_dense:], out=rows[:, :, :, n_dense:])
    else:
        rows = torch.where(lv.dense[:, None], dense_rows(terms), hashed_rows(terms))
    # [3, 2, L, N]: lower / upper corner weight per axis, in place unless autograd must see it.
    if scaled.requires_grad:
        frac = scaled - cell
        w01 = torch.stack([1.0 - frac, frac], dim=1)
    else:
        w01 = torch.empty(3, 2, n_levels, n, dtype=scaled.dtype, device=x.device)
        torch.sub(scaled, cell, out=w01[:, 1])
        torch.neg(w01[:, 1], out=w01[:, 0]).add_(1.0)
    wx, wy, wz = w01
    weights = (wx[:, None] * wy[None, :])[:, :, None] * wz[None, None, :]  # [2, 2, 2, L, N]
    return rows.reshape(8, n_levels, n), weights.reshape(8, n_levels, n)


def _global_rows(rows: Tensor, log2_table: int, dtype: torch.dtype = torch.int64) -> Tensor:
    """``[8, L, N]`` rows of the flat ``[L * T, F]`` table view (``dtype`` int32 needs ``L * T < 2**31``)."""
    n_levels = rows.shape[1]
    offsets = torch.arange(n_levels, device=rows.device, dtype=dtype)[:, None] << log2_table  # [L, 1]
    return rows + offsets  # int32 + int64 promotes in the same pass


def _gather(table: Tensor, index: Tensor) -> Tensor:
    """Rows ``table.reshape(-1, F)[index]`` as ``[*index.shape, F]`` (no autograd).

    When a row is 8 bytes (two float32 features) the table is gathered as one int64 per row, about twice
    as fast on CPU as gathering 2-wide rows.
    """
    n_feat = table.shape[-1]
    if n_feat * table.element_size() == 8 and table.is_contiguous() and table.device.type in ("cpu", "cuda"):
        packed = table.view(torch.int64).reshape(-1)
        return packed.index_select(0, index.reshape(-1)).view(table.dtype).reshape(*index.shape, n_feat)
    return table.reshape(-1, n_feat).index_select(0, index.reshape(-1)).reshape(*index.shape, n_feat)


def _scatter_add(grad_flat: Tensor, index: Tensor, weights: Tensor, grad: Tensor) -> None:
    """``grad_flat[index[c, l, n]] += weights[c, l, n] * grad[l, n]`` for all corners, levels and points.

    Args:
        grad_flat: ``[L * T, F]`` contiguous accumulator.
        index: ``[8, L, N]`` int64 rows.
        weights: ``[8, L, N]``.
        grad: ``[L, N, F]`` contiguous upstream gradient.
    """
    n_feat = grad.shape[-1]
    if n_feat == 2 and grad_flat.device.type == "cpu" and grad_flat.dtype in (torch.float32, torch.float64):
        # Two features as one complex number: one index_add_ pass instead of two (about 2x faster on CPU).
        src = weights * torch.view_as_complex(grad)  # [8, L, N] complex
        torch.view_as_complex(grad_flat).index_add_(0, index.reshape(-1), src.reshape(-1))
    else:
        grad_flat.index_add_(0, index.reshape(-1), (weights[..., None] * grad).reshape(-1, n_feat))


def hash_encode_reference(x: Tensor, table: Tensor, resolutions: Tensor, log2_table: int) -> Tensor:
    """Pure-PyTorch hash encoding, differentiable by autograd in ``table`` and ``x`` (twice, too).

    Args:
        x: ``[N, 3]`` points in ``[0, 1]``.
        table: ``[L, T, F]`` feature table.
        resolutions: ``[L]`` integer cells per axis of each level.
        log2_table: ``T = 2**log2_table``.

    Returns:
        ``[N, L * F]`` features.
    """
    lv = _levels(_check_inputs(x, table, resolutions, log2_table), log2_table, x.device)
    n_levels, _, n_feat = table.shape
    rows, weights = _corners(x, lv, log2_table)
    feats = table.reshape(-1, n_feat)[_global_rows(rows, log2_table)]  # [8, L, N, F]
    out = (weights.to(table.dtype)[..., None] * feats).sum(dim=0)  # [L, N, F]
    return out.transpose(0, 1).reshape(x.shape[0], n_levels * n_feat)


class _HashEncodeFunction(torch.autograd.Function):
    """Chunked forward; hand-written backward for the table only (indices recomputed, not stored)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, lv: _Levels, log2_table: int) -> Tensor:
        n_levels, t_size, n_feat = table.shape
        table_c = table.contiguous()
        index_dtype = torch.int32 if n_levels * t_size < 2**31 else torch.int64
        out = torch.empty(x.shape[0], n_levels, n_feat, device=x.device, dtype=table.dtype)
        chunk = _chunk_points(n_levels, x.device)
        for s in range(0, x.shape[0], chunk):
            rows, w = _corners(x[s:s + chunk], lv, log2_table)
            feats = _gather(table_c, _global_rows(rows, log2_table, index_dtype))  # [8, L, n, F]
            # einsum runs as a batched matmul: several times faster than a broadcast multiply and sum.
            # (an output in [n, L, F] order makes einsum copy its inputs: write [L, n, F], then transpose).
            out[s:s + chunk] = torch.einsum("cln,clnf->lnf", w.to(table.dtype), feats).transpose(0, 1)
        ctx.save_for_backward(x)
        ctx.levels = lv
        ctx.table_shape = table.shape
        ctx.log2_table = log2_table
        return out.reshape(x.shape[0], n_levels * n_feat)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        grad_table = None
        if ctx.needs_input_grad[1]:
            n_levels, t_size, n_feat = ctx.table_shape
            g = grad_out.reshape(x.shape[0], n_levels, n_feat)
            grad_flat = torch.zeros(n_levels * t_size, n_feat, device=grad_out.device, dtype=grad_out.dtype)
            chunk = _chunk_points(n_levels, x.device)
            for s in range(0, x.shape[0], chunk):
                rows, w = _corners(x[s:s + chunk], ctx.levels, ctx.log2_table)
                # int64 indices: index_add_ with int32 indices is slower on CPU.
                index = _global_rows(rows, ctx.log2_table)
                _scatter_add(grad_flat, index, w.to(g.dtype), g[s:s + chunk].transpose(0, 1).contiguous())
            grad_table = grad_flat.reshape(n_levels, t_size, n_feat)
        return None, grad_table, None, None


class _HashEncodeCPU(torch.autograd.Function):
    """The C++ CPU kernel: fused forward, fused table gradient (no gradient for ``x``)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, res: list[int], log2_table: int, ops) -> Tensor:
        ctx.save_for_backward(x)
        ctx.res, ctx.log2_table, ctx.ops, ctx.table_shape = res, log2_table, ops, list(table.shape)
        return ops.hash_forward(x, table, res, log2_table)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = ctx.ops.hash_backward_table(x, grad_out, ctx.table_shape, ctx.res, ctx.log2_table)
        return None, grad_table, None, None, None


def hash_encode_chunked(x: Tensor, table: Tensor, resolutions: Tensor, log2_table: int) -> Tensor:
    """The chunked PyTorch path (hand-written table gradient, none for ``x``); any device. For benchmarks."""
    res = _check_inputs(x, table, resolutions, log2_table)
    return _HashEncodeFunction.apply(x.detach(), table, _levels(res, log2_table, x.device), log2_table)


def hash_encode(x: Tensor, table: Tensor, resolutions: Tensor, log2_table: int) -> Tensor:
    """Encode 3-D points with a multiresolution hash grid (see the module docstring for the convention).

    Gradients reach ``table``. When ``x`` requires grad, the autograd reference runs instead of the fast
    path so that gradients (and second derivatives) reach ``x`` too; it uses several times more memory.
    ``DREAMSMITH_KERNELS=reference`` runs the autograd reference always. Otherwise a float32/float64 CPU call
    (points and table of one dtype) runs the C++ kernel when it could be built, any other call the chunked
    PyTorch path.

    Args:
        x: ``[N, 3]`` points in ``[0, 1]`` (values outside are clamped).
        table: ``[L, T, F]`` float feature table (``T = 2**log2_table``).
        resolutions: ``[L]`` integer cells per axis of each level.
        log2_table: Base-2 logarithm of the rows per level.

    Returns:
        ``[N, L * F]`` features in ``table``'s dtype.

    Raises:
        KernelInputError: For mismatched shapes, dtypes or devices.
    """
    res = _check_inputs(x, table, resolutions, log2_table)
    if (x.requires_grad and torch.is_grad_enabled()) or force_reference():
        return hash_encode_reference(x, table, resolutions, log2_table)
    ops = cpu_ops_for("hash_encode", x, table) if x.dtype == table.dtype else None
    if ops is not None:
        return _HashEncodeCPU.apply(x.detach(), table, res, log2_table, ops)
    return _HashEncodeFunction.apply(x.detach(), table, _levels(res, log2_table, x.device), log2_table)


# ----------------------------------------------------------------------------------------------------------
# tiny-cuda-nn (optional, lazy)

_tcnn = None
_tcnn_error: str | None = None


def _load_tcnn():
    """Import tinycudann once; remember why it failed."""
    global _tcnn, _tcnn_error
    if _tcnn is None and _tcnn_error is None:
        try:
            import tinycudann  # optional CUDA extension, imported on first use only

            _tcnn = tinycudann
        except Exception as exc:  # any failure of an optional extension means "not available"
            _tcnn_error = f"tinycudann is not importable: {type(exc).__name__}: {exc}"
    return _tcnn


def available(device: torch.device | str | None = None) -> bool:
    """Whether the tiny-cuda-nn hash grid can run on ``device`` (default: the current CUDA device)."""
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type != "cuda" or not torch.cuda.is_available():
        return False
    return _load_tcnn() is not None


def unavailable_reason(device: torch.device | str | None = None) -> str:
    """A short human-readable reason why :func:`available` is False (empty when it is True)."""
    if available(device):
        return ""
    dev = torch.device(device) if device is not None else torch.device("cuda")
    if dev.type != "cuda" or not torch.cuda.is_available():
        return f"tiny-cuda-nn needs a CUDA device (got {dev})"
    return _tcnn_error or "tinycudann is not importable"


def tcnn_encoding(n_levels: int, n_features_per_level: int, log2_hashmap_size: int, base_resolution: int,
                  per_level_scale: float) -> torch.nn.Module:
    """A tiny-cuda-nn ``HashGrid`` encoding module (float32 output) with its own parameters.

    Its vertex convention and parameter layout differ from :func:`hash_encode`; the two are not
    interchangeable for one set of weights.

    Raises:
        KernelUnavailable: When tiny-cuda-nn or a CUDA device is not available.
    """
    if not available():
        raise KernelUnavailable(f"The tiny-cuda-nn hash grid was requested but cannot run: {unavailable_reason()}. "
                            "Install tinycudann for this CUDA setup or choose the 'reference' backend.")
    config = {"otype": "HashGrid", "n_levels": n_levels, "n_features_per_level": n_features_per_level,
              "log2_hashmap_size": log2_hashmap_size, "base_resolution": base_resolution,
              "per_level_scale": float(per_level_scale)}
    seed = int(torch.randint(0, 2**31 - 1, ()).item())  # follows torch's seeding, like the reference's init
    return _tcnn.Encoding(3, config, seed=seed, dtype=torch.float32)


def level_resolutions(n_levels: int, base_resolution: int, finest_resolution: int) -> Tensor:
    """``[L]`` int64 cells per axis: ``round(base * b**l)`` with ``b = (finest / base) ** (1 / (L - 1))``."""
    if n_levels == 1:
        return torch.tensor([base_resolution], dtype=torch.int64)
    b = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return torch.tensor([round(base_resolution * b**lvl) for lvl in range(n_levels)], dtype=torch.int64)


__all__ = ["available", "hash_encode", "hash_encode_chunked", "hash_encode_reference", "level_resolutions",
           "tcnn_encoding", "unavailable_reason"]


def hash_grid_backend(requested: str = "auto") -> str:
    """The hash grid's implementation for a field: ``"tcnn"`` (tiny-cuda-nn, CUDA) or ``"reference"`` (PyTorch,
    which itself runs the C++ CPU kernel when it is built, see :func:`.cpu_build.cpu_ops_for`). The one place
    that decides, with :func:`.backends.force_reference`.

    ``requested``: ``"auto"`` (tiny-cuda-nn when importable with a CUDA device, else the reference, warned once when a
    GPU is there), ``"reference"`` or ``"tcnn"`` (returned as asked; building it raises
    :class:`~.errors.KernelUnavailable` when it cannot run).
    """
    if requested == "reference" or (requested == "auto" and force_reference()):
        return "reference"
    if requested == "tcnn" or available():
        return "tcnn"
    import torch

    if torch.cuda.is_available():
        warn_fallback_once("hash_encode", unavailable_reason())
    return "reference"
