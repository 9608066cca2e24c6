"""Synthetic test objects for the reconstruction benchmark: analytic SDFs with flat (unlit) part colours.

Each object is a signed distance function in world units (Blender's frame, Z up) with a piecewise-constant colour.
This module renders posed RGBA views by sphere tracing (all rays batched in torch, 2x2 supersampled coverage for
antialiased alpha), writes them as a NeRF-synthetic dataset, and extracts the ground-truth surface with marching
cubes for Chamfer distances.

Objects: ``snowman`` (at the origin, ~2 units tall), ``mug`` (off-centre at (3, -2, 1), ~5 units wide),
``box_ball`` (small: ~0.75 units, slightly off-centre) and ``sphere`` (unit sphere, two-coloured hemispheres).

CLI::

    python -m dreamsmith.eval.synth_objects --object snowman --out DIR [--size 128 --train 40 --test 8 --seed 0 --mesh]

Importable as ``synth_objects`` (with scripts/ on ``sys.path``) or as ``dreamsmith.scripts.synth_objects``.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dreamsmith.core.scene.cameras import Cameras, orbit_cameras

# ----------------------------------------------------------------------------------------------- SDF primitives
# All take points p [N, 3] and return signed distances [N] (negative inside).


def _vec(x) -> Tensor:
    return torch.tensor(x, dtype=torch.float32)


def sd_sphere(p: Tensor, c, r: float) -> Tensor:
    """Sphere of radius ``r`` centred at ``c``."""
    return (p - _vec(c)).norm(dim=-1) - r


def sd_torus(p: Tensor, c, big_r: float, small_r: float, axis: int = 2) -> Tensor:
    """Torus centred at ``c`` whose ring lies in the plane normal to coordinate ``axis``."""
    q = p - _vec(c)
    others = [i for i in range(3) if i != axis]
    ring = q[:, others].norm(dim=-1) - big_r
    return torch.stack([ring, q[:, axis]], dim=-1).norm(dim=-1) - small_r


def sd_cylinder(p: Tensor, c, r: float, half_h: float) -> Tensor:
    """Capped cylinder along Z: radius ``r``, height ``2 half_h``, centred at ``c``."""
    q = p - _vec(c)
    d = torch.stack([q[:, :2].norm(dim=-1) - r, q[:, 2].abs() - half_h], dim=-1)  # [N, 2]
    return d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0)


def sd_round_box(p: Tensor, c, half, radius: float) -> Tensor:
    """Box with half extents ``half`` and edges rounded by ``radius``, centred at ``c``."""
    q = (p - _vec(c)).abs() - (_vec(half) - radius)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0) - radius


def sd_cone(p: Tensor, apex, axis, half_angle_deg: float, length: float) -> Tensor:
    """Solid cone with its tip at ``apex`` opening along unit ``axis``, cut at ``length`` (a distance lower bound).

    In the (radial, axial) half-plane the infinite cone's boundary is a ray from the apex at the half angle; the
    distance to it is exact, and the cut is an intersection with a slab (max of the two, conservative).
    """
    a = _vec(axis)
    q = p - _vec(apex)
    h = q @ a  # [N] along the axis
    r = (q - h[:, None] * a).norm(dim=-1)  # [N] from the axis
    s, c = math.sin(math.radians(half_angle_deg)), math.cos(math.radians(half_angle_deg))
    t = (r * s + h * c).clamp_min(0)  # foot of the perpendicular on the boundary ray
    dist = torch.stack([r - t * s, h - t * c], dim=-1).norm(dim=-1)
    inside = r * c - h * s < 0
    cone = torch.where(inside, -dist, dist)
    return torch.maximum(cone, torch.maximum(-h, h - length))


# ----------------------------------------------------------------------------------------------- objects

FieldFn = Callable[[Tensor, bool], tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class SynthObject:
    """An analytic test object.

    Attributes:
        name: Object name.
        field: ``f(p_local [N, 3], want_labels) -> (sdf [N], labels [N] long or None)`` in local units.
        palette: ``[K][3]`` RGB in [0, 1]; ``labels`` index it.
        center: Local centre of a sphere that encloses the object.
        radius: Local radius of that sphere.
        scale: Uniform scale from local to world units.
        offset: World position of the local origin.
    """

    name: str
    field: FieldFn
    palette: tuple[tuple[float, float, float], ...]
    center: tuple[float, float, float]
    radius: float
    scale: float = 1.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _local(self, p: Tensor) -> Tensor:
        return (p - _vec(self.offset)) / self.scale

    def sdf(self, p: Tensor) -> Tensor:
        """World-space signed distance ``[N]`` at world points ``p [N, 3]`` (a lower bound away from the surface)."""
        return self.scale * self.field(self._local(p), False)[0]

    def color(self, p: Tensor) -> Tensor:
        """Flat RGB ``[N, 3]`` of the part nearest to each world point ``p [N, 3]``."""
        labels = self.field(self._local(p), True)[1]
        return torch.tensor(self.palette, dtype=torch.float32)[labels]

    @property
    def world_center(self) -> Tensor:
        """``[3]`` centre of the world-space bounding sphere."""
        return _vec(self.center) * self.scale + _vec(self.offset)

    @property
    def world_radius(self) -> float:
        """Radius of the world-space bounding sphere."""
        return self.radius * self.scale


def _nearest(parts: list[Tensor], labels: list[int]) -> Tensor:
    """Label of the part whose surface is nearest (smallest ``|d|``) at each point."""
    idx = torch.stack(parts).abs().argmin(dim=0)
    return torch.tensor(labels, dtype=torch.long)[idx]


_WHITE, _DARK = (0.95, 0.95, 0.97), (0.08, 0.08, 0.10)


def _snowman(p: Tensor, labels: bool) -> tuple[Tensor, Tensor | None]:
    parts = [
        sd_sphere(p, (0, 0, -0.45), 0.55),  # body
        sd_sphere(p, (0, 0, 0.42), 0.38),  # head
        sd_cone(p, (0, -0.68, 0.45), (0, 1, 0), 12.0, 0.36),  # nose
        sd_torus(p, (0, 0, 0.08), 0.22, 0.08),  # scarf
        sd_sphere(p, (0.13, -0.33, 0.55), 0.045),  # eyes
        sd_sphere(p, (-0.13, -0.33, 0.55), 0.045),
        sd_sphere(p, (0, -0.531, -0.592), 0.05),  # buttons
        sd_sphere(p, (0, -0.542, -0.354), 0.05),
        sd_sphere(p, (0, -0.451, -0.135), 0.05),
        sd_cylinder(p, (0, 0, 0.74), 0.30, 0.02),  # hat brim
        sd_cylinder(p, (0, 0, 0.90), 0.20, 0.15),  # hat crown
    ]
    d = torch.stack(parts).min(dim=0).values
    lab = [0, 0, 1, 2, 3, 3, 3, 3, 3, 4, 4]
    return d, (_nearest(parts, lab) if labels else None)


def _mug(p: Tensor, labels: bool) -> tuple[Tensor, Tensor | None]:
    outer = sd_cylinder(p, (0, 0, 0), 0.5, 0.5)
    cavity = sd_cylinder(p, (0, 0, 0.09), 0.43, 0.51)  # open at the top, 0.08 thick bottom
    handle = sd_torus(p, (0.55, 0, 0), 0.25, 0.065, axis=1)
    d = torch.maximum(torch.minimum(outer, handle), -cavity)
    if not labels:
        return d, None
    lab = _nearest([outer, cavity, handle], [0, 1, 2])
    band = (lab == 0) & (p[:, 2] > 0.15) & (p[:, 2] < 0.28)
    return d, torch.where(band, torch.full_like(lab, 3), lab)


def _box_ball(p: Tensor, labels: bool) -> tuple[Tensor, Tensor | None]:
    box = sd_round_box(p, (0, 0, -0.25), (0.6, 0.45, 0.3), 0.1)
    ball = sd_sphere(p, (0.1, 0.05, 0.35), 0.32)
    d = torch.minimum(box, ball)
    if not labels:
        return d, None
    lab = _nearest([box, ball], [0, 2])
    return d, torch.where((lab == 0) & (p[:, 0] >= 0), torch.ones_like(lab), lab)


def _two_tone_sphere(p: Tensor, labels: bool) -> tuple[Tensor, Tensor | None]:
    d = p.norm(dim=-1) - 1.0
    return d, ((p[:, 2] >= 0).long() if labels else None)


def sphere_object(radius: float = 1.0, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> SynthObject:
    """A sphere of ``radius`` at ``center``: orange above its equator, teal below."""
    return SynthObject("sphere", _two_tone_sphere, ((0.1, 0.6, 0.6), (1.0, 0.55, 0.1)), (0, 0, 0), 1.02,
                       scale=radius, offset=center)


OBJECTS: dict[str, SynthObject] = {
    "snowman": SynthObject("snowman", _snowman, (_WHITE, (1.0, 0.5, 0.1), (0.85, 0.1, 0.1), _DARK, (0.1, 0.12, 0.3)),
                           (0.0, 0.0, 0.02), 1.1),
    "mug": SynthObject("mug", _mug, ((0.15, 0.35, 0.8), (0.95, 0.9, 0.75), (0.95, 0.75, 0.1), _WHITE),
                       (0.0, 0.0, 0.0), 0.92, scale=3.5, offset=(3.0, -2.0, 1.0)),
    "box_ball": SynthObject("box_ball", _box_ball, ((0.85, 0.2, 0.2), (0.2, 0.7, 0.3), (0.55, 0.3, 0.8)),
                            (0.0, 0.0, -0.05), 0.93, scale=0.4, offset=(-0.2, 0.1, 0.3)),
    "sphere": sphere_object(),
}


def get_object(obj: str | SynthObject) -> SynthObject:
    """The object named ``obj`` (or ``obj`` itself); an unknown name raises ``KeyError`` listing the names."""
    if isinstance(obj, SynthObject):
        return obj
    if obj not in OBJECTS:
        raise KeyError(f"Unknown synthetic object {obj!r}; choose one of: {', '.join(OBJECTS)}.")
    return OBJECTS[obj]


# ----------------------------------------------------------------------------------------------- rendering


@torch.no_grad()
def sphere_trace(obj: SynthObject, origins: Tensor, dirs: Tensor, steps: int = 128) -> tuple[Tensor, Tensor]:
    """March rays ``origins [R, 3]``, unit ``dirs [R, 3]`` to the object's surface.

    Rays are clipped to the bounding sphere and the still-marching ones are compacted every step (``index_select``,
    far faster on the CPU than advanced indexing).

    Returns:
        hit ``[R]`` bool and hit points ``[R, 3]`` (meaningless where not hit).
    """
    c, rad = obj.world_center, obj.world_radius
    eps = 2e-4 * rad
    oc = origins - c
    b = (oc * dirs).sum(-1)
    disc = b * b - (oc * oc).sum(-1) + rad * rad
    sq = disc.clamp_min(0).sqrt()
    t_out = (-b - sq).clamp_min(0)  # [R] ray parameter, final where hit
    hit = torch.zeros(origins.shape[0], dtype=torch.bool)
    ids = torch.nonzero((disc > 0) & (-b + sq > 0)).squeeze(1)  # rays still marching
    o_a, d_a = origins.index_select(0, ids), dirs.index_select(0, ids)
    t_a, tf_a = t_out.index_select(0, ids), (-b + sq).index_select(0, ids)
    for _ in range(steps):
        if ids.numel() == 0:
            break
        dist = obj.sdf(torch.addcmul(o_a, t_a[:, None], d_a))
        done = dist < eps
        t_a = t_a + dist.clamp_min(0)
        if done.any():
            sel = torch.nonzero(done).squeeze(1)
            hit.index_fill_(0, ids.index_select(0, sel), True)
            t_out.index_copy_(0, ids.index_select(0, sel), t_a.index_select(0, sel))
        keep = torch.nonzero(~done & (t_a < tf_a)).squeeze(1)
        if keep.numel() < ids.numel():
            ids, o_a, d_a = ids.index_select(0, keep), o_a.index_select(0, keep), d_a.index_select(0, keep)
            t_a, tf_a = t_a.index_select(0, keep), tf_a.index_select(0, keep)
    if ids.numel():  # out of steps: grazing rays; count those that ended very close to the surface
        near = obj.sdf(torch.addcmul(o_a, t_a[:, None], d_a)) < 20 * eps
        hit.index_fill_(0, ids[near], True)
        t_out.index_copy_(0, ids, t_a)
    return hit, torch.addcmul(origins, t_out[:, None], dirs)


@torch.no_grad()
def render(obj: str | SynthObject, cameras: Cameras, supersample: int = 2, steps: int = 128,
           chunk: int = 1 << 20) -> Tensor:
    """Unlit RGBA renders ``[B, H, W, 4]`` with straight alpha = pixel coverage (``supersample``² rays per pixel)."""
    obj = get_object(obj)
    ss = max(1, int(supersample))
    w, h = cameras.width, cameras.height
    o, d = cameras.resized(w * ss, h * ss).rays()  # [B, Hs, Ws, 3]
    o, d = o.reshape(-1, 3).float(), d.reshape(-1, 3).float()
    hit = torch.zeros(o.shape[0], dtype=torch.bool)
    rgb = torch.zeros(o.shape[0], 3)
    for s in range(0, o.shape[0], chunk):
        hk, pk = sphere_trace(obj, o[s:s + chunk], d[s:s + chunk], steps)
        hit[s:s + chunk] = hk
        if hk.any():
            rgb[s:s + chunk][hk] = obj.color(pk[hk])
    b = len(cameras)
    hit = hit.reshape(b, h, ss, w, ss).float()
    rgb = rgb.reshape(b, h, ss, w, ss, 3)
    cover = hit.sum(dim=(2, 4))  # [B, H, W]
    col = (rgb * hit[..., None]).sum(dim=(2, 4)) / cover.clamp_min(1)[..., None]
    return torch.cat([col, (cover / ss ** 2)[..., None]], dim=-1)


def _split_seed(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode())])


def view_cameras(obj: str | SynthObject, n_views: int, size: int, seed: int = 0, split: str = "train",
                 fov_deg: float = 40.0, fill: float = 0.8) -> Cameras:
    """Cameras around the object: azimuth uniform in [0, 360), elevation uniform in [-20, 70] degrees.

    Each camera looks at the bounding-sphere centre from a distance at which that sphere spans ``fill`` of the
    frame (the object itself then fills roughly 60-80%). Different ``split`` names give different cameras.
    """
    obj = get_object(obj)
    rng = _split_seed(seed, split)
    az = torch.from_numpy(rng.uniform(0.0, 360.0, n_views)).float()
    el = torch.from_numpy(rng.uniform(-20.0, 70.0, n_views)).float()
    dist = obj.world_radius / math.sin(math.atan(fill * math.tan(math.radians(fov_deg) / 2)))
    return orbit_cameras(az, el, dist, fov_deg, size, target=tuple(obj.world_center.tolist()))


def render_views(obj: str | SynthObject, n_views: int, size: int, seed: int = 0, split: str = "train",
                 fov_deg: float = 40.0) -> tuple[Tensor, Cameras]:
    """Render ``n_views`` square views of ``size`` pixels (see :func:`view_cameras`).

    Returns:
        RGBA images ``[N, size, size, 4]`` (straight alpha, RGB 0 where alpha is 0) and their cameras.
    """
    cams = view_cameras(obj, n_views, size, seed, split, fov_deg)
    return render(obj, cams), cams


def _to_uint8(img: Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def write_dataset(obj: str | SynthObject, folder: str | Path, n_train: int = 40, n_test: int = 8, size: int = 128,
                  seed: int = 0, fov_deg: float = 40.0) -> Path:
    """Write a NeRF-synthetic style dataset: ``train/r_<i>.png``, ``test/r_<i>.png``, ``transforms_<split>.json``.

    Frames have ``file_path`` ``"./<split>/r_<i>"`` (no extension, as in NeRF-synthetic) and a camera-to-world
    ``transform_matrix``; ``camera_angle_x`` is the horizontal field of view in radians. The JSON also records the
    object's name and world bounding sphere under ``"synthetic"``.

    Returns:
        The dataset folder.
    """
    obj = get_object(obj)
    folder = Path(folder)
    for split, n in (("train", n_train), ("test", n_test)):
        if n <= 0:
            continue
        (folder / split).mkdir(parents=True, exist_ok=True)
        images, cams = render_views(obj, n, size, seed, split, fov_deg)
        frames = []
        for i in range(n):
            Image.fromarray(_to_uint8(images[i]), mode="RGBA").save(folder / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": cams.c2w[i].tolist()})
        meta = {
            "camera_angle_x": math.radians(fov_deg),
            "synthetic": {"object": obj.name, "center": obj.world_center.tolist(), "radius": obj.world_radius},
            "frames": frames,
        }
        (folder / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    return folder


@torch.no_grad()
def _sdf_grid(obj: SynthObject, lin: Tensor, chunk: int = 1 << 20) -> np.ndarray:
    """SDF on the grid ``lin x lin x lin`` (offsets from the bounding centre), ``[X, Y, Z]`` float32.

    Exact near the surface only: a coarse grid (every 4th node) is evaluated first, and a fine node whose nearest
    coarse value exceeds its distance to that coarse node plus one grid step keeps that value. The SDF is
    1-Lipschitz, so such a node has the right sign and lies more than a step from the surface; the end points of
    every grid edge that crosses the surface are within a step of it, so they get exact values, and marching
    cubes sees exactly what a full evaluation would give it.
    """
    res, c = lin.shape[0], obj.world_center
    step = float(lin[1] - lin[0])

    def eval_at(ix: Tensor, iy: Tensor, iz: Tensor) -> Tensor:
        out = torch.empty(ix.shape[0])
        for s in range(0, ix.shape[0], chunk):
            pts = torch.stack([lin[ix[s:s + chunk]], lin[iy[s:s + chunk]], lin[iz[s:s + chunk]]], dim=-1) + c
            out[s:s + chunk] = obj.sdf(pts)
        return out

    coarse_idx = torch.arange(0, res, 4)
    nc = coarse_idx.shape[0]
    cx, cy, cz = torch.meshgrid(coarse_idx, coarse_idx, coarse_idx, indexing="ij")
    coarse = eval_at(cx.reshape(-1), cy.reshape(-1), cz.reshape(-1)).reshape(nc, nc, nc)
    near = torch.round(torch.arange(res) / 4).long().clamp_max(nc - 1)  # [res] nearest coarse index per axis
    gap = int((coarse_idx[near] - torch.arange(res)).abs().max())
    vol = coarse[near][:, near][:, :, near].contiguous()  # [res, res, res]
    band = torch.nonzero(vol.abs() <= (gap * math.sqrt(3) + 1.0) * step * 1.01)  # [M, 3] nodes that need exact values
    vol[band[:, 0], band[:, 1], band[:, 2]] = eval_at(band[:, 0], band[:, 1], band[:, 2])
    return vol.numpy()


def ground_truth_mesh(obj: str | SynthObject, resolution: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The object's surface by marching cubes on its SDF over its bounding cube.

    Returns:
        ``verts [V, 3]`` float32 in world units and ``faces [F, 3]`` int64, counter-clockwise seen from outside.
    """
    from skimage.measure import marching_cubes

    obj = get_object(obj)
    c, r = obj.world_center, obj.world_radius * 1.02
    lin = torch.linspace(-r, r, resolution)
    vol = _sdf_grid(obj, lin)
    step = float(lin[1] - lin[0])
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(step,) * 3)
    verts = (verts + (c - r).numpy()).astype(np.float32)
    faces = faces.astype(np.int64)
    a, b, cc = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    if np.einsum("ij,ij->i", a, np.cross(b, cc)).sum() < 0:  # signed volume: make the faces point outwards
        faces = faces[:, ::-1].copy()
    return verts, faces


def _write_obj(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: write one object's dataset (and optionally its ground-truth mesh)."""
    parser = argparse.ArgumentParser(description="Render a synthetic object into a NeRF-synthetic dataset.")
    parser.add_argument("--object", default="snowman", choices=sorted(OBJECTS))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (square)")
    parser.add_argument("--train", type=int, default=40, help="number of training views")
    parser.add_argument("--test", type=int, default=8, help="number of test views")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mesh", action="store_true", help="also write ground_truth.obj (marching cubes, 256^3)")
    args = parser.parse_args(argv)
    out = write_dataset(args.object, args.out, args.train, args.test, args.size, args.seed)
    if args.mesh:
        verts, faces = ground_truth_mesh(args.object)
        _write_obj(out / "ground_truth.obj", verts, faces)
    print(f"wrote {args.train} train + {args.test} test views of {args.object!r} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
