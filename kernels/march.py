"""Ray marching through an occupancy grid, and front-to-back compositing of packed samples.

Conventions (every implementation agrees on them):

- Marching: ray ``i`` has samples ``k = 0 .. S-1`` at ``t = near_i + (k + u_ik) * step`` (``u`` the jitter, 0.5
  without it) and ``x = o_i + t d_i``; a sample is kept when ``t < far_i`` and, with an occupancy grid
  (``mask [r, r, r]`` over ``bbox [2, 3]``), when its cell is occupied: ``c = clamp(int((x - b0) / (b1 - b0) * r),
  0, r - 1)`` with ``(x - b0) / (b1 - b0)`` in ``[0, 1]``. Kept samples are *packed*: ray-major, a ray's samples
  consecutive and in increasing ``t``.
- Compositing: for packed optical depths ``tau`` (density times step), ``w_i = (1 - exp(-tau_i)) exp(-(acc_r +
  sum_{j < i, same ray} tau_j))`` where ``acc [R]`` is each ray's optical depth so far (the renderer marches in
  blocks and carries it); it also returns ``acc + sum tau`` per ray. Differentiable in ``tau`` and ``acc``.

Fast path: the C++ kernels of ``kernels/csrc/march_cpu.cpp`` (float32 rays; float32/float64 compositing) on the
CPU, multi-threaded over rays, deterministic. ``DREAMSMITH_KERNELS=reference`` (or no compiler) runs the PyTorch
references, which are what the renderer did before: dense ``[R, S]`` sample grids, padded cumulative sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cpu_build import cpu_ops_for

# ------------------------------------------------------------------------------------------------- marching


def march_samples_reference(o: Tensor, d: Tensor, near: Tensor, far: Tensor, u: Tensor | None, step: float,
                            n_samples: int, mask: Tensor | None, bbox: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-PyTorch :func:`march_samples` (any device): builds the dense ``[R, S]`` grid, then packs it."""
    k = torch.arange(n_samples, device=o.device, dtype=o.dtype)
    t = near[:, None] + (k + (0.5 if u is None else u)) * step  # [R, S]
    valid = t < far[:, None]
    x = o[:, None] + t[..., None] * d[:, None]
    if mask is not None:
        r = mask.shape[0]
        unit = (x - bbox[0].to(x)) / (bbox[1] - bbox[0]).to(x)
        inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
        ijk = (unit * r).long().clamp(0, r - 1)
        valid &= inside & mask.reshape(-1)[(ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]]
    ray, kk = valid.nonzero(as_tuple=True)
    return ray, kk, t[ray, kk], x[ray, kk]


def march_samples(o: Tensor, d: Tensor, near: Tensor, far: Tensor, u: Tensor | None, step: float, n_samples: int,
                  mask: Tensor | None, bbox: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The kept samples of rays ``o, d [R, 3]`` between ``near`` and ``far`` ``[R]`` (see the module docstring).

    Args:
        o, d: Ray origins and directions.
        near, far: Where each ray enters and leaves the box.
        u: ``[R, S]`` jitter in ``[0, 1)``, or None for the sample midpoints.
        step: Distance between samples.
        n_samples: ``S``, samples per ray at most.
        mask: ``[r, r, r]`` bool occupancy over ``bbox``, or None to keep every sample in ``[near, far)``.
        bbox: ``[2, 3]`` box of the occupancy grid.

    Returns:
        Packed ``ray [N]`` and ``k [N]`` (int64), ``t [N]`` and ``x [N, 3]`` (no gradient).
    """
    ops = cpu_ops_for("march", o, d, near, far, *(t for t in (u,) if t is not None), dtypes=(torch.float32,))
    if ops is None:
        return march_samples_reference(o, d, near, far, u, step, n_samples, mask, bbox)
    empty = o.new_empty(0)
    ray, k, t, x = ops.march_samples(o.detach(), d.detach(), near.detach(), far.detach(),
                                     empty if u is None else u, float(step), int(n_samples),
                                     torch.empty(0, dtype=torch.bool) if mask is None else mask.bool(), bbox.detach())
    return ray, k, t, x


# ------------------------------------------------------------------------------------------------- compositing


def composite_reference(tau: Tensor, ray: Tensor, acc: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch :func:`composite` (any device): pads the packed samples to ``[rays, max samples]``."""
    rows, inverse, counts = torch.unique_consecutive(ray, return_inverse=True, return_counts=True)
    if rows.numel() == 0:
        return tau.new_zeros(0), acc
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(ray.shape[0], device=ray.device) - first[inverse]
    pad = tau.new_zeros(rows.shape[0], int(counts.max()))
    pad = pad.index_put((inverse, col), tau)
    cum = pad.cumsum(dim=1)
    trans = torch.exp(-(acc[rows, None] + cum - pad))
    w = ((1.0 - torch.exp(-pad)) * trans)[inverse, col]
    return w, acc.index_add(0, rows, cum[:, -1])


class _CompositeCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tau: Tensor, ray: Tensor, acc: Tensor, ops) -> tuple[Tensor, Tensor]:
        w, acc_new = ops.composite_forward(tau, ray, acc)
        ctx.save_for_backward(tau, ray, w, acc)
        ctx.ops = ops
        return w, acc_new

    @staticmethod
    def backward(ctx, grad_w: Tensor | None, grad_acc: Tensor | None):
        tau, ray, w, acc = ctx.saved_tensors
        grad_w = torch.zeros_like(w) if grad_w is None else grad_w
        grad_acc = torch.zeros_like(acc) if grad_acc is None else grad_acc
        g_tau, g_acc = ctx.ops.composite_backward(grad_w, grad_acc, tau, ray, w, acc)
        return g_tau, None, g_acc, None


def composite(tau: Tensor, ray: Tensor, acc: Tensor) -> tuple[Tensor, Tensor]:
    """Compositing weights ``w [N]`` of packed samples and the rays' new optical depths ``[R]``.

    Args:
        tau: ``[N]`` optical depth of each packed sample (density times step).
        ray: ``[N]`` int64 ray of each sample, ray-major (non-decreasing).
        acc: ``[R]`` optical depth of each ray before these samples.
    """
    ops = cpu_ops_for("march", tau, acc)
    if ops is None or tau.dtype != acc.dtype:
        return composite_reference(tau, ray, acc)
    return _CompositeCPU.apply(tau, ray.contiguous(), acc, ops)


__all__ = ["composite", "composite_reference", "march_samples", "march_samples_reference"]
