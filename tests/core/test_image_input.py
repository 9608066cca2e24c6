"""The picture of image-to-3D: alpha or a plain background becomes the mask, the object is centred and scaled into
the reference view; bad pictures are refused with a message that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dreamsmith.core.picture.load import ImageInputConfig, load_reference
from dreamsmith.core.runtime.errors import InputError


def _disc(h=120, w=160, centre=(40, 50), radius=22, colour=(200, 30, 30), bg=(255, 255, 255)):
    yy, xx = np.mgrid[:h, :w]
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = bg
    rgb[inside] = colour
    return rgb, inside


def _check_fitted(ref, cfg, colour):
    solid = ref.mask > 0.5
    ys, xs = np.nonzero(solid)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert abs(side - cfg.fill * cfg.resolution) <= 2  # the longer side takes `fill` of the view
    assert abs(ys.mean() - (cfg.resolution - 1) / 2) < 2 and abs(xs.mean() - (cfg.resolution - 1) / 2) < 2
    inner = ref.mask > 0.99
    assert np.allclose(ref.rgb[inner].mean(0), np.array(colour) / 255, atol=0.03)
    assert np.allclose(ref.rgb[ref.mask == 0], 1.0) and (ref.mask == 0).mean() > 0.3  # white around it


@pytest.mark.parametrize("bg", [(255, 255, 255), (40, 90, 60)])
def test_plain_background_without_alpha_is_removed(tmp_path, bg):
    rgb, _ = _disc(bg=bg)
    for ext in ("png", "jpg"):
        path = tmp_path / f"disc.{ext}"
        Image.fromarray(rgb).save(path, quality=95)
        cfg = ImageInputConfig(resolution=128)
        ref = load_reference(path, cfg)
        assert not ref.had_alpha and ref.name == f"disc.{ext}"
        _check_fitted(ref, cfg, (200, 30, 30))


def test_alpha_is_the_mask_whatever_the_hidden_colour(tmp_path):
    rgb, inside = _disc(colour=(20, 40, 220))
    noise = np.random.default_rng(0).integers(0, 255, rgb.shape, dtype=np.uint8)
    rgb[~inside] = noise[~inside]  # garbage behind a transparent background
    rgba = np.dstack([rgb, (inside * 255).astype(np.uint8)])
    path = tmp_path / "disc.png"
    Image.fromarray(rgba, "RGBA").save(path)
    cfg = ImageInputConfig(resolution=96, fill=0.6)
    ref = load_reference(path, cfg)
    assert ref.had_alpha
    _check_fitted(ref, cfg, (20, 40, 220))


def test_specks_are_dropped_and_holes_kept(tmp_path):
    h = w = 100
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 50, xx - 50)
    ring = (r < 30) & (r > 12)
    rgb = np.full((h, w, 3), 255, np.uint8)
    rgb[ring] = (230, 200, 20)
    rgb[3, 3] = (0, 0, 0)  # one dark speck near a corner
    path = tmp_path / "ring.png"
    Image.fromarray(rgb).save(path)
    ref = load_reference(path, ImageInputConfig(resolution=100, fill=0.6))
    assert ref.mask[50, 50] < 0.01  # the hole stays
    ys, xs = np.nonzero(ref.mask > 0.5)
    assert abs(ys.mean() - 49.5) < 1.5 and abs(xs.mean() - 49.5) < 1.5  # the speck did not move the box


def _refused(path, *words):
    with pytest.raises(InputError) as info:
        load_reference(path)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_bad_pictures_are_refused_with_what_to_do(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _refused(empty, "empty file")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    _refused(text, "cannot be read", "PNG or JPEG")
    _refused(tmp_path / "missing.png", "does not exist")
    gif = tmp_path / "disc.gif"
    Image.fromarray(_disc()[0]).save(gif)
    _refused(gif, "GIF", "PNG or JPEG")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 4), 0, np.uint8), "RGBA").save(blank)
    _refused(blank, "No object", "alpha is empty")
    plain = tmp_path / "plain.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(plain)
    _refused(plain, "No object")
    noisy = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(noisy)
    _refused(noisy, "not plain", "alpha")
    full = tmp_path / "full.png"
    Image.fromarray(np.dstack([np.full((64, 64, 3), 90, np.uint8), np.full((64, 64), 255, np.uint8)]),
                    "RGBA").save(full)
    _refused(full, "touches every border")
