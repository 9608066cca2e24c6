"""Edit sweep with the toy prior: ``edit --preset draft`` of flat-coloured primitives towards other prompts.

For each edit it prints the Chamfer distance (% of the unit diagonal, as in ``sweep_toy_prior.py``) from the
input and from the result to the prompt's primitive, their ratio (below 1: the edit moved towards it), the
nearest primitive, the dominant colour and the time. The inputs sit at an odd scale and offset, as an artist's
object would; the edit must hand the result back in that frame.

    python scripts/sweep_edits.py [--edits sphere:a_blue_cube cube:a_red_sphere ...] [--seed 0] [--config JSON]
        [--out DIR] [--model DIR] [--threads 2] [--coarse-cache DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dreamsmith.core.jobs.edit import edit_config, run_edit
from dreamsmith.core.meshio import TexturedMesh, read_mesh, write_glb
from dreamsmith.eval import config_overrides
from dreamsmith.eval.coarse_cache import coarse_cache
from dreamsmith.eval.shapes import (
    TOY,
    dominant_colour,
    reference_primitives,
    shape_distance,
    shape_distances,
    source_mesh,
)
from dreamsmith.eval.toy_prior_data import SHAPES

EDITS = ["sphere:a blue cube", "sphere:a green cone", "cube:a red sphere", "cone:a yellow cube"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", nargs="+", default=EDITS, help="SHAPE:PROMPT (underscores read as spaces)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", help="overrides merged over the edit draft preset: JSON text or a JSON file")
    parser.add_argument("--out", help="keep the inputs, results and previews here")
    parser.add_argument("--model", default=str(TOY), help="the prior (default: the committed toy prior)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--coarse-cache", help="keep each edit's coarse stage here and reuse it (experiments on the "
                        "mesh stage; eval/coarse_cache.py)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    over = config_overrides(args.config)
    prims = reference_primitives()
    ratios = []
    print("| edit | target before -> after (ratio) | nearest | colour | s |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, coarse_cache(args.coarse_cache) as cache:
        out_dir = Path(args.out or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for spec in args.edits:
            shape, prompt = spec.split(":", 1)
            prompt = prompt.replace("_", " ")
            target = next((s for s in SHAPES if prompt.endswith(s)), None)
            if shape not in SHAPES or target is None:
                parser.error(f"{spec!r}: expected SHAPE:'a COLOUR SHAPE' with shapes from {', '.join(SHAPES)}")
            src = out_dir / f"{shape}.glb"
            write_glb(source_mesh(shape), src)
            v0, f0, *_ = read_mesh(src)
            before = shape_distance(v0, f0, prims[target], target)
            cfg = edit_config("draft", over | {"seed": args.seed, "coarse_model": {"model": args.model}})
            name = f"{shape}_to_{prompt.replace(' ', '_')}"
            cache.label = spec
            t0 = time.perf_counter()
            run_edit(src, prompt, out_dir / f"{name}.glb", cfg, device="cpu", preset="draft",
                     preview=out_dir / f"{name}.png")
            seconds = time.perf_counter() - t0
            v, f, uv, tex = read_mesh(out_dir / f"{name}.glb")
            dist = shape_distances(v, f, prims)
            colour, _ = dominant_colour(TexturedMesh(v, f, uv, None, tex))
            ratios.append(dist[target] / before)
            print(f"| {shape} -> {prompt} | {before:.2f} -> {dist[target]:.2f} ({ratios[-1]:.2f}) | "
                  f"{min(dist, key=dist.get)} | {colour} | {seconds:.0f} |", flush=True)
    print(f"\nmean ratio {np.mean(ratios):.3f}; moved towards the target in {sum(r < 1 for r in ratios)}/{len(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
