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
        [--config JSON|FILE] [--judge-only] [--coarse-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dreamsmith.core.jobs.generate import generate_config, run_generate
from dreamsmith.core.meshio import read_mesh
from dreamsmith.eval import config_overrides
from dreamsmith.eval.coarse_cache import coarse_cache
from dreamsmith.eval.shapes import TOY, has_hole, judge, primitives
from dreamsmith.eval.toy_prior_data import COLOURS, SHAPES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--colours", nargs="+", default=list(COLOURS))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the GLBs and previews here")
    parser.add_argument("--config", help="overrides merged over the draft preset: JSON text or a JSON file")
    parser.add_argument("--model", default=str(TOY), help="the prior (default: the committed toy prior)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="where generate runs (the goals are for the CPU)")
    parser.add_argument("--coarse-cache", help="keep each prompt's coarse stage here and reuse it (experiments on "
                        "the mesh stage; eval/coarse_cache.py)")
    parser.add_argument("--judge-only", action="store_true",
                        help="judge the GLBs an earlier run left in --out instead of generating them")
    args = parser.parse_args()
    if args.judge_only and not args.out:
        parser.error("--judge-only judges the GLBs in --out: give --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    over = config_overrides(args.config)
    prims = primitives()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, coarse_cache(args.coarse_cache) as cache:
        out_dir = Path(args.out or tmp)
        for colour in args.colours:
            for shape in args.shapes:
                prompt = f"a {colour} {shape}"
                glb = out_dir / f"{colour}_{shape}.glb"
                seconds = None
                if not args.judge_only:
                    cfg = generate_config("draft", over | {"seed": args.seed, "coarse_model": {"model": args.model}})
                    cache.label = prompt
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
