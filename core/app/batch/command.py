"""``python -m dreamsmith batch``: the jobs of a file, here one after another or on a Ray cluster; results and
``manifest.jsonl`` in one folder; a rerun skips what is done and retries what failed.

Exit codes: 0 every job done, 1 some failed (the manifest says why), 2 a problem with the command itself (nothing
run), 130 interrupted (what finished is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ....protocol import DEVICE_NAMES, PRESET_NAMES
from ...runtime.errors import InputError
from .jobs_file import BatchJob, read_jobs
from .manifest import DONE, FAILED, Manifest, write_atomic


class LocalRunner:
    """The jobs one after another in this process (no Ray), priors kept loaded between them."""

    def __init__(self, device: str) -> None:
        from .execute import JobRunner

        self.runner = JobRunner(device)

    def run(self, jobs: list[BatchJob]):
        for job in jobs:
            job.attempts += 1
            yield "start", job, {"worker": os.getpid()}
            yield "end", job, self.runner.run(job.spec, job.files)

    def close(self) -> None:
        self.runner.close()


class Progress:
    """The terminal's view of the batch: one bar (jobs done of all, ETA) with done/failed/running, a line per job."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.done = self.failed = self.running = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="batch", unit="job", dynamic_ncols=True, file=sys.stderr)

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)

    def update(self, event: str, job: BatchJob, info: dict[str, Any]) -> None:
        if event == "start":
            self.running += 1
        elif event == "lost":
            self.running -= 1
            self.say(f"[retry] {job.stem}: {info['error']}; running it again (attempt {job.attempts + 1})")
        elif event == "end":
            self.running -= 1
            ok = info.get("status") == DONE
            self.done += ok
            self.failed += not ok
            what = f"{info.get('seconds', 0):.0f} s" if ok else info.get("error", "")
            self.say(f"[{'done' if ok else 'failed'}] {job.stem}: {what}")
            if self.bar is not None:
                self.bar.update(1)
        if self.bar is not None:
            self.bar.set_postfix(done=self.done, failed=self.failed, running=self.running)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _record(job: BatchJob, result: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    return {"key": job.key, "index": job.index, "line": job.line, "name": job.stem, "inputs": job.inputs(),
            "status": result.get("status", FAILED), "attempts": job.attempts, "seconds": result.get("seconds", 0.0),
            "outputs": outputs, "error": result.get("error", ""), "kind": result.get("kind", ""),
            "progress": result.get("progress", {}), "summary": result.get("summary", {}),
            "worker": result.get("worker", ""), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _keep(out: Path, job: BatchJob, result: dict[str, Any]) -> list[str]:
    """Write a done job's files into ``out`` (each atomically); returns their names."""
    names = []
    for suffix, data in sorted(result.get("files", {}).items()):
        name = job.stem + suffix
        write_atomic(out / name, data)
        names.append(name)
    return names


def run_batch(jobs_file: str | os.PathLike, out_dir: str | os.PathLike, cluster: str | None = None,
              cpus_per_job: float = 1.0, gpus_per_job: float | None = None, retries: int = 2,
              defaults: dict[str, Any] | None = None, device: str = "auto", show: bool = True,
              on_start: Callable[[BatchJob, int], None] | None = None) -> dict[str, Any]:
    """Run the jobs of ``jobs_file`` into ``out_dir``; returns the counts (``jobs``, ``skipped``, ``done``,
    ``failed``, ``interrupted``, ``seconds``). See :func:`~.jobs_file.read_jobs` and :class:`~.ray_pool.RayPool`.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder for the results.")
    if retries < 0 or cpus_per_job < 0 or (gpus_per_job is not None and gpus_per_job < 0):
        raise InputError("--retries, --cpus-per-job and --gpus-per-job cannot be negative.")
    jobs = read_jobs(Path(jobs_file), defaults)
    manifest = Manifest(out)
    todo = [j for j in jobs if not manifest.is_done(j.key)]
    counts: dict[str, Any] = {"jobs": len(jobs), "skipped": len(jobs) - len(todo), "done": 0, "failed": 0,
                              "interrupted": False, "out": str(out)}
    for job in (j for j in todo if j.error):  # a line that cannot run fails alone, before anything starts
        manifest.add(_record(job, {"status": FAILED, "error": job.error, "kind": "InputError"}, []))
        counts["failed"] += 1
    runnable = [j for j in todo if not j.error]
    progress = Progress(len(runnable), show)
    if counts["skipped"]:
        progress.say(f"{counts['skipped']} of {len(jobs)} jobs are done already (in {manifest.path}); skipping them")
    backend: Any = None
    try:
        if runnable:
            if cluster:
                from .ray_pool import RayPool

                backend = RayPool(cluster, cpus_per_job, gpus_per_job, retries, device, on_start)
            else:
                backend = LocalRunner(device)
            out.mkdir(parents=True, exist_ok=True)
            for event, job, info in backend.run(runnable):
                if event == "end":  # in the manifest before the terminal says so
                    ok = info.get("status") == DONE
                    manifest.add(_record(job, info, _keep(out, job, info) if ok else []))
                    counts["done" if ok else "failed"] += 1
                progress.update(event, job, info)
    except KeyboardInterrupt:
        counts["interrupted"] = True
        progress.close()
        print("interrupted: the jobs that finished are kept; run the same command again to go on", file=sys.stderr)
    finally:
        progress.close()
        if backend is not None:
            backend.close()
        if manifest.records:
            manifest.compact([j.key for j in jobs])
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    return counts


def add_batch_parser(sub) -> None:
    """The ``batch`` sub-command."""
    p = sub.add_parser("batch", help="run many jobs from a file, here or on a Ray cluster (reruns resume)",
                       description="Run the jobs of a file: one prompt a line (generate jobs), or one worker job "
                                   "(JSON) a line. Results and manifest.jsonl go into --out; a rerun skips what is "
                                   "done and retries what failed.")
    p.add_argument("--jobs", required=True, help="text file (one prompt a line) or JSON-lines file (one job a line)")
    p.add_argument("--out", required=True, help="folder for the results and manifest.jsonl")
    p.add_argument("--cluster", help="run on Ray: local, auto (the cluster of `ray start`) or ray://HOST:PORT; "
                                     "without it the jobs run one after another here (default: here)")
    p.add_argument("--gpus-per-job", type=float, help="GPUs of one job on Ray (default: 1 when the cluster has GPUs)")
    p.add_argument("--cpus-per-job", type=float, default=1.0, help="CPUs of one job on Ray (default: 1)")
    p.add_argument("--retries", type=int, default=2, help="times a lost worker's job is run again (default: 2)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="draft",
                   help="preset of jobs that name none (default: draft)")
    p.add_argument("--model", help="coarse-stage prior of jobs that name none (Hub id or folder; default: the "
                                    "preset's)")
    p.add_argument("--fine-model", help="mesh-stage prior of jobs that name none (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of jobs that name none (default: 0)")
    p.add_argument("--config", help="JSON file of config overrides for jobs that give none (default: none)")
    p.add_argument("--device", choices=DEVICE_NAMES, default="auto", help="compute device (default: auto)")
    p.add_argument("--allow-network", action="store_true", help="download models that are not cached locally")
    p.add_argument("--quiet", action="store_true", help="no progress on the terminal")


def main(args: argparse.Namespace) -> int:
    """Run the parsed ``batch`` command; returns the exit code."""
    defaults: dict[str, Any] = {"preset": args.preset, "seed": args.seed}
    for key in ("model", "fine_model"):
        if getattr(args, key):
            defaults[key] = getattr(args, key)
    if args.allow_network:
        defaults["allow_network"] = True
    from ...runtime.errors import user_error_exit
    from ...settings.config import read_config_file

    try:
        if args.config:
            defaults["config"] = read_config_file(args.config)
        counts = run_batch(args.jobs, args.out, args.cluster, args.cpus_per_job, args.gpus_per_job, args.retries,
                           defaults, args.device, show=not args.quiet)
    except Exception as exc:
        return user_error_exit(exc)
    print(json.dumps(counts))
    if counts["interrupted"]:
        return 130
    return 1 if counts["failed"] else 0
