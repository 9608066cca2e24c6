"""The engine environment in Blender's UI: Install engine, Repair, Uninstall (one operator), the preferences'
section, and the folders the add-on keeps in the extension's user folder.

Installing (:mod:`.engine_install`, commands from :mod:`.engine_setup`) builds ``<root>/env`` with uv: a standalone
Python 3.11, the packages pinned by the shipped ``engine.lock``, the torch build for this machine (CUDA with an
NVIDIA GPU on Windows and Linux, MPS on Apple silicon, else CPU). It needs Blender's "Allow Online Access" and is
refused while a job runs; while it runs, jobs are refused (:func:`installing`). Repair removes the environment and
installs it again; Uninstall removes what Dreamsmith made under the root (never a folder without its marker).
"""

import json
import time
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from .engine_install import (  # noqa: F401  (installing, status_text, stop_install, install_timer: the add-on's API)
    TIMER_INTERVAL,
    _install,
    advance,
    engine_python,
    environment_changed,
    install_timer,
    installed,
    installing,
    layout,
    start_install,
    status_text,
    stop_install,
    uninstall,
)
from .engine_setup import path_problem
from .settings import blender_python_ready, deps_dir, online_hint


def busy() -> str:
    """Why neither a job nor an installation may start now ("" when both may): one runs at a time."""
    from .running import job_running  # running imports this module

    if installing():
        return "The engine is being installed; wait for it to finish."
    if job_running():
        return "A Dreamsmith job is running; wait for it or cancel it."
    return ""


def install_progress() -> tuple[int, int, str]:
    """The running installation as ``(steps done, steps, what it is doing)`` for a progress bar."""
    return _install.done, _install.done + len(_install.steps) + (1 if _install.proc is not None else 0), \
        status_text() or "starting"


class DREAMSMITH_OT_cancel_install(bpy.types.Operator):
    """Stop installing the engine; what was installed so far is removed (nothing half-installed stays)"""

    bl_idname = "dreamsmith.cancel_install"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        """Only while installing."""
        return installing()

    def execute(self, context):
        """End the step's process, remove the half environment."""
        if bpy.app.timers.is_registered(install_timer):
            bpy.app.timers.unregister(install_timer)
        stop_install()
        environment_changed()
        self.report({"INFO"}, "Dreamsmith: installing the engine was cancelled; nothing was left half-installed.")
        return {"FINISHED"}


def _json_list(text: str) -> list[str]:
    value = json.loads(text) if text else []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("a JSON list of strings expected")
    return value


ACTIONS = (("INSTALL", "Install", "Install the engine environment (needs online access; a few GB for torch)"),
           ("REPAIR", "Repair", "Remove the engine environment and install it again"),
           ("UNINSTALL", "Uninstall", "Remove the engine environment, uv and their downloads"))


class DREAMSMITH_OT_install_dependencies(bpy.types.Operator):
    """Install, repair or uninstall the engine's own environment (uv, Python 3.11, torch for this machine)"""

    bl_idname = "dreamsmith.install_dependencies"
    bl_label = "Install engine"

    action: EnumProperty(name="Action", items=ACTIONS, default="INSTALL", options={"SKIP_SAVE"})
    lock_file: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                              description="Lock file to install instead of the shipped one (tests)")
    python_request: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                                   description="What `uv venv --python` gets instead of 3.11, e.g. a path (tests)")
    torch_backend: StringProperty(default="auto", options={"HIDDEN", "SKIP_SAVE"},
                                  description="uv's --torch-backend; empty: none (tests)")
    uv_args_json: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                                 description="JSON list of extra `uv pip install` arguments, e.g. --offline (tests)")
    pip_args_json: StringProperty(default="", options={"HIDDEN", "SKIP_SAVE"},
                                  description="JSON list of extra pip arguments for installing uv (tests)")

    @classmethod
    def description(cls, context, properties):
        """The tooltip of the chosen action."""
        return next(text for key, _, text in ACTIONS if key == properties.action)

    @classmethod
    def poll(cls, context):
        """Not while a job or another installation runs."""
        reason = busy()
        if reason:
            cls.poll_message_set(reason)
        return not reason

    def execute(self, context):
        """Uninstall at once; install or repair: start (interactive) or run to the end (background)."""
        environment_changed()  # the engine's answers change with what is installed
        if self.action == "UNINSTALL":
            try:
                message = uninstall(extra=(deps_dir(),))
                blender_python_ready.cache_clear()
            except (OSError, ValueError) as exc:
                self.report({"ERROR"}, f"Uninstall failed: {exc}")
                return {"CANCELLED"}
            self.report({"INFO"}, message)
            return {"FINISHED"}
        if not getattr(bpy.app, "online_access", False):
            self.report({"ERROR"}, online_hint("install the engine"))
            return {"CANCELLED"}
        try:
            options = {"lock": self.lock_file, "python_request": self.python_request,
                       "torch_backend": self.torch_backend, "uv_args": _json_list(self.uv_args_json),
                       "pip_args": _json_list(self.pip_args_json)}
            start_install(options, repair=self.action == "REPAIR")
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, f"Cannot install the engine: {exc}")
            return {"CANCELLED"}
        if not bpy.app.background:
            bpy.app.timers.register(install_timer, first_interval=TIMER_INTERVAL, persistent=True)
            self.report({"INFO"}, "Dreamsmith: installing the engine; progress in the preferences and the sidebar.")
            return {"FINISHED"}
        result = None
        while result is None:
            time.sleep(0.2)
            result = advance()
        self.report({"INFO"} if result[0] else {"ERROR"}, result[1])
        return {"FINISHED"} if result[0] else {"CANCELLED"}


def draw_engine(ui, prefs) -> None:
    """The engine section of the preferences: which Python runs the engine; Install, Repair, Uninstall; progress."""
    op_id = DREAMSMITH_OT_install_dependencies.bl_idname
    lay = layout()
    box = ui.box()
    box.label(text="Engine environment", icon="CONSOLE")
    ready = installed(lay)
    if prefs.python_path:
        box.label(text="Your own Python runs the engine (the Python setting above).")
    elif ready:
        box.label(text=f"Installed: {lay.env}")
    elif blender_python_ready():
        box.label(text="Blender's Python already has the engine's packages: no install needed.")
    else:
        box.label(text=f"Not installed. Install engine puts it in {lay.root} (a few GB).")
    problem = path_problem(lay)
    if problem:
        box.label(text=problem, icon="ERROR")
    row = box.row()
    online = bool(getattr(bpy.app, "online_access", False))
    sub = row.row()
    sub.enabled = online and not problem
    sub.operator(op_id, text="Repair" if ready else "Install engine",
                 icon="FILE_REFRESH" if ready else "IMPORT").action = "REPAIR" if ready else "INSTALL"
    if ready or Path(lay.marker).is_file():
        row.operator(op_id, text="Uninstall", icon="TRASH").action = "UNINSTALL"
    if not online:
        box.label(text=online_hint("install the engine"), icon="INFO")
    if status_text():
        box.label(text=status_text(), icon="ERROR" if _install.failed else "INFO")
