"""Time the job's bake after the surface extraction, with the unwrap in one piece and in pieces, side by side.

    python scripts/bench_bake.py [--preset standard] [--resolution 170] [--pieces 0 4000] [--device cpu]

What a job does once its surface is extracted (``finish.levels.bake_levels``: the face budget, the unwrap, the
colour field baked into the texture, normal maps and levels of detail as the preset says), on the box-and-ball of
``synth_objects`` marched at ``--resolution`` (170: about 100k faces, a standard result's size), with the preset's
coarse field (random weights: a hash-grid query costs the same whatever they are) as the colour. Prints seconds per
``bake.unwrap_piece_faces`` and the ratio to the first. As in a job, a mesh of at most ``bake.unwrap_split_faces``
faces is unwrapped whole whatever ``--pieces`` says (``scripts/bench_unwrap.py`` cuts any mesh).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dreamsmith.core.finish.levels import bake_levels
from dreamsmith.core.jobs.generate import generate_config
from dreamsmith.core.scene.field import NeRFField
from dreamsmith.eval.synth_objects import ground_truth_mesh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--resolution", type=int, default=170)
    parser.add_argument("--pieces", type=int, nargs="+", default=[0, 4000],
                        help="unwrap_piece_faces values to time, the first being the baseline (0: one piece)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = generate_config(args.preset, {})
    torch.manual_seed(0)
    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = NeRFField(cfg.coarse.field, bbox).to(args.device)
    v, f = ground_truth_mesh("box_ball", resolution=args.resolution)[:2]
    v, f = np.asarray(v, np.float32), np.asarray(f, np.int64)

    def colour(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return field.albedo(points).clamp(0, 1)

    print(f"{args.preset}: {len(f)} faces, texture {cfg.bake.texture_size}, face budget {cfg.bake.faces or 'none'}, "
          f"{cfg.bake.lods} level(s), {args.device}\n")
    print("| unwrap_piece_faces | bake s | ratio to the first |\n|---|---|---|")
    base = None
    for piece in args.pieces:
        cfg.bake.unwrap_piece_faces = piece
        t0 = time.perf_counter()
        bake_levels(v, f, colour, cfg.bake, "bench", device=args.device)
        seconds = time.perf_counter() - t0
        base = base or seconds
        print(f"| {piece or 'one piece'} | {seconds:.1f} | {seconds / base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
