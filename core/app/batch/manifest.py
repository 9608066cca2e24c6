"""``DIR/manifest.jsonl``: one record per finished job, appended as jobs end, so that nothing done is lost.

A record: ``key`` (the job's content, :attr:`.BatchJob.key`), ``index``, ``name`` (the results' base name),
``inputs``, ``status`` (``done`` or ``failed``), ``attempts``, ``seconds``, ``outputs`` (file names in ``DIR``),
``error``, ``progress`` (per stage: steps done of total, last loss), ``summary`` (the engine's) and ``worker``.
The last record of a key wins; :meth:`Manifest.compact` rewrites the file with one record per job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DONE, FAILED = "done", "failed"


class Manifest:
    """The manifest of an output folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "manifest.jsonl"
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that job is simply run again
                    continue
                if isinstance(rec, dict) and rec.get("key"):
                    self.records[rec["key"]] = rec

    def is_done(self, key: str) -> bool:
        """Whether the job ``key`` finished before and its output files are all still there."""
        rec = self.records.get(key)
        return bool(rec and rec.get("status") == DONE and rec.get("outputs")
                    and all((self.folder / name).is_file() for name in rec["outputs"]))

    def add(self, record: dict[str, Any]) -> None:
        """Append one finished job's record (flushed to disk before returning)."""
        self.records[record["key"]] = record
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def compact(self, order: list[str] | None = None) -> None:
        """Rewrite the file (atomically) with the last record of each job, in ``order`` of keys first."""
        keys = [k for k in (order or []) if k in self.records]
        keys += [k for k in self.records if k not in keys]
        tmp = self.path.with_name(".manifest.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for k in keys:
                fh.write(json.dumps(self.records[k], allow_nan=False, default=str) + "\n")
        os.replace(tmp, self.path)

    def finished(self) -> list[dict[str, Any]]:
        """The records of done jobs whose outputs are there, in job order."""
        recs = [r for k, r in self.records.items() if self.is_done(k)]
        return sorted(recs, key=lambda r: (r.get("index", 0), r.get("name", "")))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
