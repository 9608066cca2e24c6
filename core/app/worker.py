"""The engine as a child process: one job as JSON on stdin, JSON lines on stdout.

    python -m dreamsmith.core.app.worker < job.json

The Blender add-on starts this module (see ``addon/job.py``) so that torch never runs inside
Blender and a crash of the engine never takes Blender down. The protocol:

* stdin: ONE JSON object (:class:`dreamsmith.protocol.Job`), on one line or several.
* stdout: JSON lines, nothing else (anything a library prints goes to stderr):

  - ``{"type": "progress", "stage", "step", "total", "loss", "eta", "message"}``, throttled to a few a second
    (a stage's first and last step always get through; ``message``: a note for people, often empty, e.g. the
    wait for another process's kernel build);
  - ``{"type": "preview", "path": png}``: a preview image written (atomically) beside the output;
  - then exactly one of ``{"type": "done", "out": path, "summary": {...}}`` or
    ``{"type": "error", "message": ..., "kind": "<error class>"}``.

  (The type names are :mod:`dreamsmith.protocol`'s ``PROGRESS``, ``PREVIEW``, ``DONE`` and ``ERROR``.)
* exit code: 0 done, 2 a problem the user can fix (the message says what to do, nothing was written),
  1 a bug (traceback on stderr).

The worker stops, leaving nothing that looks like a result, when it gets SIGTERM, when its parent
process dies (``os.getppid()`` changes; polled by a daemon thread) or, with ``"watch_stdin": true``,
when its stdin reaches end-of-file after the job (the add-on keeps stdin open for the whole job, so
this also works on Windows, where a dead parent is not visible through ``getppid``).
"""

from __future__ import annotations

import _thread
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ... import protocol
from ...protocol import Job, missing_inputs
from ..runtime.errors import Cancelled, ConfigError, InputError, as_user_error
from ..runtime.events import CancelToken, ProgressEvent
from ..settings.config import from_dict
from ..settings.config_docs import attribute_words

#: Seconds between two progress lines of the same stage (first and last steps always pass).
PROGRESS_INTERVAL = 0.25
#: Seconds between two checks that the parent is still alive.
PARENT_POLL = 0.5
#: Seconds the job gets to stop by itself once its parent is gone, before the process exits hard.
STOP_GRACE = 20.0


def read_job(stream: IO[str]) -> dict[str, Any]:
    """Read lines from ``stream`` until they form one JSON object (leaves the rest of the stream unread)."""
    text = ""
    for line in iter(stream.readline, ""):
        text += line
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            raise InputError("The job must be one JSON object, e.g. {\"command\": \"generate\", ...}.")
        return data
    if not text.strip():
        raise InputError("No job on stdin; send one JSON object, e.g. {\"command\": \"generate\", \"prompt\": ...}.")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"The job is not valid JSON ({exc}); send one JSON object.") from None
    raise InputError("The job must be one JSON object.")  # pragma: no cover - loads failed above or returned


def parse_job(data: dict[str, Any]) -> Job:
    """Check a job dict (unknown keys and wrong types are ConfigErrors) and return it typed."""
    job = from_dict(Job, data, prefix="job.")
    if not isinstance(job.config, dict):
        raise ConfigError("The job's 'config' must be a JSON object of config overrides (or {}).")
    if not job.out:
        raise InputError("The job has no 'out' path; give the result file, ending in .glb or .obj.")
    missing = missing_inputs(job.command, asdict(job))
    if missing:
        raise InputError(f"A {job.command!r} job needs "
                         + "; and ".join(f"a {m!r}: {attribute_words(Job, m)}" for m in missing) + ".")
    return job


def job_overrides(job: Job) -> dict[str, Any]:
    """The config overrides of ``job``: its ``config`` plus seed, models, network consent and cache folder."""
    from ..jobs import JOBS
    from ..jobs.io import merge_models

    return merge_models(dict(job.config, seed=job.seed), JOBS[job.command].priors, job.model, job.fine_model,
                        job.allow_network, job.cache_dir)


def run_engine(job: Job, callback=None, cancel=None) -> dict[str, Any]:
    """Run a checked job with the engine: its kind's inputs, and its config from the preset and
    :func:`job_overrides`; ``callback`` gets the progress events. Returns the engine's summary."""
    from ..jobs import JOBS

    kind = JOBS[job.command]
    inputs = {name: getattr(job, name) for name in kind.inputs}
    return kind.run(inputs, job.out, kind.config(job.preset, job_overrides(job), inputs), device=job.device,
                    callback=callback, cancel=cancel, preset=job.preset, preview=job.preview or None, force=job.force)


class Emitter:
    """Writes protocol lines; once the reader is gone (broken pipe) it calls ``on_broken`` and writes nothing."""

    def __init__(self, stream: IO[str], on_broken=None) -> None:
        self.stream = stream
        self.on_broken = on_broken
        self.broken = False
        self._lock = threading.Lock()

    def __call__(self, message: dict[str, Any]) -> None:
        """Send one message as one line."""
        line = json.dumps(message, allow_nan=False) + "\n"
        with self._lock:
            if self.broken:
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # the pipe is closed: nobody is listening any more
                self.broken = True
        if self.broken and self.on_broken is not None:
            self.on_broken("the output pipe was closed")


class Forwarder:
    """The engine's progress callback: throttled progress lines, preview images written next to the output."""

    def __init__(self, emit: Emitter, out: Path, interval: float = PROGRESS_INTERVAL) -> None:
        self.emit, self.out, self.interval = emit, out, interval
        self.stage: str | None = None
        self.last = 0.0
        self.previews: list[Path] = []

    def __call__(self, ev: ProgressEvent) -> None:
        """Forward one event."""
        if ev.preview is not None:
            self.emit({"type": protocol.PREVIEW, "path": str(self._write_preview(ev.preview))})
        now = time.monotonic()
        if ev.stage != self.stage or ev.step >= ev.total or now - self.last >= self.interval:
            self.stage, self.last = ev.stage, now
            loss = ev.loss if ev.loss is not None and math.isfinite(ev.loss) else None
            eta = ev.eta
            self.emit({"type": protocol.PROGRESS, "stage": ev.stage, "step": int(ev.step), "total": int(ev.total),
                       "loss": loss, "eta": None if eta is None else round(float(eta), 2), "message": ev.message})

    def _write_preview(self, image) -> Path:
        from ..meshio import write_png

        path = write_png(image, self.out.with_name(f"{self.out.stem}.progress-{len(self.previews):04d}.png"))
        self.previews.append(path)
        for old in self.previews[:-2]:  # keep the newest two: the reader may still be loading the previous one
            old.unlink(missing_ok=True)
        return path

    def remove_previews(self) -> None:
        """Delete the progress images (they are not results)."""
        for p in self.previews:
            p.unlink(missing_ok=True)
        self.previews.clear()


class _Stop(BaseException):
    """Raised in the main thread to stop the job. A BaseException, so that a library's ``except Exception``
    (e.g. around an optional import) cannot swallow it; :func:`main` turns it into :class:`Cancelled`."""


class Stopper:
    """Turns "stop" (SIGTERM, parent gone, stdin closed) into :class:`_Stop` raised in the main thread, and a set
    :class:`CancelToken` that the engine checks every step.

    Other threads do not set the token themselves: they simulate SIGTERM, whose handler sets it and raises, so
    that the job always ends through the same path.
    """

    def __init__(self) -> None:
        self.cancel = CancelToken()
        self.reason = ""
        self.finished = False
        self.handler_installed = False
        self._requested = False
        self._raised = False
        self._lock = threading.Lock()

    def finish(self) -> None:
        """The result is in place (or the job failed): from now on, stop requests change nothing."""
        with self._lock:
            self.finished = True

    def request(self, reason: str) -> None:
        """Ask the job to stop (any thread); the process exits by itself if the job is stuck in native code."""
        with self._lock:
            if self._requested or self.finished:
                return
            self._requested = True
            self.reason = reason
        if threading.current_thread() is threading.main_thread() or not self.handler_installed:
            self.cancel.cancel()  # checked at the next step
            return
        _thread.interrupt_main(signal.SIGTERM)
        threading.Thread(target=self._exit_later, daemon=True).start()

    def on_sigterm(self, signum, frame) -> None:
        """SIGTERM handler (main thread): set the token, and raise :class:`_Stop` once so that long steps stop."""
        if self.finished:
            return
        self.reason = self.reason or "terminated"
        self.cancel.cancel()
        if not self._raised:
            self._raised = True
            raise _Stop(self.reason)

    @staticmethod
    def _exit_later() -> None:
        time.sleep(STOP_GRACE)
        os._exit(3)  # the main thread is stuck in native code and nobody listens any more

    def watch_parent(self) -> None:
        """Start a daemon thread that stops the job when the parent process goes away."""
        parent = os.getppid()

        def loop() -> None:
            while not self.cancel.cancelled and not self.finished:
                if os.getppid() != parent:
                    self.request("the parent process is gone")
                    return
                time.sleep(PARENT_POLL)

        threading.Thread(target=loop, name="dreamsmith-parent-watch", daemon=True).start()

    def watch_stream(self, stream: IO[str]) -> None:
        """Start a daemon thread that stops the job when ``stream`` (the parent's end of stdin) is closed."""

        def loop() -> None:
            try:
                while stream.readline():
                    pass
            except (OSError, ValueError):
                pass
            self.request("the parent closed the connection")

        threading.Thread(target=loop, name="dreamsmith-stdin-watch", daemon=True).start()


def run_job(job: Job, emit: Emitter, stopper: Stopper) -> dict[str, Any]:
    """Run ``job`` with the engine, forwarding progress; returns the engine's summary.

    A stop before the result is in place removes what the job wrote; after that, stop requests are ignored.
    """
    emit({"type": protocol.PROGRESS, "stage": "load", "step": 0, "total": 0, "loss": None, "eta": None})

    out = Path(job.out)
    preview = Path(job.preview) if job.preview else None
    state_out = Path(job.state_out) if job.state_out else None
    existed = {p: p.exists() for p in (out, preview, state_out) if p is not None}
    forward = Forwarder(emit, out)
    try:
        summary = run_engine(job, forward, stopper.cancel)
        stopper.cancel.check()
        stopper.finish()
    except BaseException:
        for p, was_there in existed.items():  # e.g. stopped between writing the mesh and its preview
            if not was_there:
                p.unlink(missing_ok=True)
        raise
    finally:
        forward.remove_previews()
    if preview is not None:
        emit({"type": protocol.PREVIEW, "path": str(preview)})
    return summary


def _heartbeat(emit: Emitter) -> threading.Event:
    """Send a heartbeat every :data:`~dreamsmith.protocol.HEARTBEAT_S` seconds until the returned event is set, so
    that the add-on can tell a busy worker from a hung one."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(protocol.HEARTBEAT_S):
            emit({"type": protocol.HEARTBEAT})

    threading.Thread(target=loop, name="dreamsmith-heartbeat", daemon=True).start()
    return stop


def main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Read one job, run it, report; returns the exit code (0 done, 2 user-fixable error, 1 bug)."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stopper = Stopper()
    emit = Emitter(stdout, on_broken=stopper.request)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, stopper.on_sigterm)
        stopper.handler_installed = True
    try:
        try:
            job = parse_job(read_job(stdin))
            stopper.watch_parent()
            if job.watch_stdin:
                stopper.watch_stream(stdin)
            beat = _heartbeat(emit)
            try:
                summary = run_job(job, emit, stopper)
            finally:
                beat.set()
        except _Stop:
            raise Cancelled(f"The job was stopped ({stopper.reason}); nothing was written.") from None
        except KeyboardInterrupt:
            raise Cancelled("The job was interrupted; nothing was written.") from None
    except Exception as exc:
        stopper.finish()
        if stopper.cancel.cancelled and not isinstance(exc, Cancelled):
            # The stop arrived inside code that turned it into its own error (an import in progress raises
            # ImportError): what the user sees is the stop they asked for.
            exc = Cancelled(f"The job was stopped ({stopper.reason or 'cancelled'}); nothing was written.")
        error = as_user_error(exc)
        if error is not None:
            emit({"type": protocol.ERROR, "message": str(error), "kind": type(error).__name__})
            return 2
        traceback.print_exc(file=sys.stderr)
        emit({"type": protocol.ERROR, "kind": type(exc).__name__,
              "message": f"Internal error in the engine ({type(exc).__name__}: {exc}); this is a bug, please "
                         "report it with the worker log."})
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    emit({"type": protocol.DONE, "out": summary["out"], "summary": summary})
    return 0


def _protocol_stdout() -> IO[str]:
    """A private copy of stdout for the protocol; fd 1 and ``sys.stdout`` then point at stderr, so stray prints
    from libraries (Python or native) cannot corrupt the JSON lines."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", newline="\n")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return proto


if __name__ == "__main__":
    raise SystemExit(main(stdout=_protocol_stdout()))
