"""Analytic edge antialiasing of rasterised images (nvdiffrast's ``antialias``), with a pure-PyTorch reference.

Conventions are :mod:`.raster`'s; the backend is picked by :func:`.raster.fast_path`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import KernelInputError
from .raster import check_pos_tri, check_rast, cross2, fast_path, pixel_xy


def antialias(color: Tensor, rast: Tensor, pos_clip: Tensor, tri: Tensor) -> Tensor:
    """Analytic edge antialiasing with silhouette gradients w.r.t. vertex positions.

    Args:
        color: Shaded image ``[B, H, W, C]``.
        rast: Output of :func:`rasterize` ``[B, H, W, 4]``.
        pos_clip: The clip-space positions given to :func:`rasterize` ``[B, V, 4]`` (or ``[V, 4]``).
        tri: The triangles given to :func:`rasterize` ``[F, 3]``.

    Returns:
        ``[B, H, W, C]``, differentiable w.r.t. ``color`` and ``pos_clip``.
    """
    check_rast(rast)
    pos_clip = check_pos_tri(pos_clip, tri)
    if not isinstance(color, Tensor) or color.dim() != 4 or not color.is_floating_point():
        raise KernelInputError("color must be a floating-point image [B, H, W, C].")
    if color.shape[:3] != rast.shape[:3]:
        raise KernelInputError(f"color {tuple(color.shape)} and rast {tuple(rast.shape)} must share [B, H, W].")
    if pos_clip.shape[0] not in (1, rast.shape[0]):
        raise KernelInputError(f"pos_clip has batch {pos_clip.shape[0]} but rast has batch {rast.shape[0]}.")
    nvdr = fast_path(color, rast, pos_clip)
    if nvdr is not None:
        pos = pos_clip.expand(rast.shape[0], -1, -1).contiguous()
        return nvdr.antialias(color.contiguous(), rast, pos, tri.int().contiguous())
    return antialias_reference(color, rast, pos_clip, tri)


def _neighbour_pairs(face: Tensor, depth: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Adjacent pixel pairs with different triangles: flat front index, flat back index, horizontal flag."""
    fronts, backs, horiz = [], [], []
    flat_idx = torch.arange(face.numel(), device=face.device).view(face.shape)  # [B, H, W]
    for step, is_h in ((1, True), (width, False)):
        a_sl = (slice(None), slice(None), slice(0, width - 1)) if is_h else (slice(None), slice(0, height - 1))
        b_sl = (slice(None), slice(None), slice(1, width)) if is_h else (slice(None), slice(1, height))
        differ = face[a_sl] != face[b_sl]
        ia = flat_idx[a_sl][differ]
        ib = ia + step
        first_front = depth.view(-1)[ia] <= depth.view(-1)[ib]
        fronts.append(torch.where(first_front, ia, ib))
        backs.append(torch.where(first_front, ib, ia))
        horiz.append(torch.full_like(ia, int(is_h), dtype=torch.bool))
    return torch.cat(fronts), torch.cat(backs), torch.cat(horiz)


def antialias_reference(color: Tensor, rast: Tensor, pos_clip: Tensor, tri: Tensor) -> Tensor:
    """Pure-PyTorch :func:`antialias`.

    For each horizontally or vertically adjacent pixel pair with different triangle ids, the pixel whose
    triangle is nearer (background is infinitely far) is the front one. The front triangle's edge that the
    segment front centre -> back centre leaves through crosses it at ``a`` in ``[0, 1]``; only edges that are
    closer to perpendicular to the segment are used (near-vertical edges by horizontal pairs and vice versa),
    which makes the covered area exact along straight edges. With ``a > 0.5`` the back pixel is blended
    toward the front colour by ``a - 0.5``, else the front pixel toward the back colour by ``0.5 - a``.
    """
    pos_clip = pos_clip[None] if pos_clip.dim() == 2 else pos_clip
    bsz, height, width, chans = color.shape
    nverts = pos_clip.shape[1]
    face = torch.round(rast[..., 3]).long() - 1  # [B, H, W]
    depth = torch.where(face >= 0, rast[..., 2], torch.full_like(rast[..., 2], float("inf")))
    front, back, horiz = _neighbour_pairs(face, depth, height, width)
    if front.numel() == 0:
        return color
    fface = face.view(-1)[front]
    ok = fface >= 0
    front, back, horiz, fface = front[ok], back[ok], horiz[ok], fface[ok]
    pb_idx = (front // (height * width)) if pos_clip.shape[0] > 1 else torch.zeros_like(front)
    vidx = pb_idx[:, None] * nverts + tri.long()[fface]  # [N, 3]

    def centre(flat: Tensor) -> Tensor:
        pix = flat % (height * width)
        return torch.stack([pix % width, pix // width], 1).to(pos_clip.dtype)

    cf, cb = centre(front), centre(back)  # [N, 2]
    with torch.no_grad():
        p = pixel_xy(pos_clip.detach().reshape(-1, 4)[vidx], height, width)  # [N, 3, 2]
        t_all = []
        for k in range(3):
            a, c = p[:, (k + 1) % 3], p[:, (k + 2) % 3]
            ef, eb = cross2(c - a, cf - a), cross2(c - a, cb - a)
            ef, eb = ef * torch.sign(cross2(c - a, p[:, k] - a)), eb * torch.sign(cross2(c - a, p[:, k] - a))
            exits = (eb < 0) & (ef >= 0)
            t_all.append(torch.where(exits, ef / torch.where(exits, ef - eb, torch.ones_like(ef)),
                                     torch.full_like(ef, float("inf"))))
        t_min, edge = torch.stack(t_all, 1).min(1)
        a_sel = torch.gather(p, 1, ((edge + 1) % 3)[:, None, None].expand(-1, 1, 2))[:, 0]
        c_sel = torch.gather(p, 1, ((edge + 2) % 3)[:, None, None].expand(-1, 1, 2))[:, 0]
        d = c_sel - a_sel
        steep = d[:, 1].abs() >= d[:, 0].abs()
        use = torch.isfinite(t_min) & (t_min <= 1) & (steep == horiz) & (d.abs().amax(1) > 0)
    if not bool(use.any()):
        return color
    cf, cb, front, back, vidx, edge = cf[use], cb[use], front[use], back[use], vidx[use], edge[use]
    i0 = torch.gather(vidx, 1, ((edge + 1) % 3)[:, None])[:, 0]
    i1 = torch.gather(vidx, 1, ((edge + 2) % 3)[:, None])[:, 0]
    pos_flat = pos_clip.reshape(-1, 4)
    a_pt, c_pt = pixel_xy(pos_flat[i0], height, width), pixel_xy(pos_flat[i1], height, width)  # [M, 2] with grad
    d = c_pt - a_pt
    t = cross2(d, cf - a_pt) / cross2(d, cf - cb)  # crossing parameter along front -> back
    col = color.reshape(-1, chans)
    diff = col[front] - col[back]  # [M, C]
    w_back = torch.relu(t - 0.5)[:, None].to(color.dtype)
    w_front = torch.relu(0.5 - t)[:, None].to(color.dtype)
    out = col.index_add(0, back, w_back * diff).index_add(0, front, -w_front * diff)
    return out.view(bsz, height, width, chans)
