"""Generate one object per line of a text file into a .blend, or bring a finished engine batch into one (for
pipeline TDs).

    blender --background --python tools/batch_generate.py -- --prompts prompts.txt --out scene.blend \
        [--preset draft] [--seed 0] [--model ID_OR_FOLDER] [--python PATH] [--device cpu] [--spacing 2.5] \
        [--cluster local|auto|ray://HOST:PORT [--batch-dir DIR]]
    blender --background --python tools/batch_generate.py -- --from DIR --out scene.blend [--spacing 2.5]
    python tools/batch_generate.py ...   (bpy installed as a module)

``--prompts``: blank lines and lines starting with ``#`` are skipped. Each prompt goes through
``bpy.ops.dreamsmith.generate`` (the installed extension, or this checkout when Blender runs as a module), so the
engine runs in its worker process exactly as from the sidebar; objects are placed along +X, ``--spacing`` apart.
The .blend is written (atomically) after every finished prompt, so an interruption keeps what was done. A prompt
that fails is reported and skipped.

``--cluster``: the prompts go to the engine's batch runner instead (``python -m dreamsmith batch``, run by the
add-on's engine interpreter), which sends them to a Ray cluster; its results and manifest go to ``--batch-dir``
(default: a folder named after the .blend) and are then imported as with ``--from``. Running it again resumes.

``--from DIR``: the finished jobs of a batch folder (its ``manifest.jsonl``) become objects laid out on a grid,
``--spacing`` apart, each with its prompt, seed, preset and models recorded on it as for a sidebar result.

The exit code is 1 when any job failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch_generate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="text file, one prompt per line")
    source.add_argument("--from", dest="from_dir", help="a finished batch folder (python -m dreamsmith batch --out)")
    parser.add_argument("--cluster", default="", help="send the prompts to a Ray cluster: local, auto or "
                                                      "ray://HOST:PORT (the engine's batch runner)")
    parser.add_argument("--batch-dir", default="", help="with --cluster: the batch's results folder (default: "
                                                        "beside --out, named after it)")
    parser.add_argument("--out", required=True, help="the .blend to write")
    parser.add_argument("--preset", default="draft", choices=("draft", "fast", "standard", "high"))
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


def batch_manifest(module: str, folder: Path):
    """The batch folder's :class:`~dreamsmith.core.app.batch.manifest.Manifest` (a standard-library module of the
    engine: nothing heavy is imported into Blender)."""
    return importlib.import_module(f"{module}.core.app.batch.manifest").Manifest(folder)


def grid_place(i: int, n: int, spacing: float) -> tuple[float, float, float]:
    """Where the ``i``-th of ``n`` objects goes: rows of ceil(sqrt(n)) along +X, rows stepping along -Y."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return (i % cols) * spacing, -(i // cols) * spacing, 0.0


def import_batch(bpy, module: str, folder: Path, spacing: float) -> list[str]:
    """Import the finished jobs of ``folder`` on a grid; returns the new objects' names."""
    import_result = importlib.import_module(f"{module}.addon.scene_io").import_result
    done = batch_manifest(module, folder).finished()
    names = []
    for i, rec in enumerate(done):
        inputs, summary = rec.get("inputs", {}), rec.get("summary", {})
        models = summary.get("models") or {}
        props = {"prompt": inputs.get("prompt", ""), "negative_prompt": inputs.get("negative_prompt", ""),
                 "seed": int(inputs.get("seed", 0)), "preset": inputs.get("preset", "draft"),
                 "command": inputs.get("command", "generate"), "batch_job": rec.get("name", "")}
        props.update({f"{k}_model": v for k, v in models.items() if v})
        for key in ("image", "mesh"):
            if inputs.get(key):
                props[key] = str(inputs[key])
        glb = next(name for name in rec["outputs"] if name.endswith(".glb"))
        label = (inputs.get("prompt") or Path(str(inputs.get("image") or inputs.get("mesh") or glb)).stem)[:60]
        obj = import_result(folder / glb, name=label, location=grid_place(i, len(done), spacing), props=props)
        names.append(obj.name)
    return names


def run_on_cluster(bpy, module: str, args: argparse.Namespace, prompts_file: Path, folder: Path) -> int:
    """Run the prompts with the engine's batch runner on a Ray cluster (a child process, never a shell)."""
    interpreter = importlib.import_module(f"{module}.addon.preferences").interpreter
    bootstrap = importlib.import_module(f"{module}.addon.job").bootstrap
    prefs = bpy.context.preferences.addons[module].preferences
    root = Path(importlib.import_module(module).__file__).resolve().parent
    cmd = [args.python or interpreter(prefs), "-c", bootstrap("dreamsmith.__main__"), str(root), "batch",
           "--jobs", str(prompts_file), "--out", str(folder), "--cluster", args.cluster, "--preset", args.preset,
           "--seed", str(args.seed)]
    if args.model:
        cmd += ["--model", args.model]
    if args.device:
        cmd += ["--device", args.device]
    if args.config:
        cfg = folder / "config.json"
        folder.mkdir(parents=True, exist_ok=True)
        cfg.write_text(args.config, encoding="utf-8")
        cmd += ["--config", str(cfg)]
    print(f"Dreamsmith: running {prompts_file.name} on the cluster {args.cluster!r} into {folder}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    if out.suffix.lower() != ".blend":
        print(f"--out {out} must end in .blend.", file=sys.stderr)
        return 2
    if args.from_dir:
        folder = Path(args.from_dir).resolve()
        if not (folder / "manifest.jsonl").is_file():
            print(f"{folder} has no manifest.jsonl; give the --out folder of `python -m dreamsmith batch`.",
                  file=sys.stderr)
            return 2
        return from_folder(args, folder, out)
    prompts_file = Path(args.prompts)
    if not prompts_file.is_file():
        print(f"No prompts file at {prompts_file}; give a text file with one prompt per line.", file=sys.stderr)
        return 2
    prompts = read_prompts(prompts_file)
    if not prompts:
        print(f"{prompts_file} has no prompts (blank lines and # comments are skipped).", file=sys.stderr)
        return 2
    if args.cluster:
        return from_folder(args, Path(args.batch_dir or out.with_name(f"{out.stem}_batch")).resolve(), out,
                           prompts_file.resolve())
    import bpy

    open_scene(bpy, args, out)
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


def open_scene(bpy, args: argparse.Namespace, out: Path) -> str:
    """Open ``out`` (with ``--append``) or an empty scene, enable the add-on and apply the preferences given;
    returns the add-on's module name."""
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
    return module


def from_folder(args: argparse.Namespace, folder: Path, out: Path, prompts_file: Path | None = None) -> int:
    """Import a batch folder into ``out`` (after running ``prompts_file`` on the cluster into it, if given)."""
    import bpy

    module = open_scene(bpy, args, out)
    code = 0
    if prompts_file is not None:
        code = run_on_cluster(bpy, module, args, prompts_file, folder)
        if code == 2 or not (folder / "manifest.jsonl").is_file():
            print("The batch did not run (see the message above); nothing was imported.", file=sys.stderr)
            return 2
    names = import_batch(bpy, module, folder, args.spacing)
    save_blend(bpy, out)
    failed = [r for r in batch_manifest(module, folder).records.values() if r.get("status") != "done"]
    for r in failed:
        print(f"FAILED {r.get('name', '?')}: {r.get('error', '')}", file=sys.stderr, flush=True)
    print(f"added {len(names)} objects from {folder}; saved {out}", flush=True)
    print("SUMMARY " + json.dumps({"objects": names, "failed": [r.get("name") for r in failed]}), flush=True)
    return 1 if failed or code else 0


def _script_args() -> list[str]:
    """Arguments after ``--`` when Blender runs the script, else the command line's own."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


if __name__ == "__main__":
    code = main(_script_args())
    if code:
        sys.exit(code)
