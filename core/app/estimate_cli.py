"""``python -m dreamsmith estimate JOB``: what a job would cost on this machine, and whether it would be refused.

Kept apart from :mod:`.estimate` (the cost model the jobs call) because it builds the job's config through the job
table.
"""

from __future__ import annotations

from typing import Any

from ..runtime.errors import ResourceError
from ..runtime.estimate import check_fits, device_name, duration_text, estimate_job, free_gib


def describe(command: str, preset: str, device: str = "auto", model: str | None = None,
             fine_model: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``python -m dreamsmith estimate`` prints: the estimate of a job, the device, its free memory, and the
    refusal the job would get ("" when it fits)."""
    from ..jobs import JOBS
    from ..jobs.io import merge_models
    from ..runtime.device import resolve_device

    kind = JOBS[command]
    over = dict(overrides or {})
    if kind.priors:
        over = merge_models(over, kind.priors, model, fine_model)
    cfg = kind.config(preset, over)
    dev = resolve_device(device)
    cost = estimate_job(command, cfg, dev.type)
    free = free_gib(dev)
    try:
        check_fits(cost, free, preset)
        problem = ""
    except ResourceError as exc:
        problem = str(exc)
    return {**cost.as_dict(), "text": cost.text(), "device_name": device_name(dev),
            "free_gib": None if free is None else round(free, 2), "problem": problem, "command": command,
            "preset": preset}


def add_estimate_parser(sub) -> None:
    """Add ``estimate JOB`` to the command line's sub-commands."""
    from ...protocol import DEVICE_NAMES, PRESET_NAMES
    from ..jobs import JOBS

    cmd = sub.add_parser("estimate", help="what a job would cost on this machine (time and peak memory), and "
                                          "whether it fits")
    cmd.add_argument("job", choices=list(JOBS), help="the job to estimate")
    cmd.add_argument("--preset", choices=PRESET_NAMES, default="draft", help="quality preset (default: draft)")
    cmd.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="compute device (default: auto)")
    cmd.add_argument("--model", help="the (coarse-stage) prior (default: the preset's)")
    cmd.add_argument("--fine-model", help="the mesh-stage prior (default: the preset's)")
    cmd.add_argument("--json", action="store_true", help="one JSON object instead of a line for people")


def run_estimate(args) -> int:
    """Print a parsed ``estimate`` command's answer; exit 0 (it fits) or 3 (it would be refused)."""
    import json

    info = describe(args.job, args.preset, args.device, args.model, args.fine_model)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{args.job} at {args.preset} on {info['device_name']}: {info['text']} ({info['basis']})")
        stages = ", ".join(f"{k} {duration_text(v)}" for k, v in info["stages"].items())
        print(f"  stages: {stages}")
        if info["problem"]:
            print(f"  refused: {info['problem']}")
    return 3 if info["problem"] else 0
