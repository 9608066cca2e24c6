"""Jobs per hour of a batch: one after another in one process against a local Ray cluster, side by side.

    python scripts/bench_batch.py [--jobs 6] [--cpus 2] [--steps 60] [--model FOLDER] [--out DIR]

The same jobs (the toy prior's "a {colour} {shape}" prompts, draft preset with ``--steps`` coarse steps) run
twice from an empty folder: ``python -m dreamsmith batch`` without ``--cluster`` (one process, torch using every
core), then with a local Ray cluster of ``--cpus`` CPUs (one actor per CPU, one torch thread each). Prints the
seconds and jobs per hour of each and their ratio, measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"a {c} {s}" for s in ("cube", "sphere", "cone", "torus") for c in ("red", "green", "blue", "yellow")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (one job each)")
    parser.add_argument("--steps", type=int, default=60, help="coarse steps of each job (the draft preset has 400)")
    parser.add_argument("--model", default=str(ROOT / "assets" / "demo_prior"))
    parser.add_argument("--out", help="keep the two batch folders here")
    args = parser.parse_args(argv)

    import ray

    from dreamsmith.core.app.batch.command import run_batch

    work = Path(args.out or tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    jobs = work / "jobs.jsonl"
    config = {"coarse": {"steps": args.steps}, "mesh": {"steps": max(1, args.steps // 4)}}
    jobs.write_text("".join(json.dumps({"prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "model": args.model,
                                        "config": config}) + "\n" for i in range(args.jobs)))
    rows = {}
    for name in ("one process", f"Ray, {args.cpus} CPUs"):
        out = work / name.split(",")[0].replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        cluster = None
        if name.startswith("Ray"):
            ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
            cluster = "local"
        t0 = time.perf_counter()
        counts = run_batch(jobs, out, cluster=cluster, cpus_per_job=1, show=False)
        seconds = time.perf_counter() - t0
        if cluster:
            ray.shutdown()
        if counts["done"] != args.jobs:
            print(f"{name}: only {counts['done']} of {args.jobs} jobs done: {counts}", file=sys.stderr)
            return 1
        rows[name] = seconds
        print(f"{name:>16}: {args.jobs} jobs in {seconds:7.1f} s = {3600 * args.jobs / seconds:6.1f} jobs/hour",
              flush=True)
    base, ray_s = rows.values()
    print(f"Ray / one process: {base / ray_s:.2f}x the jobs per hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
