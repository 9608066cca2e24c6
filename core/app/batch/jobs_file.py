"""Reading a batch's jobs file: one prompt a line, or one worker job (JSON) a line; inputs read into bytes.

A job's input files (``mesh``, ``target``, ``image``, ``state``: ``protocol.Job``'s file inputs) are read here, by
the driver, and travel with the job, so that workers on other machines need no shared disk. Paths are relative to
the jobs file's folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ....protocol import job_inputs
from ...runtime.errors import InputError

#: The job fields that name input files (read by the driver, sent as bytes).
FILE_FIELDS = tuple(name for name, spec in job_inputs().items() if spec.file)
#: Job fields the batch sets itself.
DRIVER_FIELDS = ("out", "preview", "state_out", "watch_stdin", "cache_dir")
#: What the manifest records of a job: its command, inputs and settings.
RECORDED = ("command", *(name for name in job_inputs() if name not in DRIVER_FIELDS), "preset", "seed", "model",
            "fine_model", "config")
#: Largest input file sent with a job.
MAX_INPUT_BYTES = 512 * 1024 * 1024


@dataclass
class BatchJob:
    """One job of a batch.

    Attributes:
        index: Its line's place among the jobs (0-based).
        line: The line number in the jobs file (1-based), for messages.
        spec: The worker's job (:class:`dreamsmith.protocol.Job` fields) with input paths as given.
        files: Input files by field: ``{"mesh": {"name": "chair.glb", "data": b"...", "extra": {...}}}``.
        error: Why the job cannot run (an input that cannot be read, a bad line); it then fails alone.
        key: Identifies the job's content (spec and input bytes): a rerun skips a job whose key is done.
        attempts: Runs started so far (a lost worker's job is retried).
    """

    index: int
    line: int
    spec: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    key: str = ""
    attempts: int = 0

    @property
    def stem(self) -> str:
        """The base name of the job's results in the output folder."""
        words = self.spec.get("prompt") or Path(self.spec.get("image") or self.spec.get("mesh") or "job").stem
        slug = re.sub(r"[^A-Za-z0-9]+", "_", str(words)).strip("_").lower()[:40] or "job"
        return f"{self.index:04d}_{self.spec.get('command', 'generate')}_{slug}"

    def inputs(self) -> dict[str, Any]:
        """What the manifest records of the job's inputs (no bytes)."""
        return {k: self.spec[k] for k in RECORDED if self.spec.get(k) not in (None, "", {})}


def _companions(path: Path) -> dict[str, bytes]:
    """Files a mesh refers to beside itself: an OBJ's material libraries and their textures, a .gltf's buffers and
    images. Missing ones are skipped (the reader then says what it misses)."""
    names: list[str] = []
    try:
        if path.suffix.lower() == ".obj":
            for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if ln.startswith("mtllib "):
                    names.append(ln[7:].strip())
            for mtl in list(names):
                mtl_path = path.parent / mtl
                if mtl_path.is_file():
                    for ln in mtl_path.read_text(encoding="utf-8", errors="replace").splitlines():
                        parts = ln.strip().split()
                        if parts and parts[0].lower().startswith("map_") and len(parts) > 1:
                            names.append(parts[-1])
        elif path.suffix.lower() == ".gltf":
            data = json.loads(path.read_text(encoding="utf-8"))
            for item in data.get("buffers", []) + data.get("images", []):
                uri = item.get("uri", "")
                if uri and not uri.startswith("data:"):
                    names.append(uri)
    except (OSError, ValueError):
        return {}
    out = {}
    for name in names:
        p = (path.parent / name).resolve()
        if p.is_file() and path.parent.resolve() in p.parents:
            out[name] = p.read_bytes()
    return out


def read_input_file(path: Path, what: str) -> dict[str, Any]:
    """An input file as ``{"name", "data", "extra"}``; a missing or unreadable one is an :class:`InputError`."""
    if not path.is_file():
        raise InputError(f"The {what} {str(path)!r} does not exist; fix the path (relative to the jobs file).")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise InputError(f"The {what} {str(path)!r} is over {MAX_INPUT_BYTES >> 20} MB.")
    try:
        extra = _companions(path) if what in ("mesh", "target") else {}
        return {"name": path.name, "data": path.read_bytes(), "extra": extra}
    except OSError as exc:
        raise InputError(f"Cannot read the {what} {str(path)!r}: {exc}.") from None


def _key(spec: dict[str, Any], files: dict[str, dict[str, Any]]) -> str:
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for name in sorted(files):
        h.update(name.encode())
        h.update(hashlib.sha256(files[name]["data"]).digest())
        for extra in sorted(files[name]["extra"]):
            h.update(extra.encode() + hashlib.sha256(files[name]["extra"][extra]).digest())
    return h.hexdigest()[:16]


def _spec_of(line: str, lineno: int, defaults: dict[str, Any], json_lines: bool) -> dict[str, Any]:
    if not json_lines:
        return dict(defaults, command="generate", prompt=line.strip())
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {lineno} is not valid JSON ({exc.msg}); give one job object a line.") from None
    if not isinstance(data, dict):
        raise InputError(f"line {lineno} is not a JSON object; give one job object a line.")
    given = sorted(k for k in DRIVER_FIELDS if k in data and k != "cache_dir")
    if given:
        raise InputError(f"line {lineno} sets {', '.join(given)}; the batch names its results itself (--out DIR).")
    return dict(defaults, **data)


def read_jobs(path: str | Path, defaults: dict[str, Any] | None = None) -> list[BatchJob]:
    """The jobs of ``path``.

    A ``.jsonl``/``.json`` file, or one whose first job line starts with ``{``, holds one worker job a line (its
    ``command``, ``prompt``, ``mesh``, ``image``, ``preset``, ``seed``, ``model``, ``config``, ...); any other file
    holds one prompt a line (generate jobs). ``defaults`` (preset, seed, models from the command line) apply where a
    line does not set them. Blank lines and ``#`` comments are skipped. A line that cannot run becomes a job with
    ``error`` set (it fails alone); a file that cannot be read or holds no jobs is an :class:`InputError`.
    """
    from ....protocol import Job
    from ..worker import parse_job

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the jobs file {str(path)!r}: {exc}.") from None
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"The jobs file {str(path)!r} has no jobs (blank lines and # comments are skipped).")
    json_lines = path.suffix.lower() in (".jsonl", ".json") or lines[0][1].lstrip().startswith("{")
    jobs = []
    seen: dict[str, int] = {}  # times each content key came before: the same job twice is two jobs, two keys
    for index, (lineno, line) in enumerate(lines):
        job = BatchJob(index=index, line=lineno, spec={"command": "generate", "prompt": line.strip()[:80]})
        try:
            spec = _spec_of(line, lineno, dict(defaults or {}), json_lines)
            job.spec = spec
            parse_job(dict(spec, out="result.glb"))  # the worker's own checks: fields, types, needed inputs
            for name in ("model", "fine_model"):  # a local folder travels as an absolute path (Hub ids as they are)
                given = spec.get(name)
                if given and not Path(given).is_absolute():
                    here = [b / given for b in (Path.cwd(), path.parent) if (b / given).is_dir()]
                    spec[name] = str(here[0].resolve()) if here else given
            for name in FILE_FIELDS:
                if spec.get(name):
                    p = Path(spec[name]).expanduser()
                    job.files[name] = read_input_file(p if p.is_absolute() else path.parent / p, name)
            if spec.get("command", "generate") == "generate" and not (spec.get("prompt") or "").strip() \
                    and not spec.get("image"):
                raise InputError(f"line {lineno} has no prompt (and no image); say what to make.")
        except Exception as exc:  # noqa: BLE001 - any bad line fails alone, with its message
            job.error = f"line {lineno}: {exc}" if not str(exc).startswith("line ") else str(exc)
        job.spec = {k: v for k, v in job.spec.items() if k in Job.__dataclass_fields__}
        job.key = _key(job.spec, job.files)
        twins = seen.get(job.key, 0)
        seen[job.key] = twins + 1
        job.key += f"-{twins}" if twins else ""
        jobs.append(job)
    return jobs
