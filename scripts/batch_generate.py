"""Generate one object per line of a text file into a .blend (for pipeline TDs).

    blender --background --python scripts/batch_generate.py -- --prompts prompts.txt --out scene.blend \
        [--preset draft] [--seed 0] [--model ID_OR_FOLDER] [--python PATH] [--device cpu] [--spacing 2.5]
    python scripts/batch_generate.py --prompts prompts.txt --out scene.blend ...   (bpy installed as a module)

Blank lines and lines starting with ``#`` are skipped. Each prompt goes through ``bpy.ops.dreamsmith.generate``
(the installed extension, or this checkout when Blender runs as a module), so the engine runs in its worker
process exactly as from the sidebar; objects are placed along +X, ``--spacing`` apart. The .blend is written
(atomically) after every finished prompt, so an interruption keeps what was done. A prompt that fails is reported
and skipped; the exit code is 1 when any failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_generate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", required=True, help="text file, one prompt per line")
    parser.add_argument("--out", required=True, help="the .blend to write")
    parser.add_argument("--preset", default="draft", choices=("draft", "standard", "high"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="", help="coarse-stage prior (Hub id or folder); empty: the preference")
    parser.add_argument("--python", default="", help="interpreter that runs the engine; empty: the preference")
    parser.add_argument("--device", default="", choices=("", "auto", "cpu", "cuda", "mps"))
    parser.add_argument("--spacing", type=float, default=2.5, help="distance between objects along +X")
    parser.add_argument("--append", action="store_true", help="add to --out if it exists instead of a new scene")
    parser.add_argument("--config", default="", help="JSON object of engine config overrides (advanced)")
    return parser.parse_args(argv)


def read_prompts(path: Path) -> list[str]:
    """Non-blank, non-comment lines of ``path``, stripped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ensure_enabled(bpy) -> str:
    """Enable the Dreamsmith add-on if it is not yet; returns its module name."""
    import importlib.util

    import addon_utils

    for name in bpy.context.preferences.addons.keys():
        if name == "dreamsmith" or name.endswith(".dreamsmith"):
            return name
    candidates = [m.__name__ for m in addon_utils.modules() if m.__name__.split(".")[-1] == "dreamsmith"]
    if not candidates and importlib.util.find_spec("dreamsmith") is not None:
        candidates = ["dreamsmith"]  # this checkout, installed in the Python that runs bpy
    if not candidates:
        raise SystemExit("Dreamsmith is not installed in this Blender: build it with scripts/build_extension.py and "
                         "install the zip (blender --command extension install-file -r user_default ZIP).")
    addon_utils.enable(candidates[0], default_set=True)
    return candidates[0]


def save_blend(bpy, out: Path) -> None:
    """Save the open file as ``out``, through a temporary name."""
    tmp = out.with_name(f".{out.stem}.tmp.blend")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp), copy=True)
    os.replace(tmp, out)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    prompts_file, out = Path(args.prompts), Path(args.out).resolve()
    if not prompts_file.is_file():
        print(f"No prompts file at {prompts_file}; give a text file with one prompt per line.", file=sys.stderr)
        return 2
    if out.suffix.lower() != ".blend":
        print(f"--out {out} must end in .blend.", file=sys.stderr)
        return 2
    prompts = read_prompts(prompts_file)
    if not prompts:
        print(f"{prompts_file} has no prompts (blank lines and # comments are skipped).", file=sys.stderr)
        return 2
    import bpy

    if args.append and out.is_file():
        bpy.ops.wm.open_mainfile(filepath=str(out))
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    module = ensure_enabled(bpy)
    prefs = bpy.context.preferences.addons[module].preferences
    if args.python:
        prefs.python_path = args.python
    if args.device:
        prefs.device = args.device
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for i, prompt in enumerate(prompts):
        bpy.context.scene.cursor.location = (i * args.spacing, 0.0, 0.0)
        try:
            bpy.ops.dreamsmith.generate(prompt=prompt, preset=args.preset, seed=args.seed, model=args.model,
                                        config_json=args.config)
        except RuntimeError as exc:  # the operator's error report: the engine's message
            message = str(exc).removeprefix("Error: ").strip()
            print(f"[{i + 1}/{len(prompts)}] FAILED {prompt!r}: {message}", file=sys.stderr, flush=True)
            results.append({"prompt": prompt, "ok": False, "error": message})
            continue
        obj = bpy.context.view_layer.objects.active
        save_blend(bpy, out)
        print(f"[{i + 1}/{len(prompts)}] added {obj.name!r}; saved {out}", flush=True)
        results.append({"prompt": prompt, "ok": True, "object": obj.name})
    print("SUMMARY " + json.dumps(results), flush=True)
    return 0 if all(r["ok"] for r in results) else 1


def _script_args() -> list[str]:
    """Arguments after ``--`` when Blender runs the script, else the command line's own."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


if __name__ == "__main__":
    code = main(_script_args())
    if code:
        sys.exit(code)
