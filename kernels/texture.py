"""Bilinear texture lookup (nvdiffrast's ``texture``, linear filtering, clamped), with a pure-PyTorch reference.

Conventions are :mod:`.raster`'s; the backend is picked by :func:`.raster.fast_path`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .errors import KernelInputError
from .raster import fast_path


def texture(tex: Tensor, uv: Tensor) -> Tensor:
    """Bilinear texture lookup, clamped at the borders.

    Args:
        tex: Texture ``[B, Ht, Wt, C]`` (or ``[Ht, Wt, C]`` / batch 1, shared by the batch).
        uv: Coordinates ``[B, H, W, 2]`` in ``[0, 1]``; ``(0, 0)`` is the top-left corner of the image,
            ``u`` goes right, ``v`` down; texel ``(r, c)`` has its centre at ``((c + 0.5) / Wt, (r + 0.5) / Ht)``.

    Returns:
        ``[B, H, W, C]``, differentiable w.r.t. ``tex`` and ``uv``.
    """
    if not isinstance(tex, Tensor) or not tex.is_floating_point() or tex.dim() not in (3, 4):
        raise KernelInputError("tex must be a floating-point texture [B, Ht, Wt, C] or [Ht, Wt, C].")
    tex = tex[None] if tex.dim() == 3 else tex
    if not isinstance(uv, Tensor) or not uv.is_floating_point() or uv.dim() != 4 or uv.shape[-1] != 2:
        raise KernelInputError("uv must be a floating-point tensor [B, H, W, 2].")
    if tex.shape[0] not in (1, uv.shape[0]):
        raise KernelInputError(f"tex has batch {tex.shape[0]} but uv has batch {uv.shape[0]}; use 1 or the same.")
    nvdr = fast_path(tex, uv)
    if nvdr is not None:
        tex_b = tex.expand(uv.shape[0], -1, -1, -1).contiguous()
        return nvdr.texture(tex_b, uv.contiguous(), filter_mode="linear", boundary_mode="clamp")
    return texture_reference(tex, uv)


def texture_reference(tex: Tensor, uv: Tensor) -> Tensor:
    """Pure-PyTorch :func:`texture` (``grid_sample``, bilinear, border clamp)."""
    tex = tex[None] if tex.dim() == 3 else tex
    img = tex.permute(0, 3, 1, 2).expand(uv.shape[0], -1, -1, -1)  # [B, C, Ht, Wt]
    grid = (uv * 2 - 1).to(img.dtype)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)
