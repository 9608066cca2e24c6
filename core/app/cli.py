"""``python -m dreamsmith``: the engine without Blender.

Exit codes: 0 done, 2 a problem the user can fix (message on stderr, nothing written),
130 interrupted; ``models`` (the model manager, :mod:`.model_store`): 0 ok, 2 bad input, 1 failure; ``batch``
(:mod:`.batch.command`): 0 all done, 1 some failed, 2 a bad command, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ...protocol import DEVICE_NAMES, PRESET_NAMES, Job, job_inputs
from ..runtime.errors import user_error_exit
from ..runtime.events import ProgressEvent
from ..settings.config import read_config_file


class ProgressBar:
    """Shows progress events as one tqdm bar per stage (stage, step/total, loss, ETA)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, ev: ProgressEvent) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if ev.total <= 0 and ev.message:  # a note, not a stage with steps (the job's estimate)
            tqdm.write(f"{ev.stage}: {ev.message}", file=sys.stderr)
            return
        if ev.stage != self.stage:
            self.close()
            self.stage = ev.stage
            self.bar = tqdm(total=ev.total, desc=f"{ev.stage:>7}", unit="step", dynamic_ncols=True, file=sys.stderr)
        self.bar.n = ev.step
        if ev.loss is not None:
            self.bar.set_postfix(loss=f"{ev.loss:.4f}", refresh=False)
        elif ev.message:
            self.bar.set_postfix_str(ev.message, refresh=False)
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
    p.add_argument("--config", help="JSON file with config overrides merged over the preset (default: none; keys: "
                                    "docs/config.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="run even when the estimate says the job cannot fit (GPU memory, or over 6 hours)")


def _input_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options of ``command``'s inputs, made from their one declaration (``protocol.Job``'s input fields: the
    flag, whether the job needs it, and the docstring's words as the help)."""
    from ..settings.config_docs import attribute_words

    for name, spec in job_inputs(command).items():
        if not spec.flag:
            continue
        needed = command in spec.needed_by
        text = attribute_words(Job, name)
        if not needed and "default:" not in text:
            text += " (default: none)"
        p.add_argument(spec.flag, dest=name, required=needed, type=float if spec.number else str,
                       default=None if spec.number else Job.__dataclass_fields__[name].default, help=text)


def _model_options(p: argparse.ArgumentParser, two_stages: bool) -> None:
    if two_stages:
        p.add_argument("--model", help="coarse-stage prior: Hugging Face id or local diffusers folder (default: the "
                                       "preset's, see `models list`)")
        p.add_argument("--fine-model", help="mesh-stage prior (default: the preset's; with --model only: the same)")
    else:
        p.add_argument("--model", help="the prior: Hugging Face id or local diffusers folder (default: the preset's)")
    p.add_argument("--allow-network", action="store_true",
                   help="download models that are not cached locally (default: offline, local folders and the cache)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all sub-commands, one per job in :data:`~.jobs.JOBS`."""
    from ..jobs import JOBS

    parser = argparse.ArgumentParser(prog="python -m dreamsmith", description="Dreamsmith engine: text/images to 3D.")
    sub = parser.add_subparsers(dest="command", required=True)
    for kind in JOBS.values():
        cmd = sub.add_parser(kind.name, help=kind.help)
        _input_options(cmd, kind.name)
        if kind.priors:
            _model_options(cmd, "coarse_model" in kind.priors)
        cmd.add_argument("--preview", help="also write a preview PNG (four shaded views) here (default: none)")
        if kind.name not in ("retexture", "transfer"):  # these make a new surface: face budget, levels of detail
            cmd.add_argument("--faces", type=int, default=0,
                             help="face budget: at most this many triangles, decimated from the full surface, with "
                                  "a normal map of it (default: 0, the full surface)")
            cmd.add_argument("--lods", type=int, default=1,
                             help="levels of detail in the GLB: NAME_LOD0 at the budget, each next a quarter of the "
                                  "faces (default: 1)")
        _common(cmd)
    from ..priors.model_store import add_models_parser
    from .batch.command import add_batch_parser
    from .estimate_cli import add_estimate_parser

    add_batch_parser(sub)
    add_models_parser(sub)
    add_estimate_parser(sub)
    return parser


def run(args: argparse.Namespace) -> dict:
    """Run one parsed command; returns its summary."""
    from ..jobs import JOBS
    from ..jobs.io import merge_models

    kind = JOBS[args.command]
    bar = ProgressBar(enabled=not args.quiet)
    try:
        over = read_config_file(args.config) | {"seed": args.seed}
        if getattr(args, "faces", 0) or getattr(args, "lods", 1) != 1:
            from ..settings.config import merge

            over = merge(over, {"bake": {"faces": args.faces, "lods": args.lods}})
        if kind.priors:
            over = merge_models(over, kind.priors, args.model, getattr(args, "fine_model", None),
                                args.allow_network)
        inputs = {name: getattr(args, name, None) for name in kind.inputs}
        return kind.run(inputs, args.out, kind.config(args.preset, over, inputs), device=args.device, callback=bar,
                        preset=args.preset, preview=args.preview, force=args.force)
    finally:
        bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"]:  # the model manager: without importing the jobs (and torch)
        from ..priors.model_store import add_models_parser, run_models

        models = argparse.ArgumentParser(prog="python -m dreamsmith")
        add_models_parser(models.add_subparsers(dest="command", required=True))
        return run_models(models.parse_args(argv))
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        from .batch.command import main as batch_main

        return batch_main(args)
    if args.command == "estimate":
        from .estimate_cli import run_estimate

        try:
            return run_estimate(args)
        except Exception as exc:
            return user_error_exit(exc)
    try:
        summary = run(args)
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:
        return user_error_exit(exc)
    shown = ("out", "faces", "vertices", "seconds", "estimate", "image", "caption", "caption_set_aside", "reference")
    print(json.dumps({k: summary[k] for k in shown if k in summary}))
    return 0
