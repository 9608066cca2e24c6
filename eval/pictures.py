"""The image sweep's pictures: the toy prior's shapes rendered as a photo would show them (a PNG with alpha, or a
JPEG on white), from seeded random views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.render.shading import shade
from ..core.scene.cameras import orbit_cameras
from .synth_objects import sphere_trace
from .toy_prior_data import COLOURS, DISTANCE, FOV_DEG, LIGHT, SHAPES, _normals, shape_object


@torch.no_grad()
def render_picture(shape: str, colour: str, azimuth: float, elevation: float, size: int = 256,
                   alpha: bool = True, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                   distance: float = DISTANCE, fov: float = FOV_DEG, supersample: int = 2) -> np.ndarray:
    """A picture of a toy-prior object (its shading and light): ``[S, S, 4]`` uint8 with alpha = coverage, or
    ``[S, S, 3]`` on ``background``."""
    obj = shape_object(shape)
    hi = size * supersample
    cams = orbit_cameras(torch.tensor([float(azimuth)]), torch.tensor([float(elevation)]), distance, fov, hi)
    o, d = (x.reshape(-1, 3) for x in cams.rays())
    hit, pts = sphere_trace(obj, o, d, steps=96)
    rgb = torch.zeros(o.shape[0], 3)
    if hit.any():
        albedo = torch.tensor(COLOURS[colour], dtype=torch.float32).expand(int(hit.sum()), 3)
        rgb[hit] = shade(albedo, _normals(obj, pts[hit]), -d[hit], "lambertian", LIGHT)
    cover = hit.float().reshape(1, 1, hi, hi)
    pre = torch.nn.functional.avg_pool2d((rgb * hit[:, None]).T.reshape(1, 3, hi, hi), supersample)[0]
    a = torch.nn.functional.avg_pool2d(cover, supersample)[0]
    if alpha:
        straight = pre / a.clamp_min(1e-6)
        out = torch.cat([straight, a]).permute(1, 2, 0)
    else:
        out = (pre + (1 - a) * torch.tensor(background).view(3, 1, 1)).permute(1, 2, 0)
    return (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def write_picture(path: Path, pixels: np.ndarray) -> Path:
    """Save a picture as PNG (or JPEG when ``path`` ends in .jpg)."""
    img = Image.fromarray(pixels)
    img.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else img.save(path)
    return path


def sweep_pictures(seed: int, n: int) -> list[tuple[str, str, float, float]]:
    """The sweep's first ``n`` pictures at ``seed``: (colour, shape, azimuth, elevation), cycling through the 16
    objects, each from a random azimuth (0-360) and elevation (-10..40 degrees)."""
    rng = np.random.default_rng(seed)
    objects = [(c, s) for s in SHAPES for c in COLOURS]
    return [(*objects[i % len(objects)], float(rng.uniform(0, 360)), float(rng.uniform(-10, 40))) for i in range(n)]
