"""Install the engine's dependencies into the extension's user folder, for Blender's own Python.

"Install dependencies" in the preferences runs ``python -m pip install --target <user folder>/site-packages
<packages>`` with Blender's interpreter, in a child process (an argument list, never a shell string), writing
pip's output to a log file beside the folder; the sidebar and preferences show the latest line while it runs.
Blender stays responsive (a ``bpy.app.timers`` callback polls the process); in background mode the operator
waits. Network is used only when Blender's "Allow Online Access" is on. The worker then finds the packages
through ``PYTHONPATH`` (see :func:`engine_paths`); Blender's own ``sys.path`` is never changed.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..protocol import DEPENDENCIES

#: What the engine needs from PyPI (torch from PyPI is the CUDA build on Linux/Windows, MPS-capable on macOS).
PACKAGES = tuple(requirement for _, requirement in DEPENDENCIES)
LOG_NAME = "install-dependencies.log"
TIMER_INTERVAL = 0.5
ADDON_PACKAGE = __package__.rpartition(".")[0]  # "dreamsmith" or "bl_ext.<repo>.dreamsmith"


def deps_dir(create: bool = False) -> Path:
    """``site-packages`` in the extension's user folder (kept across extension updates)."""
    if ADDON_PACKAGE.startswith("bl_ext.") and hasattr(bpy.utils, "extension_path_user"):
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="site-packages", create=create))
    path = Path(bpy.utils.user_resource("SCRIPTS", path=os.path.join("dreamsmith", "site-packages")))
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def states_dir(prefs) -> Path:
    """Where generated objects' engine states are kept for later edits (the cache folder, else the user folder)."""
    if getattr(prefs, "cache_dir", ""):
        return Path(bpy.path.abspath(prefs.cache_dir)) / "dreamsmith-states"
    return deps_dir().parent / "states"


def engine_paths(prefs) -> list[str]:
    """Folders the worker needs on ``PYTHONPATH``: the installed dependencies when Blender's own Python runs it."""
    if getattr(prefs, "python_path", ""):
        return []  # an external interpreter brings its own packages
    path = deps_dir()
    return [str(path)] if path.is_dir() else []


def pip_command(python: str, target: Path, packages: list[str], extra: list[str] = ()) -> list[str]:
    """The pip argument list (no shell) that installs ``packages`` into ``target``."""
    return [python, "-m", "pip", "install", "--upgrade", "--no-input", "--disable-pip-version-check",
            "--target", str(target), *extra, *packages]


class _Install:
    """The one running installation: the process, its log, the last lines it printed."""

    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    lines: queue.Queue = queue.Queue()
    log_path: Path | None = None
    tail: deque = deque(maxlen=20)
    status: str = ""
    failed: bool = False


_install = _Install()


def installing() -> bool:
    """Whether an installation is running."""
    return _install.proc is not None


def status_text() -> str:
    """One line for the UI: what the running (or last) installation is doing."""
    return _install.status


def _start(python: str, target: Path, packages: list[str], extra: list[str]) -> None:
    log_path = target.parent / LOG_NAME
    _install.log_path, _install.failed = log_path, False
    _install.tail.clear()
    _install.status = "Starting pip..."
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8")
    cmd = pip_command(python, target, packages, extra)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
    _install.proc = proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        errors="replace", env=env, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))

    def read() -> None:  # a thread, so that the UI never waits on the pipe
        for line in proc.stdout:
            _install.lines.put(line)
        proc.stdout.close()

    _install.reader = threading.Thread(target=read, name="dreamsmith-pip-reader", daemon=True)
    _install.reader.start()


def _drain() -> None:
    """Move pip's new output lines into the log and the status line."""
    new = []
    while True:
        try:
            new.append(_install.lines.get_nowait())
        except queue.Empty:
            break
    if not new or _install.log_path is None:
        return
    with open(_install.log_path, "a", encoding="utf-8") as log:
        log.writelines(new)
    for line in new:
        line = line.strip()
        if line:
            _install.tail.append(line)
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "ERROR")):
                _install.status = line[:120]


def _finish() -> tuple[bool, str]:
    proc = _install.proc
    code = proc.wait()
    if _install.reader is not None:
        _install.reader.join(timeout=5)
    _drain()
    _install.proc = _install.reader = None
    if code == 0:
        _install.status = f"Dependencies installed in {deps_dir()}."
        return True, _install.status
    _install.failed = True
    last = next((ln for ln in reversed(_install.tail) if ln.startswith("ERROR")), _install.tail[-1] if _install.tail
                else f"pip exited with code {code}")
    _install.status = f"Installing failed: {last} (full log: {_install.log_path})"
    return False, _install.status


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            area.tag_redraw()


def install_timer() -> float | None:
    """``bpy.app.timers`` callback: follow the installation until it ends."""
    if _install.proc is None:
        return None
    _drain()
    if _install.proc.poll() is None:
        _redraw()
        return TIMER_INTERVAL
    ok, message = _finish()
    print(f"Dreamsmith: {message}", file=sys.stdout if ok else sys.stderr)
    _redraw()
    return None


def stop_install() -> None:
    """Stop a running installation (on unregister): terminate pip, remove the timer."""
    if bpy.app.timers.is_registered(install_timer):
        bpy.app.timers.unregister(install_timer)
    proc = _install.proc
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if _install.reader is not None:
            _install.reader.join(timeout=5)
        _drain()
        _install.proc = _install.reader = None
        _install.status = "Installing was stopped."


class DREAMSMITH_OT_install_dependencies(bpy.types.Operator):
    """Install torch, diffusers and the rest into the extension's user folder, for Blender's own Python (needs
    online access; a few GB for torch)"""

    bl_idname = "dreamsmith.install_dependencies"
    bl_label = "Install dependencies"

    packages_json: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                                  description="JSON list of pip requirements instead of the engine's (tests)")
    pip_args_json: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                                  description="JSON list of extra pip arguments, e.g. a local index (tests)")

    @classmethod
    def poll(cls, context):
        """Not while an installation runs; only when Blender may go online."""
        if installing():
            cls.poll_message_set("Dependencies are being installed.")
            return False
        if not getattr(bpy.app, "online_access", False):
            cls.poll_message_set("Allow Online Access (Preferences > System > Network) to download packages.")
            return False
        return True

    def execute(self, context):
        """Start pip (interactive) or run it to the end (background)."""
        try:
            packages = json.loads(self.packages_json) if self.packages_json else list(PACKAGES)
            extra = json.loads(self.pip_args_json) if self.pip_args_json else []
            if not all(isinstance(x, str) for x in [*packages, *extra]):
                raise ValueError("lists of strings expected")
        except ValueError as exc:
            self.report({"ERROR"}, f"Bad package list ({exc}).")
            return {"CANCELLED"}
        try:
            _start(sys.executable, deps_dir(create=True), packages, extra)
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot run pip with {sys.executable!r} ({exc}).")
            return {"CANCELLED"}
        if not bpy.app.background:
            bpy.app.timers.register(install_timer, first_interval=TIMER_INTERVAL)
            self.report({"INFO"}, "Dreamsmith: installing dependencies; progress in the preferences.")
            return {"FINISHED"}
        while _install.proc.poll() is None:
            _drain()
            time.sleep(0.2)
        ok, message = _finish()
        self.report({"INFO"} if ok else {"ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}
