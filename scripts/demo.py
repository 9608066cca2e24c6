"""``make demo``: the main job on the embedded default.

Runs ``generate`` with the offline toy prior (assets/demo_prior) on the CPU at the draft preset, then puts
the result into a .blend with Blender as a module:
    demo_out/a_red_cube.glb, demo_out/a_red_cube.png (preview), demo_out/a_red_cube.blend
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOY_PRIOR = REPO / "assets" / "demo_prior"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--prompt", default="a red cube")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (TOY_PRIOR / "model_index.json").is_file():
        print(f"The toy prior is missing at {TOY_PRIOR}; train it with scripts/train_toy_prior.py.", file=sys.stderr)
        return 2
    from dreamsmith.core.app.cli import main as cli_main

    out = Path(args.out)
    stem = args.prompt.strip().replace(" ", "_")
    glb, png, blend = out / f"{stem}.glb", out / f"{stem}.png", out / f"{stem}.blend"
    t0 = time.perf_counter()
    rc = cli_main(["generate", "--prompt", args.prompt, "--preset", "draft",  # the draft default: the demo prior
                   "--device", "cpu", "--seed", str(args.seed), "--out", str(glb), "--preview", str(png)])
    if rc != 0:
        return rc
    print(f"generate took {time.perf_counter() - t0:.0f} s")
    if importlib.util.find_spec("bpy") is None:
        print("bpy is not installed: skipping the .blend (pip install bpy to get it)")
    else:
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "glb_to_blend.py"), str(glb), str(blend)])
        if proc.returncode != 0:
            return proc.returncode
    print(f"wrote {glb}, {png}" + (f", {blend}" if blend.exists() else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
