"""Text-to-3D sweep with the toy prior: ``generate --preset draft`` for each "a {colour} {shape}" prompt.

Prints one row per prompt: time, the dominant colour of the result's texture (median colour of the object's
pixels in 8 flat, unlit renders, classified to the nearest of the four training colours by chromaticity), and the
primitive its shape is closest to by symmetric Chamfer distance after normalisation (centred on its surface's
centroid and scaled to a unit RMS distance of the surface from it; in brackets, centred on its bounding box and
scaled to a unit box diagonal; Z up as in training), with the distances to all four so that "closest" comes with
its margin, and whether a vertical line through the centre misses the mesh (a torus's hole). ``--judge-only``
judges the GLBs an earlier run left in ``--out`` again (after a change to the judge).

The prompt fixes no orientation about the vertical axis (the prior's view words each cover 90 degrees of
azimuth; an image-to-3D result is turned to its picture's view), so the result is first turned about Z to the
yaw of its smallest horizontal bounding rectangle, and only then normalised: the scale must not depend on the
turn. (Normalising the turned result scaled a cube turned by 40 degrees down by its wider box until it fitted the
sphere better than a cube: a bumpy but clearly cubic result measured 2.5% from the sphere and 4.1% from the cube.)
The distance to each primitive is then the smallest over turns about Z (every 5 degrees over the primitive's
symmetry period: 90 degrees for the cube; the others are symmetric about Z).

    python scripts/sweep_toy_prior.py [--colours red green ...] [--shapes cube ...] [--seed 0] [--out DIR]
        [--config FILE] [--judge-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth_objects import ground_truth_mesh  # noqa: E402
from toy_prior_data import COLOURS, SHAPES, shape_object  # noqa: E402

from dreamsmith.core.jobs.generate import generate_config, run_generate  # noqa: E402
from dreamsmith.core.meshio import TexturedMesh, read_mesh  # noqa: E402
from dreamsmith.core.metrics import chamfer_meshes, sample_surface  # noqa: E402
from dreamsmith.core.render.mesh import render_textured  # noqa: E402
from dreamsmith.core.render.preview import preview_cameras  # noqa: E402

TOY = Path(__file__).resolve().parents[1] / "assets" / "demo_prior"


#: How a mesh is brought to a common size before it is compared with the primitives: ``"bbox"``, centred on its
#: bounding box and scaled to a unit box diagonal (what the extreme points say); ``"surface"``, centred on its
#: surface's centroid and scaled to a unit root-mean-square distance of the surface from it (what the whole surface
#: says: a rim or a spike a few percent of the area moves it by a few percent, where it can move the box by a third).
SCALES = ("bbox", "surface")


def normalised(verts: np.ndarray, faces: np.ndarray | None = None, scale: str = "bbox") -> np.ndarray:
    """``verts`` centred and scaled by ``scale`` (:data:`SCALES`; ``"surface"`` needs ``faces``)."""
    if scale == "surface":
        pts = sample_surface(np.asarray(verts, np.float64), faces, 20000, 0)
        centre = pts.mean(0)
        return (verts - centre) / max(float(np.sqrt(((pts - centre) ** 2).sum(1).mean())), 1e-9)
    if scale != "bbox":
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    lo, hi = verts.min(0), verts.max(0)
    return (verts - (lo + hi) / 2) / max(float(np.linalg.norm(hi - lo)), 1e-9)


def reference_primitive(shape: str, scale: str = "bbox") -> tuple[np.ndarray, np.ndarray]:
    """The training primitive ``shape`` as a fine mesh (verts, faces), normalised like the results it is compared to."""
    v, f = ground_truth_mesh(shape_object(shape), resolution=96)[:2]
    return normalised(v, f, scale), f


def reference_primitives(scale: str = "bbox") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every training primitive, normalised by ``scale``, for :func:`shape_distances`."""
    return {s: reference_primitive(s, scale) for s in SHAPES}


def yaw_turns(shape: str, step_deg: float = 5.0) -> list[np.ndarray]:
    """Rotations about Z to try for ``shape``: its symmetry period about Z sampled every ``step_deg``."""
    period = 90.0 if shape == "cube" else step_deg  # sphere, cone and torus are symmetric about Z
    out = []
    for deg in np.arange(0.0, period, step_deg):
        a = np.radians(deg)
        out.append(np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]))
    return out


def squared_up(verts: np.ndarray, step_deg: float = 1.0) -> np.ndarray:
    """``verts`` turned about Z to the yaw (within 90 degrees) of their smallest horizontal bounding rectangle."""
    v = np.asarray(verts, dtype=np.float64)
    xy = v[:, :2] - v[:, :2].mean(0)
    a = np.radians(np.arange(0.0, 90.0, step_deg))
    rot = np.stack([np.stack([np.cos(a), -np.sin(a)], 1), np.stack([np.sin(a), np.cos(a)], 1)], 1)  # [K, 2, 2]
    turned = np.einsum("kij,nj->kni", rot, xy)
    area = np.prod(turned.max(1) - turned.min(1), axis=1)
    return np.concatenate([v[:, :2] @ rot[int(np.argmin(area))].T, v[:, 2:]], axis=1)


def shape_distance(verts: np.ndarray, faces: np.ndarray, prim: tuple[np.ndarray, np.ndarray], shape: str,
                   scale: str = "bbox") -> float:
    """Symmetric Chamfer distance (% of the unit size of ``scale``) to a primitive normalised the same way: the
    result squared up and normalised once per turn, minimised over Z turns within the primitive's symmetry."""
    v = squared_up(verts)
    return min(100 * chamfer_meshes((normalised(v @ r.T, faces, scale), faces), prim, n=20000,
                                    normalise_by=None)["symmetric"] for r in yaw_turns(shape))


def shape_distances(verts: np.ndarray, faces: np.ndarray, prims: dict[str, tuple[np.ndarray, np.ndarray]],
                    scale: str = "bbox") -> dict[str, float]:
    """:func:`shape_distance` to each primitive of ``prims`` (from :func:`reference_primitives` with ``scale``)."""
    return {s: shape_distance(verts, faces, prim, s, scale) for s, prim in prims.items()}


def dominant_colour(mesh: TexturedMesh) -> tuple[str, list[float]]:
    cams = preview_cameras(np.asarray(mesh.verts), n_views=8, size=96)
    img = render_textured(mesh, cams, bg=1.0).reshape(-1, 3).numpy()
    obj = img[np.abs(img - 1.0).max(axis=1) > 0.05]
    if len(obj) == 0:
        return "none", [1.0, 1.0, 1.0]
    med = np.median(obj, axis=0)
    chroma = med / max(med.sum(), 1e-6)
    refs = {k: np.asarray(v) / sum(v) for k, v in COLOURS.items()}
    return min(refs, key=lambda k: float(np.linalg.norm(chroma - refs[k]))), med.round(3).tolist()


def has_hole(verts: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the vertical line through the bounding-box centre misses every triangle."""
    c = (verts.min(0) + verts.max(0)) / 2
    tri = verts[faces][:, :, :2] - c[:2]  # projected to XY, relative to the centre
    a, b, cc = tri[:, 0], tri[:, 1], tri[:, 2]

    def cross(p, q):
        return p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]

    d1, d2, d3 = cross(a, b), cross(b, cc), cross(cc, a)
    inside = ((d1 >= 0) & (d2 >= 0) & (d3 >= 0)) | ((d1 <= 0) & (d2 <= 0) & (d3 <= 0))
    return not bool(inside.any())


def primitives() -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The four primitives normalised both ways (:data:`SCALES`), for :func:`judge`."""
    return {scale: reference_primitives(scale) for scale in SCALES}


def judge(glb: Path, prims: dict) -> dict:
    """Shape (nearest primitive, with the distances) and dominant colour of a result file.

    ``shape`` is judged with both normalised by their surfaces (``"surface"``); ``shape_bbox`` by their bounding
    boxes (the sweeps' judge before the surface one). A boxy result with a rim along its top edges is a cube by its
    surface and can be a sphere by its box: the rim sets the box, and the cube inside is scaled down to fit it.
    """
    v, f, uv, tex = read_mesh(glb)
    colour, med = dominant_colour(TexturedMesh(v, f, uv, None, tex))
    dist = shape_distances(v, f, prims["surface"], "surface")
    box = shape_distances(v, f, prims["bbox"], "bbox")
    return {"shape": min(dist, key=dist.get), "shape_bbox": min(box, key=box.get), "colour": colour,
            "median_rgb": med, "chamfer_pct": {k: round(x, 2) for k, x in dist.items()},
            "chamfer_pct_bbox": {k: round(x, 2) for k, x in box.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--colours", nargs="+", default=list(COLOURS))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the GLBs and previews here")
    parser.add_argument("--config", help="JSON overrides merged over the draft preset")
    parser.add_argument("--model", default=str(TOY), help="the prior (default: the committed toy prior)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="where generate runs (the goals are for the CPU)")
    parser.add_argument("--judge-only", action="store_true",
                        help="judge the GLBs an earlier run left in --out instead of generating them")
    args = parser.parse_args()
    if args.judge_only and not args.out:
        parser.error("--judge-only judges the GLBs in --out: give --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    over = json.loads(Path(args.config).read_text()) if args.config else {}
    prims = primitives()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out or tmp)
        for colour in args.colours:
            for shape in args.shapes:
                prompt = f"a {colour} {shape}"
                glb = out_dir / f"{colour}_{shape}.glb"
                seconds = None
                if not args.judge_only:
                    cfg = generate_config("draft", over | {"seed": args.seed, "coarse_model": {"model": args.model}})
                    t0 = time.perf_counter()
                    run_generate(prompt, glb, cfg, device=args.device, preset="draft",
                                 preview=out_dir / f"{colour}_{shape}.png")
                    seconds = round(time.perf_counter() - t0, 1)
                v, f = read_mesh(glb)[:2]
                row = {"prompt": prompt, "seconds": seconds, **judge(glb, prims), "hole": has_hole(v, f),
                       "faces": int(len(f))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    ok_c = sum(r["colour"] == r["prompt"].split()[1] for r in rows)
    ok_s = sum(r["shape"] == r["prompt"].split()[2] for r in rows)
    ok_b = sum(r["shape_bbox"] == r["prompt"].split()[2] for r in rows)
    print()
    print("| prompt | s | colour | shape (by box) | Chamfer % cube / sphere / cone / torus (by box) | hole |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        d, b = r["chamfer_pct"], r["chamfer_pct_bbox"]
        s = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"| {r['prompt']} | {s} | {r['colour']} | {r['shape']} ({r['shape_bbox']}) | "
              f"{d['cube']:.2f} / {d['sphere']:.2f} / {d['cone']:.2f} / {d['torus']:.2f} "
              f"({b['cube']:.2f} / {b['sphere']:.2f} / {b['cone']:.2f} / {b['torus']:.2f}) | {r['hole']} |")
    times = [r["seconds"] for r in rows if r["seconds"] is not None]
    print(f"\ncolour right {ok_c}/{len(rows)}, shape right {ok_s}/{len(rows)} by the surface, {ok_b}/{len(rows)} by "
          f"the box" + (f", max time {max(times):.0f} s" if times else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
