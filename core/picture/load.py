"""One picture as the input of image-to-3D: read, masked, centred and scaled into the reference view.

A PNG or JPEG. With an alpha channel, the alpha is the object's mask. Without one, the background must be
plain: its colour is the median of the picture's border, pixels close to it are background and the outline's
mixed pixels are left out; a border that is not one colour is refused (give a picture with alpha). Specks much
smaller than the largest part of the object are dropped; holes are kept (a torus has one). The object's bounding
box is then scaled so that its longer side takes ``fill`` of the reference view and centred in a square of
``resolution`` pixels, composited on white (the background the renders use).

Refused before any work, with what to do (:class:`~.errors.InputError`): a file that is not a PNG or JPEG image,
an empty or unreadable one, a picture with no object (an empty mask) and one whose mask touches every border
(the object is not whole, or the background was not found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from ..runtime.errors import InputError

#: What the reader takes (PIL's format names).
FORMATS = ("PNG", "JPEG")
#: Pictures larger than this on a side are refused (decompression bombs, and no prior needs them).
MAX_SIDE = 8192


@dataclass
class ImageInputConfig:
    """How a picture becomes the reference view.

    Attributes:
        resolution: Side of the square reference image, pixels (the stages resample it to their render size).
        fill: Fraction of the side the object's longer bounding-box side takes.
        alpha_threshold: Alpha above which a pixel counts as the object when measuring its extent.
        background_tolerance: Largest RGB distance (0..sqrt(3)) from the background colour that is background.
        border_max_spread: Largest median distance of border pixels from their median colour for a plain
            background.
        speck_fraction: Parts of the mask smaller than this fraction of the largest part are dropped.
        min_object_fraction: Least fraction of the picture the object must cover.
    """

    resolution: int = 256
    fill: float = 0.75
    alpha_threshold: float = 0.5
    background_tolerance: float = 0.12
    border_max_spread: float = 0.05
    speck_fraction: float = 0.02
    min_object_fraction: float = 0.0005


@dataclass
class ReferenceImage:
    """The picture as the stages use it.

    Attributes:
        rgb: ``[R, R, 3]`` float32 in [0, 1], the object composited on white.
        mask: ``[R, R]`` float32 in [0, 1].
        name: The picture's file name (recorded on the result).
        had_alpha: The mask came from the picture's alpha (else from a plain background).
        azimuth: The picture's azimuth in the prior's frame, degrees (estimated by a camera-conditioned prior; 0:
            the picture is the front).
        caption: The prompt found in the prior's vocabulary for a picture given without one, when used (``""``:
            none).
        caption_read: The caption the prior gave the picture, used or not (``""``: none was read).
        caption_margin: How clearly that caption won (:class:`~dreamsmith.core.picture.caption.CaptionReading`).
    """

    rgb: np.ndarray
    mask: np.ndarray
    name: str
    had_alpha: bool
    azimuth: float = 0.0
    caption: str = ""
    caption_read: str = ""
    caption_margin: float = 0.0


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise InputError(f"The image {str(path)!r} does not exist; give the path of a PNG or JPEG file.")
    if path.stat().st_size == 0:
        raise InputError(f"The image {str(path)!r} is an empty file; give a PNG or JPEG picture.")
    try:
        img = Image.open(path)
        fmt = img.format
        if fmt not in FORMATS:
            raise InputError(f"The image {str(path)!r} is {fmt or 'not a known format'}; give a PNG or JPEG file.")
        if max(img.size) > MAX_SIDE or min(img.size) < 8:
            raise InputError(f"The image {str(path)!r} is {img.size[0]}x{img.size[1]} pixels; give one between 8 "
                             f"and {MAX_SIDE} pixels on each side.")
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{str(path)!r} cannot be read as a PNG or JPEG image ({exc}); give a picture file.") \
            from exc
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _background_mask(rgb: np.ndarray, cfg: ImageInputConfig, name: str) -> np.ndarray:
    """The object's mask of a picture on a plain background (raises when the background is not plain)."""
    h, w, _ = rgb.shape
    band = max(1, min(h, w) // 50)
    border = np.concatenate([rgb[:band].reshape(-1, 3), rgb[-band:].reshape(-1, 3),
                             rgb[:, :band].reshape(-1, 3), rgb[:, -band:].reshape(-1, 3)])
    colour = np.median(border, axis=0)
    spread = float(np.median(np.linalg.norm(border - colour, axis=1)))
    if spread > cfg.border_max_spread:
        raise InputError(f"The picture {name!r} has no alpha channel and its background is not plain (the border "
                         f"varies by {spread:.2f}); give a PNG with the background transparent (alpha), or a picture "
                         f"of the object on one plain colour.")
    mask = np.linalg.norm(rgb - colour, axis=2) > cfg.background_tolerance
    # The outline's pixels mix object and background colour: leave them out (one pixel) where the object is large.
    eroded = ndimage.binary_erosion(mask)
    return (eroded if eroded.sum() > 0.5 * mask.sum() else mask).astype(np.float32)


def _drop_specks(mask: np.ndarray, cfg: ImageInputConfig) -> np.ndarray:
    labels, n = ndimage.label(mask > 0)
    if n <= 1:
        return mask
    sizes = ndimage.sum(np.ones_like(mask), labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= cfg.speck_fraction * sizes.max()) + 1
    return mask * np.isin(labels, keep)


def _fit(rgb: np.ndarray, mask: np.ndarray, cfg: ImageInputConfig) -> tuple[np.ndarray, np.ndarray]:
    """Crop to the mask's box, scale its longer side to ``fill`` of the view and centre it on white."""
    ys, xs = np.nonzero(mask > cfg.alpha_threshold)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    r = cfg.resolution
    scale = cfg.fill * r / side
    size = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
    premult = torch.from_numpy(np.concatenate([rgb * mask[..., None], mask[..., None]], axis=2)[y0:y1, x0:x1])
    small = F.interpolate(premult.permute(2, 0, 1)[None].float(), size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    canvas = np.zeros((r, r, 4), np.float32)
    top, left = (r - size[0]) // 2, (r - size[1]) // 2
    canvas[top:top + size[0], left:left + size[1]] = small
    alpha = canvas[..., 3]
    out_rgb = canvas[..., :3] + (1.0 - alpha[..., None])  # premultiplied colour over white
    return np.clip(out_rgb, 0, 1).astype(np.float32), alpha.astype(np.float32)


def load_reference(path: str | os.PathLike, cfg: ImageInputConfig | None = None) -> ReferenceImage:
    """Read ``path`` and make the reference view of its object (see the module's docstring).

    Raises:
        InputError: Not a readable PNG/JPEG, no object, or an object that touches every border.
    """
    cfg = cfg or ImageInputConfig()
    path = Path(path)
    img = _open(path)
    name = path.name
    had_alpha = _has_alpha(img)
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    rgb = rgba[..., :3]
    mask = rgba[..., 3].copy() if had_alpha else _background_mask(rgb, cfg, name)
    mask = _drop_specks(mask * (mask > 1.0 / 255.0), cfg)
    solid = mask > cfg.alpha_threshold
    if solid.mean() < cfg.min_object_fraction:
        how = "its alpha is empty" if had_alpha else "nothing differs from the background"
        raise InputError(f"No object was found in {name!r} ({how}); give a picture of one object on a transparent "
                         f"or plain background.")
    if solid[0].any() and solid[-1].any() and solid[:, 0].any() and solid[:, -1].any():
        raise InputError(f"The object in {name!r} touches every border of the picture, so it is not whole or its "
                         f"background was not found; give a picture with the whole object and background around "
                         f"it (or a PNG with alpha).")
    out_rgb, out_mask = _fit(rgb, mask, cfg)
    return ReferenceImage(out_rgb, out_mask, name, had_alpha)
