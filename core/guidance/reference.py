"""Reference guidance: fit renders to posed RGBA images (NeRF-synthetic / instant-ngp convention).

It supplies what the stages need from a set of photographs: the scene box (from the images'
visual hull, so that any scale or offset works), random rays with their target colours for the
coarse NeRF, whole views for the mesh stage, and the photometric + silhouette losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.errors import InputError
from ..scene.cameras import Cameras, mask_at_points
from ..scene.datasets import PosedImages


@dataclass
class ReferenceConfig:
    """Settings of the reference guidance.

    Attributes:
        hull_resolution: Grid resolution of the visual hull used to find the scene box.
        hull_alpha: Alpha above which a pixel counts as object when carving the hull.
        hull_min_views: Fraction of views a point must project into to be carved (others leave it unknown).
        bbox_padding: Padding added around the hull's box, as a fraction of its largest side.
        mask_weight: Weight of the silhouette (alpha) loss against the colour loss.
    """

    hull_resolution: int = 64
    hull_alpha: float = 0.5
    hull_min_views: float = 0.5
    bbox_padding: float = 0.08
    mask_weight: float = 1.0


class ReferenceGuidance:
    """Posed images as guidance.

    Args:
        data: The training images and cameras.
        cfg: Settings.
        device: Where images and cameras live.
    """

    def __init__(self, data: PosedImages, cfg: ReferenceConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.images = data.images.to(device)  # [N, H, W, 4]
        self.cameras = data.cameras.to(device)
        self.n, self.h, self.w = self.images.shape[:3]
        if self.n == 0:
            raise InputError("The image folder has no frames; add images listed in transforms.json.")
        self._rays: tuple[Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ scene box
    def carve(self, points: Tensor, dilate_px: int = 1) -> Tensor:
        """Visual-hull test: ``[M]`` bool, False where some view sees background at the point's pixel.

        A point that projects outside an image (or behind its camera) is not judged by that view;
        points judged by fewer than ``hull_min_views`` of the views are treated as outside.
        """
        alpha = self.images[..., 3:4].permute(0, 3, 1, 2)  # [N, 1, H, W]
        if dilate_px > 0:
            alpha = F.max_pool2d(alpha, 2 * dilate_px + 1, stride=1, padding=dilate_px)
        inside = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
        seen = torch.zeros(points.shape[0], dtype=torch.int32, device=points.device)
        for i in range(self.n):
            a, valid = mask_at_points(self.cameras[i], alpha[i:i + 1], points)
            inside &= ~(valid & (a < self.cfg.hull_alpha))
            seen += valid.int()
        return inside & (seen >= max(1, int(self.cfg.hull_min_views * self.n)))

    def initial_box(self) -> Tensor:
        """A generous cube that the cameras look into: ``[2, 3]``."""
        c2w = self.cameras.c2w
        o, d = c2w[:, :3, 3], -c2w[:, :3, 2]  # camera centres, viewing directions
        # Point closest to all optical axes (least squares); falls back to the origin when ill-posed.
        eye = torch.eye(3, device=o.device, dtype=o.dtype)
        proj = eye[None] - d[:, :, None] * d[:, None, :]
        a = proj.sum(0)
        b = (proj @ o[:, :, None]).sum(0)[:, 0]
        try:
            centre = torch.linalg.solve(a, b)
        except RuntimeError:
            centre = torch.zeros(3, device=o.device, dtype=o.dtype)
        radius = float((o - centre).norm(dim=-1).min()) * 0.9
        return torch.stack([centre - radius, centre + radius])

    def scene_box(self) -> Tensor:
        """The object's box ``[2, 3]`` from the visual hull of the masks, padded."""
        box = self.initial_box()
        r = self.cfg.hull_resolution
        pts = grid_points(box, r)
        inside = self.carve(pts.reshape(-1, 3)).reshape(r, r, r)
        if not inside.any():
            raise InputError("No view shows the object: the images need an alpha channel (transparent background) "
                             "and the cameras must look at the object.")
        if inside.float().mean() > 0.5:
            # Opaque backgrounds: the hull says nothing; keep the whole box.
            return box
        idx = inside.nonzero()
        cell = (box[1] - box[0]) / r
        lo = box[0] + (idx.min(0).values.float()) * cell
        hi = box[0] + (idx.max(0).values.float() + 1) * cell
        pad = float((hi - lo).max()) * self.cfg.bbox_padding + float(cell.max())
        return torch.stack([lo - pad, hi + pad])

    # ------------------------------------------------------------------ sampling
    def all_rays(self) -> tuple[Tensor, Tensor]:
        """Rays of every training pixel, ``[N, H, W, 3]`` each (cached)."""
        if self._rays is None:
            self._rays = self.cameras.rays()
        return self._rays

    def sample_rays(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` random training rays: origins ``[n, 3]``, directions ``[n, 3]`` and target RGBA ``[n, 4]``."""
        o, d = self.all_rays()
        idx = torch.randint(0, self.n * self.h * self.w, (n,), generator=generator, device="cpu").to(self.device)
        return o.reshape(-1, 3)[idx], d.reshape(-1, 3)[idx], self.images.reshape(-1, 4)[idx]

    def sample_views(self, n: int, generator: torch.Generator) -> tuple[Cameras, Tensor]:
        """``n`` random training views: their cameras and target RGBA ``[n, H, W, 4]``."""
        idx = torch.randperm(self.n, generator=generator)[:n].to(self.device)
        return self.cameras[idx], self.images[idx]

    # ------------------------------------------------------------------ losses
    def loss(self, rgb: Tensor, opacity: Tensor, target: Tensor, bg: Tensor) -> Tensor:
        """Photometric loss on the composite over ``bg`` plus the silhouette loss.

        Args:
            rgb: ``[..., 3]`` rendered colour already composited over ``bg``.
            opacity: ``[...]`` rendered opacity.
            target: ``[..., 4]`` straight-alpha target.
            bg: ``[..., 3]`` (or broadcastable) background colour used for both.
        """
        a = target[..., 3:4]
        tgt = target[..., :3] * a + bg * (1 - a)
        return F.mse_loss(rgb, tgt) + self.cfg.mask_weight * F.mse_loss(opacity, a[..., 0])


def grid_points(box: Tensor, r: int) -> Tensor:
    """Centres of an ``r^3`` grid of cells over ``box``: ``[r, r, r, 3]``, index order ``[x, y, z]``."""
    axes = [box[0, k] + (torch.arange(r, device=box.device, dtype=box.dtype) + 0.5) * (box[1, k] - box[0, k]) / r
            for k in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
