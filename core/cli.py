"""``python -m dreamsmith``: the engine without Blender.

Exit codes: 0 done, 2 a problem the user can fix (message on stderr, nothing written),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ..protocol import DEVICE_NAMES, PRESET_NAMES
from .errors import DreamsmithError
from .events import ProgressEvent


class ProgressBar:
    """Shows progress events as one tqdm bar per stage (stage, step/total, loss, ETA)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar = None

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if ev.stage != self.stage:
            self.close()
            self.stage = ev.stage
            self.bar = tqdm(total=ev.total, desc=f"{ev.stage:>7}", unit="step", dynamic_ncols=True, file=sys.stderr)
        self.bar.n = ev.step
        if ev.loss is not None:
            self.bar.set_postfix(loss=f"{ev.loss:.4f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESET_NAMES, default="draft", help="quality preset (default: draft)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="compute device (default: auto)")
    p.add_argument("--out", required=True, help="output file (.glb, or .obj with .mtl and .png beside it)")
    p.add_argument("--config", help="JSON file with config overrides merged over the preset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m dreamsmith", description="Dreamsmith engine: text/images to 3D.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconstruct", help="fit a textured mesh to posed RGBA images (transforms.json)")
    rec.add_argument("--images", required=True, help="folder with transforms.json or transforms_train.json")
    rec.add_argument("--preview", help="also write a preview PNG (four shaded views) here")
    _common(rec)
    gen = sub.add_parser("generate", help="make a textured mesh from a text prompt (score distillation)")
    gen.add_argument("--prompt", required=True, help="what to make, e.g. 'a red cube'")
    gen.add_argument("--negative", default="", help="what to avoid")
    gen.add_argument("--model", help="coarse-stage prior: Hugging Face id or local diffusers folder")
    gen.add_argument("--fine-model", help="mesh-stage prior (default: the preset's; with --model only: the same)")
    gen.add_argument("--allow-network", action="store_true", help="download models that are not cached locally")
    gen.add_argument("--preview", help="also write a preview PNG (four shaded views) here")
    gen.add_argument("--save-state", help="also save the engine state (.safetensors) for later edits")
    _common(gen)
    for name, text in (("retexture", "paint a new texture on a mesh from a prompt (its geometry is kept)"),
                       ("edit", "change a mesh's shape and texture towards a prompt")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--mesh", required=True, help="the mesh to start from (.glb, .gltf or .obj)")
        cmd.add_argument("--prompt", required=True, help="what it should become, e.g. 'a green cube'")
        cmd.add_argument("--negative", default="", help="what to avoid")
        if name == "edit":
            cmd.add_argument("--model", help="coarse-stage prior: Hugging Face id or local diffusers folder")
            cmd.add_argument("--fine-model", help="mesh-stage prior (default: the preset's; with --model only: the "
                                                  "same)")
        else:
            cmd.add_argument("--model", help="the prior: Hugging Face id or local diffusers folder")
        cmd.add_argument("--allow-network", action="store_true", help="download models that are not cached locally")
        cmd.add_argument("--preview", help="also write a preview PNG (four shaded views) here")
        if name == "edit":
            cmd.add_argument("--state", help="a generate's saved engine state (--save-state) to fine-tune instead")
        _common(cmd)
    return parser


def _overrides(path: str | None) -> dict:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise DreamsmithError(f"Cannot read the config file {path!r}: {exc}") from None
    if not isinstance(data, dict):
        raise DreamsmithError(f"The config file {path!r} must hold a JSON object.")
    return data


def run(args: argparse.Namespace) -> dict:
    """Run one parsed command; returns its summary."""
    bar = ProgressBar(enabled=not args.quiet)
    try:
        if args.command == "reconstruct":
            from .pipeline import reconstruct_config, run_reconstruct

            cfg = reconstruct_config(args.preset, _overrides(args.config) | {"seed": args.seed})
            return run_reconstruct(args.images, args.out, cfg, device=args.device, callback=bar, preset=args.preset,
                                   preview=args.preview)
        if args.command == "generate":
            from .generate import generate_config, model_overrides, run_generate

            over = model_overrides(_overrides(args.config) | {"seed": args.seed}, args.model, args.fine_model,
                                   args.allow_network)
            cfg = generate_config(args.preset, over)
            return run_generate(args.prompt, args.out, cfg, negative_prompt=args.negative, device=args.device,
                                callback=bar, preset=args.preset, preview=args.preview, state_out=args.save_state)
        if args.command in ("retexture", "edit"):
            from .edit import edit_config, run_edit
            from .generate import model_overrides
            from .retexture import prior_overrides, retexture_config, run_retexture

            over = _overrides(args.config) | {"seed": args.seed}
            if args.command == "retexture":
                over, make, job = prior_overrides(over, args.model, args.allow_network), retexture_config, run_retexture
            else:
                over = model_overrides(over, args.model, args.fine_model, args.allow_network)
                make, job = edit_config, run_edit
            extra = {"state": args.state} if args.command == "edit" else {}
            return job(args.mesh, args.prompt, args.out, make(args.preset, over), negative_prompt=args.negative,
                       device=args.device, callback=bar, preset=args.preset, preview=args.preview, **extra)
        raise DreamsmithError(f"Unknown command {args.command!r}.")
    finally:
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except DreamsmithError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    print(json.dumps({k: summary[k] for k in ("out", "faces", "vertices", "seconds") if k in summary}))
    return 0
