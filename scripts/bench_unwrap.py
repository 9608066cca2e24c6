"""Time xatlas's unwrap of a dense closed mesh with the bake's options and variants of them.

    python scripts/bench_unwrap.py [--resolution 170] [--texture 1024]

The mesh is the box-and-ball of ``synth_objects`` marched at ``--resolution`` (170: about 100k faces, a standard
result's size). Prints seconds, chart count and atlas utilisation for each variant.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xatlas

from dreamsmith.eval.synth_objects import ground_truth_mesh

VARIANTS = {"bake's options": {}, "no chart rotation": {"rotate_charts": False}, "block-aligned packing":
            {"blockAlign": True}, "charts at most 5 % of the area": {"max_chart_area": 0.05}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=170)
    parser.add_argument("--texture", type=int, default=1024)
    args = parser.parse_args()
    v, f = ground_truth_mesh("box_ball", resolution=args.resolution)[:2]
    v, f = np.asarray(v, np.float32), np.asarray(f, np.uint32)
    print(f"{len(f)} faces, atlas {args.texture}\n\n| variant | seconds | charts | utilisation |\n|---|---|---|---|")
    for name, options in VARIANTS.items():
        atlas = xatlas.Atlas()
        atlas.add_mesh(v, f)
        chart, pack = xatlas.ChartOptions(), xatlas.PackOptions()
        chart.max_iterations = 1
        pack.resolution, pack.padding, pack.bilinear, pack.rotate_charts = args.texture, 4, True, True
        for key, value in options.items():
            setattr(chart if hasattr(chart, key) else pack, key, value)
        t0 = time.perf_counter()
        atlas.generate(chart, pack)
        print(f"| {name} | {time.perf_counter() - t0:.1f} | {atlas.chart_count} | {atlas.utilization:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
