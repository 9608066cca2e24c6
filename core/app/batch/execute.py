"""Running one batch job where it lands (this process, or a Ray worker): inputs from bytes, results as bytes.

A :class:`JobRunner` lives as long as its worker process and keeps the priors it loaded (:func:`keep_priors`), so
the next job on the same worker starts without reading the weights again. A job's files are written into a private
temporary folder and read back; nothing is written where the driver writes.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from ...priors.models import keep_priors
from ...runtime.errors import as_user_error
from ...runtime.events import ProgressEvent


class StageLog:
    """The progress callback of a batch job: per stage, the last step of the total and the last loss."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}

    def __call__(self, ev: ProgressEvent) -> None:
        rec = self.stages.setdefault(ev.stage, {"step": 0, "total": int(ev.total)})
        rec["step"], rec["total"] = int(ev.step), int(ev.total)
        if ev.loss is not None and ev.loss == ev.loss:
            rec["loss"] = round(float(ev.loss), 6)


def _materialise(files: dict[str, dict[str, Any]], folder: Path) -> dict[str, str]:
    """Write the job's input files into ``folder``; returns the path of each field."""
    paths = {}
    for field, item in files.items():
        sub = folder / field
        sub.mkdir()
        (sub / item["name"]).write_bytes(item["data"])
        for name, data in item.get("extra", {}).items():
            target = (sub / name).resolve()
            if sub.resolve() in target.parents:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        paths[field] = str(sub / item["name"])
    return paths


class JobRunner:
    """Runs batch jobs one at a time; keeps priors loaded between them."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._keep = keep_priors()
        self._keep.__enter__()

    def close(self) -> None:
        """Drop the kept priors."""
        self._keep.__exit__(None, None, None)

    def run(self, spec: dict[str, Any], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Run one job; never raises for the job's own failure (a user error or a bug: ``status`` ``failed``).

        Returns:
            ``{"status", "files": {suffix: bytes}, "summary", "error", "kind", "progress", "seconds", "worker"}``;
            ``files`` holds ``".glb"`` and ``".png"`` (the preview) when done.
        """
        from ..worker import parse_job, run_engine

        t0 = time.perf_counter()
        log = StageLog()
        result: dict[str, Any] = {"status": "failed", "files": {}, "summary": {}, "error": "", "kind": "",
                                  "worker": f"{socket.gethostname()}:{os.getpid()}"}
        with tempfile.TemporaryDirectory(prefix="dreamsmith-batch-") as tmp:
            folder = Path(tmp)
            try:
                data = dict(spec, **_materialise(files, folder), out=str(folder / "result.glb"),
                            preview=str(folder / "preview.png"))
                data.setdefault("device", self.device)
                job = parse_job(data)
                summary = run_engine(job, log)
                preview = folder / "preview.png"  # job.preview, as set above
                result["files"] = {".glb": Path(job.out).read_bytes(), ".png": preview.read_bytes()}
                result["summary"] = {k: v for k, v in summary.items() if k != "out"}
                result["status"] = "done"
            except Exception as exc:  # noqa: BLE001 - the job fails alone; the worker goes on
                error = as_user_error(exc)
                result["kind"] = type(error or exc).__name__
                if error is not None:
                    result["error"] = str(error)
                else:
                    result["error"] = f"Internal error ({type(exc).__name__}: {exc}); this is a bug, please report it."
                    result["traceback"] = traceback.format_exc(limit=8)
        result["progress"] = log.stages
        result["seconds"] = round(time.perf_counter() - t0, 2)
        return result
