"""Installing the engine environment: the uv processes, their output, the one running installation, uninstall.

An installation runs up to four child processes one after the other (argument lists, never a shell string; the
commands come from :mod:`.engine_setup`): Blender's pip installs the pinned uv into ``<root>/tools`` (only when no
uv is there yet), ``uv venv`` makes ``<root>/env`` with a standalone Python that uv downloads, and
``uv pip install -r engine.lock --torch-backend auto`` installs the locked packages with the torch build for this
machine, then the engine builds its C++ CPU kernels (optional: without a compiler the references run). Their output
goes to ``<root>/install.log``; :func:`status_text` is its latest meaningful line. Each
process is a :class:`.child_process.LineProcess` (a thread reads its pipe); :func:`advance` (a persistent
``bpy.app.timers`` callback in the UI, a loop in background mode) moves the lines on and starts the next step. Only
a successful installation writes the marker that makes :func:`engine_python` use the environment; a failed or
stopped one is removed again.
"""

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import bpy

from .child_process import LineProcess
from .engine_setup import (
    LOCK_NAME,
    PYTHON_VERSION,
    UV_ENV,
    UV_VERSION,
    EngineLayout,
    error_summary,
    packages_command,
    path_problem,
    root_from_environment,
    status_line,
    uv_bootstrap_command,
    uv_environment,
    venv_command,
)
from .job import bootstrap
from .redraw import redraw

TIMER_INTERVAL = 0.5
EXTENSION_ROOT = Path(__file__).resolve().parents[1]
STEP_LABELS = {"uv": f"Installing uv {UV_VERSION}", "venv": "Creating the environment",
               "packages": "Installing packages", "kernels": "Building the CPU kernels"}
#: Steps whose failure leaves a working engine (without a compiler, the kernels' PyTorch references run).
OPTIONAL_STEPS = ("kernels",)


def layout() -> EngineLayout:
    """The engine root of this machine and its folders (``DREAMSMITH_ENGINE_ROOT`` overrides the root)."""
    return EngineLayout(root_from_environment(), sys.platform)


def lock_path() -> Path:
    """The lock file shipped with the extension."""
    return EXTENSION_ROOT / LOCK_NAME


def installed(lay: EngineLayout | None = None) -> bool:
    """Whether the engine environment was installed completely (cheap: two file checks, fine in draw code)."""
    lay = lay or layout()
    return Path(lay.python).is_file() and Path(lay.installed_marker).is_file()


def engine_python() -> str | None:
    """The engine environment's interpreter when it is installed, else None."""
    lay = layout()
    return str(lay.python) if installed(lay) else None


def uv_binary(lay: EngineLayout) -> str | None:
    """The uv to use: ``DREAMSMITH_UV``, else the one installed in ``<root>/tools`` when it is the pinned
    version; None when there is none (an installation then installs it first)."""
    named = os.environ.get(UV_ENV, "")
    if named and Path(named).is_file():
        return named
    if not (Path(lay.tools) / f"uv-{UV_VERSION}.dist-info").is_dir():
        return None
    return next((str(p) for p in lay.uv_candidates() if Path(p).is_file()), None)


def _rmtree(path: Path) -> None:
    """Remove a folder, read-only files included (uv's cache on Windows)."""
    def retry(func, target, _exc):
        os.chmod(target, stat.S_IWRITE)
        func(target)

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=retry)
    elif path.exists() or path.is_symlink():
        path.unlink()


class _Install:
    """The one running installation: the steps left, the current process, its output."""

    active: bool = False
    steps: list[str] = []
    step: str = ""
    options: dict = {}
    proc: LineProcess | None = None
    tail: deque = deque(maxlen=30)
    status: str = ""
    failed: bool = False
    #: Steps finished in this installation (the progress bar's numerator).
    done: int = 0


_install = _Install()
_changes = [0]  # how many times the engine environment changed (installed, repaired, removed) in this session


def environment_changed() -> None:
    """Say that the engine environment changed: answers about it given before are out of date."""
    _changes[0] += 1


def changes() -> int:
    """How many times the engine environment changed in this session (:func:`environment_changed`)."""
    return _changes[0]


def installing() -> bool:
    """Whether the engine environment is being installed (jobs must not start meanwhile)."""
    return _install.active


def status_text() -> str:
    """One line for the UI: what the running (or last) installation is doing or did."""
    return _install.status


def _command(step: str, lay: EngineLayout) -> list[str]:
    opts = _install.options
    if step == "uv":
        return uv_bootstrap_command(sys.executable, lay, opts.get("pip_args", []))
    uv = uv_binary(lay)
    if uv is None:
        raise OSError(f"uv was not found in {lay.tools} after installing it")
    if step == "venv":
        return venv_command(uv, lay, opts.get("python_request") or PYTHON_VERSION)
    if step == "kernels":  # built now, not inside a job where a Cancel could kill the build
        return [str(lay.python), "-c", bootstrap("dreamsmith.kernels.cpu_build"), str(EXTENSION_ROOT)]
    return packages_command(uv, lay, opts.get("lock") or str(lock_path()), opts.get("torch_backend", "auto"),
                            opts.get("uv_args", []))


def _start_step(lay: EngineLayout) -> None:
    _install.step = step = _install.steps.pop(0)
    cmd = _command(step, lay)
    with open(lay.log, "a", encoding="utf-8") as log:
        log.write(f"\n$ {subprocess.list2cmdline(cmd) if sys.platform == 'win32' else shlex.join(cmd)}\n")
    _install.status = f"{STEP_LABELS[step]}..."
    _install.proc = LineProcess(cmd, env=uv_environment(lay, os.environ), cwd=str(lay.root))


def _drain(lay: EngineLayout) -> None:
    """Move the new output lines into the log and the status line."""
    new = _install.proc.drain() if _install.proc is not None else []
    if not new:
        return
    with open(lay.log, "a", encoding="utf-8") as log:
        log.writelines(line + "\n" for line in new)
    for line in new:
        if line.strip():
            _install.tail.append(line.strip())
        shown = status_line(line)
        if shown:
            _install.status = f"{STEP_LABELS[_install.step]}: {shown}"


def start_install(options: dict, repair: bool = False) -> EngineLayout:
    """Start installing (``repair``: remove the environment first); raises OSError or ValueError with a message."""
    lay = layout()
    problem = path_problem(lay)
    if problem:
        raise ValueError(problem)
    root = Path(lay.root)
    root.mkdir(parents=True, exist_ok=True)
    Path(lay.marker).write_text("Made by the Dreamsmith Blender extension; Uninstall removes what it made here.\n",
                                encoding="utf-8")
    if Path(lay.env).exists():  # a half or old environment: never install over it
        _rmtree(Path(lay.env))
    with open(lay.log, "w", encoding="utf-8") as log:
        log.write(f"Dreamsmith engine {'repair' if repair else 'install'}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    _install.options, _install.failed, _install.done = dict(options), False, 0
    _install.tail.clear()
    _install.steps = [*([] if uv_binary(lay) else ["uv"]), "venv", "packages", "kernels"]
    _install.active = True
    try:
        _start_step(lay)
    except OSError:
        _install.active, _install.proc = False, None
        raise
    return lay


def _end_step(lay: EngineLayout) -> int:
    """Wait for the step's process and its last lines; returns its exit code."""
    code = _install.proc.proc.wait()
    _install.proc.reader.join(timeout=5)
    _drain(lay)
    _install.proc = None
    return code


def advance() -> tuple[bool, str] | None:
    """Follow the installation one tick: None while it runs, else ``(ok, message)`` once it has ended."""
    lay = layout()
    _drain(lay)
    if _install.proc is not None and _install.proc.poll() is None:
        return None
    code = _end_step(lay) if _install.proc is not None else 1
    if code != 0 and _install.step in OPTIONAL_STEPS:
        with open(lay.log, "a", encoding="utf-8") as log:
            log.write(f"({STEP_LABELS[_install.step]} failed with exit code {code}; jobs run the PyTorch "
                      "references instead.)\n")
        code = 0
    if code == 0 and _install.steps:
        _install.done += 1
        try:
            _start_step(lay)
            return None
        except OSError as exc:
            _install.tail.append(f"error: {exc}")
            code = 1
    _install.active = False
    if code == 0:
        environment_changed()  # the sidebar asks the new engine what it has
        info = {"uv": UV_VERSION, "lock": _install.options.get("lock") or str(lock_path()),
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        Path(lay.installed_marker).write_text(json.dumps(info, indent=1), encoding="utf-8")
        _install.status = f"Engine installed in {lay.env}."
        return True, _install.status
    _install.failed = True
    if Path(lay.env).exists():
        _rmtree(Path(lay.env))
    reason = error_summary(list(_install.tail)) or f"exit code {code}"
    _install.status = f"Installing failed ({STEP_LABELS[_install.step].lower()}): {reason} (full log: {lay.log})"
    return False, _install.status


def install_timer() -> float | None:
    """``bpy.app.timers`` callback (persistent): follow the installation until it ends."""
    if not _install.active:
        return None
    result = advance()
    redraw()
    if result is None:
        return TIMER_INTERVAL
    print(f"Dreamsmith: {result[1]}", file=sys.stdout if result[0] else sys.stderr)
    return None


def stop_install() -> None:
    """Stop a running installation (on unregister): end the process, remove the timer and the half environment."""
    if bpy.app.timers.is_registered(install_timer):
        bpy.app.timers.unregister(install_timer)
    if _install.proc is not None:
        _install.proc.stop()
        _end_step(layout())
    if _install.active:
        _install.active, _install.steps = False, []
        lay = layout()
        if Path(lay.env).exists() and not installed(lay):
            _rmtree(Path(lay.env))
        _install.status = "Installing was stopped."


def uninstall(extra: tuple[Path, ...] = ()) -> str:
    """Remove the engine environment, uv, its cache and Pythons (only under a root that carries our marker), and
    the ``extra`` folders. Returns what was done; raises ValueError when the root is not ours."""
    lay = layout()
    removed = []
    for folder in extra:
        if folder.is_dir():
            _rmtree(folder)
            removed.append(str(folder))
    root = Path(lay.root)
    if root.is_dir():
        if not Path(lay.marker).is_file():
            raise ValueError(f"{root} was not made by Dreamsmith (no {Path(lay.marker).name}); nothing removed.")
        for path in map(Path, lay.owned()):
            if path.exists():
                _rmtree(path)
                removed.append(str(path))
        Path(lay.marker).unlink()
        if not any(root.iterdir()):
            root.rmdir()
    _install.status = f"Removed {', '.join(removed)}." if removed else "Nothing to uninstall."
    return _install.status
