"""The job client: runs the engine's worker process and turns its JSON lines into messages (no bpy here).

How the worker finds the package: under Blender 4.2+ the extension is imported as
``bl_ext.<repo>.dreamsmith`` from a folder that may not even be named ``dreamsmith`` (a
development checkout), and putting that folder's parent on ``PYTHONPATH`` would also expose every
other extension beside it. So the client starts the interpreter with a small bootstrap
(``python -c BOOTSTRAP <package folder>``) that loads the package folder under the name
``dreamsmith`` (``importlib`` with ``submodule_search_locations``) and then runs the module
``dreamsmith.core.app.worker`` as ``__main__`` (``runpy``), exactly what
``python -m dreamsmith.core.app.worker`` does in a development install. The add-on's own copy wins
over any other ``dreamsmith`` installed in that interpreter, so the worker always matches the add-on.

The job's stdin stays open while it runs (``watch_stdin``): if Blender dies, the pipe closes and
the worker stops, on every platform. ``cancel()`` closes stdin, sends SIGTERM, then kills after a
timeout. The worker's stderr goes to a log file in the job folder (a pipe nobody reads could fill
up and block it); the folder is removed by :meth:`WorkerJob.cleanup`.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import DONE, ERROR, SILENCE_LIMIT_S, Job, job_inputs
from .child_process import Inbox, end_process

#: The folder of the package (the extension root), whatever it is called on disk.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
WORKER_MODULE = "dreamsmith.core.app.worker"


def bootstrap(module: str) -> str:
    """The ``python -c`` code that loads the package folder given as the first argument under the name
    ``dreamsmith`` and runs ``module`` as ``__main__``."""
    return ("import importlib.util, os, runpy, sys; root = sys.argv.pop(1); "
            "spec = importlib.util.spec_from_file_location('dreamsmith', os.path.join(root, '__init__.py'), "
            "submodule_search_locations=[root]); "
            "mod = importlib.util.module_from_spec(spec); sys.modules['dreamsmith'] = mod; "
            "spec.loader.exec_module(mod); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")


BOOTSTRAP = bootstrap(WORKER_MODULE)

JOB_PREFIX = "dreamsmith-job-"
LOG_NAME = "worker.log"


def worker_command(python: str, package_root: Path = PACKAGE_ROOT) -> list[str]:
    """The argument list that runs the worker with interpreter ``python`` (never a shell string)."""
    return [python, "-c", BOOTSTRAP, str(package_root)]


def prepend_python_path(env: dict[str, str], paths: list[str]) -> dict[str, str]:
    """Put ``paths`` in front of ``env``'s ``PYTHONPATH`` (in place; returns ``env``)."""
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return env


def make_work_dir(base: str | os.PathLike | None) -> Path:
    """A fresh private folder for one job's output, preview and log, under ``base`` (default: the temp folder)."""
    base = Path(base) if base else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=base))


def build_job(command: str, out: Path, inputs: dict[str, Any], *, preset: str = "draft", seed: int = 0,
              model: str = "", fine_model: str = "", device: str = "auto", preview: Path | None = None,
              config: dict | None = None, allow_network: bool = False, cache_dir: str = "") -> dict[str, Any]:
    """The worker's job (:class:`dreamsmith.protocol.Job`) as its JSON object. ``inputs``: what the add-on has
    (prompt, paths, picture camera...); the ones ``command`` takes (``protocol.job_inputs``) go in, empty ones are
    left to the job's defaults, paths become strings."""
    takes = job_inputs(command)
    values = {name: str(v) if isinstance(v, os.PathLike) else v for name, v in inputs.items()
              if name in takes and v is not None and v != ""}
    return Job(command=command, **values, preset=preset, seed=int(seed), model=model or None,
               fine_model=fine_model or None, device=device, out=str(out), preview=str(preview) if preview else None,
               config=dict(config or {}), allow_network=bool(allow_network), cache_dir=cache_dir or None,
               watch_stdin=True).to_json()


@dataclass
class Outcome:
    """How a job ended.

    Attributes:
        ok: The result file exists and the worker said "done".
        out: The result file (when ``ok``).
        summary: The worker's summary (when ``ok``).
        message: What went wrong, for the user (when not ``ok``).
        kind: The error class (``ModelError``, ``Cancelled``, ...; ``"crash"`` when the worker died without a word).
    """

    ok: bool
    out: str = ""
    summary: dict | None = None
    message: str = ""
    kind: str = ""


def _exit_text(code: int) -> str:
    if code < 0:
        return f"it was killed by signal {-code}"
    return f"exit code {code}"


class WorkerJob:
    """One worker process and the messages it sends.

    Args:
        job: The job dict (:func:`build_job`).
        python: The interpreter to run the worker with.
        work_dir: The job's private folder (:func:`make_work_dir`); removed by :meth:`cleanup`.
        package_root: The package folder the worker is loaded from.
        python_paths: Folders put in front of the worker's ``PYTHONPATH`` (the dependencies installed for
            Blender's own Python).
    """

    def __init__(self, job: dict[str, Any], python: str, work_dir: Path, package_root: Path = PACKAGE_ROOT,
                 python_paths: list[str] | None = None) -> None:
        self.job, self.python, self.work_dir, self.package_root = job, python, Path(work_dir), package_root
        self.python_paths = list(python_paths or [])
        self.proc: subprocess.Popen | None = None
        self.outcome: Outcome | None = None
        self.cancelled = False
        self._queue = Inbox()
        self._last: dict[str, Any] | None = None  # the worker's "done" or "error" line
        self.last_heard = time.monotonic()  # when the worker last sent anything (heartbeats included)
        self.started = time.monotonic()
        self._reader: threading.Thread | None = None
        self._log = None

    # ------------------------------------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the worker and send the job; raises OSError when the interpreter cannot be started."""
        env = dict(os.environ)
        env["PYTHONIOENCODING"] = "utf-8"
        env.pop("PYTHONSTARTUP", None)
        prepend_python_path(env, self.python_paths)
        if not self.job.get("allow_network"):
            env["HF_HUB_OFFLINE"] = "1"  # belt and braces: no download without the user's consent
        self._log = open(self.work_dir / LOG_NAME, "wb")  # noqa: SIM115 - closed in _read()
        try:
            self.proc = subprocess.Popen(
                worker_command(self.python, self.package_root), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._log, cwd=self.work_dir, env=env, text=True, encoding="utf-8", errors="replace",
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except BaseException:
            self._log.close()
            raise
        self._reader = threading.Thread(target=self._read, name="dreamsmith-job-reader", daemon=True)
        self._reader.start()
        try:
            self.proc.stdin.write(json.dumps(self.job) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the process died at once; the reader reports how

    def _read(self) -> None:
        """Reader thread: parse stdout lines onto the queue; at the end, the exit code."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    msg = None
                if not isinstance(msg, dict) or "type" not in msg:
                    msg = {"type": "log", "text": line}
                self.last_heard = time.monotonic()
                self._queue.put(msg)
        finally:
            code = self.proc.wait()
            self._log.close()
            self._queue.put({"type": "exit", "code": code})
            self._queue.close()

    @property
    def running(self) -> bool:
        """Whether the job has started and its outcome is not known yet."""
        return self.proc is not None and self.outcome is None

    # ------------------------------------------------------------------------------------------------ messages

    def poll(self) -> list[dict[str, Any]]:
        """Drain the messages that arrived (main thread; never blocks). Sets :attr:`outcome` at the end."""
        out = self._queue.drain()
        for msg in out:
            self._handle(msg)
        return out

    def wait_for_message(self, timeout: float) -> bool:
        """Block until a message has arrived that :meth:`poll` has not returned (True), or ``timeout`` seconds
        passed (False): for a caller that drives :meth:`poll` itself and may block."""
        return self._queue.wait(timeout)

    def stalled(self, time_limit: float = 0.0, silence: float = SILENCE_LIMIT_S) -> str:
        """Why the running job should be ended ("" while it is fine): no word from the worker for ``silence``
        seconds (it sends a heartbeat every few seconds), or longer than ``time_limit`` seconds in all (0: none)."""
        if self.outcome is not None or self.proc is None:
            return ""
        now = time.monotonic()
        if now - self.last_heard > silence:
            return (f"The engine stopped responding (no word for {now - self.last_heard:.0f} s) and was ended; "
                    "nothing was added. Try again, or check the interpreter with Check setup.")
        if time_limit > 0 and now - self.started > time_limit:
            return (f"The job ran longer than its time limit ({time_limit / 60:g} min) and was ended; nothing was "
                    "added. Raise the limit in the add-on preferences or use a smaller preset.")
        return ""

    def end_stalled(self, why: str) -> Outcome:
        """Stop a stalled worker; its outcome says ``why``."""
        self.cancel()
        self.outcome = Outcome(False, message=why, kind="Stalled")
        return self.outcome

    def wait(self, on_message=None, time_limit: float = 0.0, silence: float = SILENCE_LIMIT_S) -> Outcome:
        """Block until the job ends, calling ``on_message(msg)`` for each message; returns the outcome. A worker
        that :meth:`stalled` is ended."""
        while self.outcome is None:
            try:
                msg = self._queue.get(timeout=min(1.0, silence))
            except queue.Empty:
                msg = None
            if msg is not None:
                self._handle(msg)
                if on_message is not None:
                    on_message(msg)
            why = self.stalled(time_limit, silence)
            if why:
                return self.end_stalled(why)
        return self.outcome

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind in (DONE, ERROR):
            self._last = msg
        elif kind == "exit":
            self.outcome = self._resolve(int(msg["code"]))

    def _resolve(self, code: int) -> Outcome:
        last = self._last or {}
        if self.cancelled:
            return Outcome(False, message="Cancelled; nothing was added to the scene.", kind="Cancelled")
        if last.get("type") == DONE and code == 0:
            out = str(last.get("out", ""))
            if out and Path(out).is_file():
                return Outcome(True, out=out, summary=last.get("summary") or {})
            return Outcome(False, message=f"The engine reported a result at {out!r} but it is missing.",
                           kind="crash")
        if last.get("type") == ERROR:
            message = str(last.get("message", "unknown error"))
            if code not in (0, 2):  # a bug: the traceback is in the log, which cleanup() removes
                self._echo_log()
                message += f" (worker {_exit_text(code)}; its log was printed to the console)"
            return Outcome(False, message=message, kind=str(last.get("kind", "")))
        self._echo_log()
        tail = self.log_tail()
        hint = f" Last words: {tail}" if tail else ""
        return Outcome(False, kind="crash",
                       message=f"The engine stopped unexpectedly ({_exit_text(code)}) with interpreter "
                               f"{self.python!r}; check it in the preferences (Check setup).{hint}")

    def log_tail(self, lines: int = 3) -> str:
        """The last lines the worker wrote to stderr."""
        try:
            text = (self.work_dir / LOG_NAME).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(ln.strip() for ln in text.strip().splitlines()[-lines:] if ln.strip())

    def _echo_log(self) -> None:
        try:
            text = (self.work_dir / LOG_NAME).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        if text.strip():
            print(f"--- Dreamsmith worker log ({self.work_dir / LOG_NAME}) ---\n{text.rstrip()}\n---", file=sys.stderr)

    # ------------------------------------------------------------------------------------------------ ending

    def cancel(self, timeout: float = 3.0) -> None:
        """Stop the worker: close its stdin, SIGTERM, then kill after ``timeout`` seconds; waits for the reader."""
        if self.proc is None:
            return
        if self.outcome is None:
            self.cancelled = True
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            end_process(self.proc, timeout)
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        self.poll()

    def cleanup(self) -> None:
        """End the process if it still runs and remove the job folder (result, previews, log)."""
        if self.proc is not None and self.proc.poll() is None:
            self.cancel()
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        try:
            shutil.rmtree(self.work_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:  # e.g. a file still open on Windows: say so, the folder is in a temp place
            print(f"Dreamsmith: could not remove the job folder {self.work_dir}: {exc}", file=sys.stderr)
