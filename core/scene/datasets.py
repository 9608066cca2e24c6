"""Posed RGBA images in the NeRF-synthetic / instant-ngp ``transforms.json`` convention.

A dataset folder holds either ``transforms_<split>.json`` files (NeRF-synthetic: ``transforms_train.json``,
``transforms_test.json``, ...) or one ``transforms.json`` (instant-ngp), with images referenced relative to the
JSON's folder. Each frame's ``transform_matrix`` is a 4x4 camera-to-world matrix in OpenGL camera axes (x right,
y up, looking down -z), which is exactly :attr:`Cameras.c2w`, so no axis conversion happens here.

Intrinsics, per frame first, then top level:

* ``fl_x`` / ``fl_y`` (pixels), else ``camera_angle_x`` (horizontal field of view, radians:
  ``fx = 0.5 W / tan(camera_angle_x / 2)``), with ``fy = fx`` unless ``fl_y`` or ``camera_angle_y`` is given;
* ``cx`` / ``cy`` (pixels, origin at the top-left image corner), else the image centre;
* ``w`` / ``h``: the image size the intrinsics refer to, else the size of the images. When the images on disk have
  another size with the same aspect ratio (a downsampled copy), the intrinsics are scaled to them.

instant-ngp's ``aabb_scale``, ``scale``, ``offset`` and lens distortion keys are ignored.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..runtime.errors import InputError
from .cameras import Cameras

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_UNSUPPORTED = (".exr", ".hdr")


@dataclass
class PosedImages:
    """Images with the cameras that took them.

    Attributes:
        images: ``[N, H, W, 4]`` float32 RGBA in ``[0, 1]``, straight (not premultiplied) alpha; an image without an
            alpha channel gets alpha = 1.
        cameras: ``N`` cameras, one per image (OpenGL camera axes, Z-up world as written in the file).
        names: ``N`` image paths relative to the JSON's folder, POSIX style (e.g. ``"train/r_0.png"``).
    """

    images: Tensor
    cameras: Cameras
    names: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]


def _json_candidates(folder: Path, split: str) -> list[Path]:
    return [folder / f"transforms_{split}.json"] + ([folder / "transforms.json"] if split == "train" else [])


def available_splits(folder: str | os.PathLike) -> list[str]:
    """The splits :func:`load_posed_images` can read from ``folder`` (``"train"`` for a lone ``transforms.json``)."""
    folder = Path(folder)
    splits = {p.name[len("transforms_"):-len(".json")] for p in folder.glob("transforms_*.json")}
    if (folder / "transforms.json").is_file():
        splits.add("train")
    return sorted(splits)


def _find_json(path: Path, split: str) -> Path:
    if path.is_file() and path.suffix.lower() == ".json":
        return path
    if not path.is_dir():
        raise InputError(f"Dataset folder {str(path)!r} does not exist; pass the folder that holds transforms.json "
                         "(or transforms_train.json).")
    for cand in _json_candidates(path, split):
        if cand.is_file():
            return cand
    have = available_splits(path)
    if have:
        raise InputError(f"{str(path)!r} has no {split!r} split (no transforms_{split}.json); available splits: "
                         f"{', '.join(have)}. A lone transforms.json only provides the 'train' split.")
    raise InputError(f"No transforms.json or transforms_{split}.json in {str(path)!r}; point to a NeRF-synthetic or "
                     "instant-ngp style dataset folder.")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); fix or "
                         "regenerate the file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read {path}: {exc}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object with a 'frames' list, found {type(data).__name__}.")
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{path} has no frames; it needs a non-empty 'frames' list of "
                         "{{'file_path': ..., 'transform_matrix': [[...4x4...]]}} entries.")
    return data


def _resolve_image(root: Path, file_path: str, json_path: Path, index: int) -> Path:
    p = root / file_path
    if p.suffix.lower() in _UNSUPPORTED:
        raise InputError(f"Frame {index} of {json_path.name} uses {p.name}: {p.suffix} images are not supported; "
                         "convert them to PNG (8-bit, with alpha).")
    cands = [p] + [p.with_name(p.name + ext) for ext in IMAGE_EXTENSIONS]
    for c in cands:
        if c.is_file():
            return c
    raise InputError(f"Image {str(p)!r} of frame {index} in {json_path.name} is missing (tried the name as written "
                     f"and with {', '.join(IMAGE_EXTENSIONS[:3])}); check the frame's file_path.")


def _read_rgba(path: Path) -> np.ndarray:
    """``[H, W, 4]`` float32 straight-alpha RGBA in ``[0, 1]``."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float32)
                arr = arr / (65535.0 if im.mode.startswith("I") else 1.0)
                rgb = np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=-1)
                return np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
            return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"Cannot read image {str(path)!r} ({exc}); replace it with a valid PNG or JPEG.") from None


def _downsample(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average ``[H, W, 4]`` straight-alpha RGBA to ``[height, width, 4]`` without colour bleeding from
    transparent pixels (premultiply, box filter per channel in float, un-premultiply)."""
    alpha = rgba[..., 3]
    chans = [rgba[..., c] * alpha for c in range(3)] + [alpha]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32), mode="F")
                      .resize((width, height), Image.Resampling.BOX)) for c in chans]
    a = np.clip(out[3], 0.0, 1.0)
    rgb = np.stack(out[:3], axis=-1) / np.maximum(a, 1e-8)[..., None]
    rgb = np.where(a[..., None] > 1e-6, rgb, 0.0)
    return np.clip(np.concatenate([rgb, a[..., None]], axis=-1), 0.0, 1.0).astype(np.float32)


def _number(frame: dict, meta: dict, key: str) -> float | None:
    value = frame.get(key, meta.get(key))
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key!r} must be a number, found {value!r}.") from None
    if not math.isfinite(value):
        raise InputError(f"{key!r} must be finite, found {value!r}.")
    return value


def _intrinsics(frame: dict, meta: dict, img_w: int, img_h: int, index: int, json_path: Path
                ) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of the image as stored on disk."""
    w = _number(frame, meta, "w") or float(img_w)
    h = _number(frame, meta, "h") or float(img_h)
    if min(w, h) <= 0:
        raise InputError(f"Frame {index} in {json_path.name}: 'w' and 'h' must be positive (found {w:g}x{h:g}).")
    fx = _number(frame, meta, "fl_x")
    angle_x = _number(frame, meta, "camera_angle_x")
    for key in ("camera_angle_x", "camera_angle_y"):
        angle = _number(frame, meta, key)
        if angle is not None and not 0.0 < angle < math.pi:
            raise InputError(f"Frame {index} in {json_path.name}: {key!r} is {angle:g}; a field of view is in "
                             "radians, between 0 and pi (e.g. 0.69 for 40 degrees).")
    if fx is None and angle_x is not None:
        fx = 0.5 * w / math.tan(0.5 * angle_x)
    if fx is None:
        raise InputError(f"No camera intrinsics for frame {index} in {json_path.name}; add 'camera_angle_x' "
                         "(horizontal field of view in radians) or 'fl_x' (focal length in pixels).")
    fy = _number(frame, meta, "fl_y")
    angle_y = _number(frame, meta, "camera_angle_y")
    if fy is None:
        fy = 0.5 * h / math.tan(0.5 * angle_y) if angle_y is not None else fx
    cx = _number(frame, meta, "cx")
    cy = _number(frame, meta, "cy")
    cx = 0.5 * w if cx is None else cx
    cy = 0.5 * h if cy is None else cy
    if min(fx, fy) <= 0:
        raise InputError(f"Frame {index} in {json_path.name} has a non-positive focal length (fx={fx}, fy={fy}).")
    if (int(round(w)), int(round(h))) != (img_w, img_h):
        sx, sy = img_w / w, img_h / h
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise InputError(f"Frame {index} in {json_path.name}: the JSON says {w:g}x{h:g} pixels but the image is "
                             f"{img_w}x{img_h} (another aspect ratio); fix 'w'/'h' or the image.")
        fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
    return fx, fy, cx, cy


def _matrix(frame: dict, index: int, json_path: Path) -> np.ndarray:
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"Frame {index} in {json_path.name}: transform_matrix must be a 4x4 list of numbers "
                         "(rows of a camera-to-world matrix).") from None
    if m.shape != (4, 4):
        raise InputError(f"Frame {index} in {json_path.name}: transform_matrix must be 4x4, found shape "
                         f"{tuple(m.shape)}; write the full camera-to-world matrix, last row [0, 0, 0, 1] included.")
    if not np.isfinite(m).all():
        raise InputError(f"Frame {index} in {json_path.name}: transform_matrix contains NaN or inf.")
    rot = m[:3, :3]
    scale = np.abs(np.linalg.svd(rot, compute_uv=False))
    if scale.min() < 1e-6 * max(1.0, scale.max()):
        raise InputError(f"Frame {index} in {json_path.name}: transform_matrix is singular (its rotation part "
                         "flattens space); each frame needs a camera-to-world rotation and position.")
    return m


def load_posed_images(folder: str | os.PathLike, split: str = "train", max_size: int | None = None) -> PosedImages:
    """Read one split of a NeRF-synthetic / instant-ngp dataset.

    Args:
        folder: The dataset folder (or the path of one transforms JSON file, which is then read whatever ``split``).
        split: ``"train"``, ``"test"``, ``"val"``, ...: reads ``transforms_<split>.json``. A folder with only a
            ``transforms.json`` provides the ``"train"`` split alone; asking it for another split raises
            :class:`InputError` (use :func:`available_splits` to check first).
        max_size: When given, images whose longer side exceeds it are area-downsampled (premultiplied alpha, so
            transparent pixels do not bleed colour) to fit, and the intrinsics are scaled to match.

    Returns:
        The images (``[N, H, W, 4]`` float32), their cameras and names, in the order of the JSON's frames.

    Raises:
        InputError: A missing folder, JSON or image; invalid JSON; no frames; a frame without ``file_path`` or
            ``transform_matrix``; a matrix that is not 4x4; missing intrinsics; images of different sizes.
    """
    json_path = _find_json(Path(folder), split)
    meta = _read_json(json_path)
    root = json_path.parent
    frames = meta["frames"]
    if max_size is not None and max_size < 1:
        raise InputError(f"max_size must be a positive number of pixels, got {max_size}.")

    images: Tensor | None = None
    c2ws, intr, names = [], [], []
    first: tuple[str, int, int] | None = None
    out_w = out_h = 0
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise InputError(f"Frame {i} in {json_path.name} must be an object with 'file_path' and "
                             "'transform_matrix'.")
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise InputError(f"Frame {i} in {json_path.name} has no '{key}'; every frame needs 'file_path' "
                                 "(image path relative to the JSON) and 'transform_matrix' (4x4 camera-to-world).")
        if not isinstance(frame["file_path"], str) or not frame["file_path"]:
            raise InputError(f"Frame {i} in {json_path.name}: 'file_path' must be a non-empty string.")
        c2w = _matrix(frame, i, json_path)
        path = _resolve_image(root, frame["file_path"], json_path, i)
        rgba = _read_rgba(path)
        img_h, img_w = rgba.shape[:2]
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        if first is None:
            first = (name, img_w, img_h)
            scale = 1.0 if max_size is None else min(1.0, max_size / max(img_w, img_h))
            out_w, out_h = max(1, round(img_w * scale)), max(1, round(img_h * scale))
            images = torch.empty(len(frames), out_h, out_w, 4, dtype=torch.float32)
        elif (img_w, img_h) != first[1:]:
            raise InputError(f"All images must have the same size: {first[0]} is {first[1]}x{first[2]} but {name} is "
                             f"{img_w}x{img_h}; resize them to one size.")
        fx, fy, cx, cy = _intrinsics(frame, meta, img_w, img_h, i, json_path)
        if (out_w, out_h) != (img_w, img_h):
            rgba = _downsample(rgba, out_w, out_h)
            sx, sy = out_w / img_w, out_h / img_h
            fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
        assert images is not None  # made at the first frame
        images[i] = torch.from_numpy(rgba)
        c2ws.append(c2w)
        intr.append((fx, fy, cx, cy))
        names.append(name)

    k = torch.tensor(intr, dtype=torch.float32)  # [N, 4]
    cams = Cameras(torch.from_numpy(np.stack(c2ws)).float(), k[:, 0].clone(), k[:, 1].clone(), k[:, 2].clone(),
                   k[:, 3].clone(), out_w, out_h)
    assert images is not None  # the file has at least one frame (checked above)
    return PosedImages(images, cams, names)
