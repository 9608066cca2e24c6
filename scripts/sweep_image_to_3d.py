"""Image-to-3D sweep with the toy prior: one picture per "a {colour} {shape}" object from a random view, then
``generate --image`` at the draft preset with no prompt (``--prompt`` adds the object's words).

Pictures are ray-marched renders of the toy prior's primitives (shaded with its light, 256 px), taken from a random
azimuth (0-360) and elevation (-10..40 degrees) at the prior's distance and field of view; half are PNGs with alpha,
half RGB on a plain white background. The engine is given the elevation (``--elevation``), never the azimuth: the
picture defines the front. Each row: seconds, the caption the prior gave the picture (no prompt), shape (nearest
primitive by Chamfer, minimised over turns about Z, the result and the primitives each centred on its surface and
scaled to a unit RMS distance of the surface; in brackets, each scaled to a unit bounding-box diagonal instead;
``sweep_toy_prior.judge``), colour (the texture's dominant colour), and the result's silhouette IoU
and colour error at the picture's camera (the engine's own summary). A caption in brackets, with its margin, was
read but not clear enough to use.

    python scripts/sweep_image_to_3d.py [--n 16] [--seed 0] [--prompt] [--out DIR] [--config JSON|FILE]
        [--only 3 13 14] [--coarse-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dreamsmith.core.jobs.generate import generate_config, run_generate
from dreamsmith.eval import config_overrides
from dreamsmith.eval.coarse_cache import coarse_cache
from dreamsmith.eval.pictures import render_picture, sweep_pictures, write_picture
from dreamsmith.eval.shapes import judge, primitives

TOY = Path(__file__).resolve().parents[1] / "assets" / "demo_prior"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="pictures (cycling through the 16 objects)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the views and of generate")
    parser.add_argument("--prompt", action="store_true", help="also give the object's words as the prompt")
    parser.add_argument("--only", type=int, nargs="+", help="run only these picture numbers (same views)")
    parser.add_argument("--out", help="keep pictures, GLBs and previews here")
    parser.add_argument("--config", help="overrides merged over the draft preset: JSON text or a JSON file")
    parser.add_argument("--model", default=str(TOY), help="the prior (default: the committed toy prior)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--coarse-cache", help="keep each picture's coarse stage here and reuse it (experiments on "
                        "the mesh stage; eval/coarse_cache.py)")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    over = config_overrides(args.config)
    prims = primitives()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, coarse_cache(args.coarse_cache) as cache:
        out_dir = Path(args.out or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, (colour, shape, az, el) in enumerate(sweep_pictures(args.seed, args.n)):
            if args.only and i not in args.only:
                continue
            with_alpha = i % 2 == 0
            name = f"{i:02d}_{colour}_{shape}"
            pic = write_picture(out_dir / f"{name}.{'png' if with_alpha else 'jpg'}",
                                render_picture(shape, colour, az, el, alpha=with_alpha))
            cfg = generate_config("draft", over | {"seed": args.seed, "coarse_model": {"model": args.model}},
                                  picture=True)
            cache.label = f"{name} az {az:.3f} el {el:.3f} prompt {args.prompt}"
            t0 = time.perf_counter()
            summary = run_generate(f"a {colour} {shape}" if args.prompt else "", out_dir / f"{name}.glb", cfg,
                                   device=args.device, preset="draft", preview=out_dir / f"{name}_preview.png",
                                   image=pic, elevation=el)
            row = {"picture": pic.name, "azimuth": round(az), "elevation": round(el),
                   "seconds": round(time.perf_counter() - t0, 1), **judge(out_dir / f"{name}.glb", prims),
                   **summary["reference"], "caption": summary.get("caption", ""),
                   "set_aside": summary.get("caption_set_aside"), "want": f"{colour} {shape}",
                   "stage_seconds": {k: round(v, 1) for k, v in summary["seconds"].items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    ok_s = sum(r["shape"] == r["want"].split()[1] for r in rows)
    ok_b = sum(r["shape_bbox"] == r["want"].split()[1] for r in rows)
    ok_c = sum(r["colour"] == r["want"].split()[0] for r in rows)
    print("\n| picture | az / el | s | caption | shape (by box) | colour | IoU | colour error | "
          "Chamfer % cube / sphere / cone / torus (by box) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, b = r["chamfer_pct"], r["chamfer_pct_bbox"]
        aside = r["set_aside"]
        caption = r["caption"] or (f"({aside['caption']}? {aside['margin']:.2f})" if aside else "-")
        print(f"| {r['picture']} | {r['azimuth']} / {r['elevation']} | {r['seconds']:.0f} | {caption} | "
              f"{r['shape']} ({r['shape_bbox']}) | {r['colour']} | {r['iou']:.3f} | {r['colour_error']:.3f} | "
              f"{d['cube']:.2f} / {d['sphere']:.2f} / {d['cone']:.2f} / {d['torus']:.2f} "
              f"({b['cube']:.2f} / {b['sphere']:.2f} / {b['cone']:.2f} / {b['torus']:.2f}) |")
    ious = [r["iou"] for r in rows]
    print(f"\nshape right {ok_s}/{len(rows)} ({ok_b} by box), colour right {ok_c}/{len(rows)}, "
          f"IoU min {min(ious):.3f} "
          f"mean {np.mean(ious):.3f}, max time {max(r['seconds'] for r in rows):.0f} s "
          f"({'with' if args.prompt else 'no'} prompt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
