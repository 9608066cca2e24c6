"""Training data for the offline toy prior: shaded renders of four primitives in four colours, with prompts.

Objects are ``a {colour} {shape}`` for shapes cube / sphere / cone / torus and colours red / green / blue / yellow,
each about one unit across, centred at the origin (Blender's frame, Z up). Views come from
:func:`dreamsmith.core.scene.cameras.orbit_cameras` with the engine's SDS camera model (distance 2.0, 40-degree field of
view, elevation -10..60 degrees, random azimuth) plus a few overhead views (elevation 60..85). Shading is
the engine's lambertian shading (:mod:`dreamsmith.core.render.shading`) under :data:`LIGHT`, at the camera, on a white
background (an offset makes it a directional light fixed to the camera, see
:func:`dreamsmith.core.scene.cameras.camera_light`; the engine's draft presets must use the same light). Images are
ray-marched at twice the output size and box-downsampled (antialiasing).

The view suffixes follow the engine's view-dependent prompting: azimuth within 45 degrees of 0 = ``front`` (camera on
the -Y side), 45-135 or 225-315 = ``side``, 135-225 = ``back``, elevation above 60 = ``overhead``.

Importable as ``dreamsmith.eval.toy_prior_data``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from dreamsmith.core.render.shading import LightConfig, shade
from dreamsmith.core.scene.cameras import camera_light, orbit_cameras

from .synth_objects import SynthObject, sd_cone, sd_round_box, sd_sphere, sd_torus, sphere_trace

SHAPES = ("cube", "sphere", "cone", "torus")
COLOURS = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.12, 0.70, 0.18),
    "blue": (0.12, 0.25, 0.88),
    "yellow": (0.92, 0.80, 0.08),
}
VIEWS = ("front", "side", "back", "overhead")
DISTANCE, FOV_DEG = 2.0, 40.0
ELEVATION_RANGE = (-10.0, 60.0)
OVERHEAD_RANGE = (60.0, 85.0)
# The light the toy prior's images are shaded with. A light from the upper left (offset (-0.5, 0.6)) drew boxier
# cubes but bumpier SDS surfaces, so the headlight stays.
LIGHT = LightConfig(ambient=0.35, diffuse=0.65, offset=(0.0, 0.0))

# ------------------------------------------------------------------------------------------- shapes (Z up)


def _cube(p: Tensor, labels: bool) -> tuple[Tensor, None]:
    return sd_round_box(p, (0, 0, 0), (0.38, 0.38, 0.38), 0.02), None


def _sphere(p: Tensor, labels: bool) -> tuple[Tensor, None]:
    return sd_sphere(p, (0, 0, 0), 0.52), None


def _cone(p: Tensor, labels: bool) -> tuple[Tensor, None]:
    # Tip at z = +0.55, base (radius 0.5) at z = -0.5.
    return sd_cone(p, (0, 0, 0.55), (0, 0, -1), math.degrees(math.atan2(0.5, 1.05)), 1.05), None


def _torus(p: Tensor, labels: bool) -> tuple[Tensor, None]:
    # Ring in the XY plane: a band from the side, a ring with a hole from above.
    return sd_torus(p, (0, 0, 0), 0.42, 0.16, axis=2), None


_FIELDS = {"cube": _cube, "sphere": _sphere, "cone": _cone, "torus": _torus}


def shape_object(shape: str) -> SynthObject:
    """The primitive ``shape`` (one of :data:`SHAPES`) as a one-part :class:`SynthObject` (colour applied later)."""
    return SynthObject(shape, _FIELDS[shape], ((1.0, 1.0, 1.0),), (0.0, 0.0, 0.0), 0.9)


# ------------------------------------------------------------------------------------------- prompts


def view_word(azimuth_deg: float, elevation_deg: float) -> str:
    """The engine's view suffix word for a camera direction."""
    if elevation_deg > 60.0:
        return "overhead"
    a = azimuth_deg % 360.0
    if a <= 45.0 or a >= 315.0:
        return "front"
    if 135.0 <= a <= 225.0:
        return "back"
    return "side"


def prompt(colour: str, shape: str, view: str | None = None) -> str:
    """``"a {colour} {shape}"``, with ``", {view} view"`` appended when ``view`` is given."""
    base = f"a {colour} {shape}"
    return f"{base}, {view} view" if view else base


def all_prompts() -> list[str]:
    """The 16 base prompts, colour-major (red cube, red sphere, ..., yellow torus)."""
    return [prompt(c, s) for c in COLOURS for s in SHAPES]


VOCAB = ("[PAD]", "[UNK]", "a", *COLOURS, *SHAPES, ",", *VIEWS, "view")

# ------------------------------------------------------------------------------------------- rendering


def _normals(obj: SynthObject, p: Tensor, h: float = 1e-3) -> Tensor:
    """Unit SDF gradient ``[N, 3]`` at points ``p [N, 3]`` by central differences."""
    offs = torch.eye(3) * h
    g = torch.stack([obj.sdf(p + offs[i]) - obj.sdf(p - offs[i]) for i in range(3)], dim=-1)
    return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def render_shape(shape: str, colour: tuple[float, float, float], azimuth_deg: Tensor, elevation_deg: Tensor,
                 size: int = 32, supersample: int = 2) -> Tensor:
    """Shaded renders ``[B, 3, size, size]`` in [0, 1] (white background) of one coloured primitive.

    Args:
        shape: One of :data:`SHAPES`.
        colour: Albedo RGB in [0, 1].
        azimuth_deg, elevation_deg: ``[B]`` camera angles (distance 2.0, 40-degree field of view).
        size: Output image size.
        supersample: Render at ``size * supersample`` and box-downsample.
    """
    obj = shape_object(shape)
    hi = size * supersample
    cams = orbit_cameras(azimuth_deg, elevation_deg, DISTANCE, FOV_DEG, hi)
    o, d = cams.rays()  # [B, H, W, 3]
    b = o.shape[0]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    if any(LIGHT.offset):
        light = camera_light(cams, LIGHT.offset)[:, None, None, :].expand(b, hi, hi, 3).reshape(-1, 3)
    else:
        light = -d  # a point light at the camera
    hit, pts = sphere_trace(obj, o, d, steps=96)
    img = torch.ones(o.shape[0], 3)
    if hit.any():
        albedo = torch.tensor(colour, dtype=torch.float32).expand(int(hit.sum()), 3)
        img[hit] = shade(albedo, _normals(obj, pts[hit]), light[hit], "lambertian", LIGHT)
    img = img.reshape(b, hi, hi, 3).permute(0, 3, 1, 2)
    return torch.nn.functional.avg_pool2d(img, supersample) if supersample > 1 else img


def build_dataset(views_per_object: int = 400, overhead_per_object: int = 48, size: int = 32, seed: int = 0,
                  chunk: int = 100) -> dict:
    """Render the whole training set, deterministically.

    Returns:
        A dict with ``images [N, 3, size, size]`` float in [0, 1], ``colour [N]`` and ``shape [N]`` long indices
        into :data:`COLOURS` / :data:`SHAPES`, ``view [N]`` long index into :data:`VIEWS`, and ``azimuth [N]``,
        ``elevation [N]`` in degrees.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("images", "colour", "shape", "view", "azimuth", "elevation")}
    for ci, (cname, rgb) in enumerate(COLOURS.items()):
        for si, shape in enumerate(SHAPES):
            az = rng.uniform(0.0, 360.0, views_per_object + overhead_per_object)
            el = np.concatenate([rng.uniform(*ELEVATION_RANGE, views_per_object),
                                 rng.uniform(*OVERHEAD_RANGE, overhead_per_object)])
            az_t, el_t = torch.tensor(az, dtype=torch.float32), torch.tensor(el, dtype=torch.float32)
            for s in range(0, len(az), chunk):
                out["images"].append(render_shape(shape, rgb, az_t[s:s + chunk], el_t[s:s + chunk], size))
            out["colour"] += [ci] * len(az)
            out["shape"] += [si] * len(az)
            out["view"] += [VIEWS.index(view_word(a, e)) for a, e in zip(az, el, strict=True)]
            out["azimuth"].append(az_t)
            out["elevation"].append(el_t)
            print(f"  rendered {len(az)} views of a {cname} {shape}", flush=True)
    return {
        "images": torch.cat(out["images"]),
        "colour": torch.tensor(out["colour"]),
        "shape": torch.tensor(out["shape"]),
        "view": torch.tensor(out["view"]),
        "azimuth": torch.cat(out["azimuth"]),
        "elevation": torch.cat(out["elevation"]),
    }
