"""Add-on preferences: which Python runs the engine, which models, which device, where caches go."""

import json
import subprocess
import threading

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from ..protocol import DEPENDENCIES, DEVICES
from .settings import ADDON_ID, engine_env, get_preferences, interpreter

DEVICE_ITEMS = DEVICES

#: Modules the engine needs, as (import name, pip requirement).
REQUIREMENTS = DEPENDENCIES
CHECK_CODE = "; ".join((
    "import importlib, importlib.util, json, sys",
    "names = json.loads(sys.argv[1])",
    "missing = [n for n in names if importlib.util.find_spec(n) is None]",
    "torch = None if 'torch' in missing else importlib.import_module('torch')",
    "info = {'python': sys.version.split()[0], 'missing': missing, 'torch': getattr(torch, '__version__', None), "
    "'cuda': bool(torch is not None and torch.cuda.is_available())}",
    "print('DREAMSMITH ' + json.dumps(info))",
))




class DreamsmithPreferences(bpy.types.AddonPreferences):
    """Where and how the engine runs."""

    bl_idname = ADDON_ID

    python_path: StringProperty(
        name="Python", subtype="FILE_PATH", default="",
        description="Use my own Python: an interpreter with torch and diffusers installed that runs the engine; "
                    "empty: the engine environment (Install engine below), else Blender's own")
    coarse_model: StringProperty(
        name="Coarse model", default="",
        description="Coarse-stage prior: Hugging Face id or local diffusers folder; empty: the preset's")
    fine_model: StringProperty(
        name="Fine model", default="",
        description="Mesh-stage prior: Hugging Face id or local diffusers folder; empty: the preset's")
    allow_downloads: BoolProperty(
        name="Download models", default=True,
        description="Download models that are not on this computer yet (only when Blender's Allow Online Access "
                    "is on)")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto", description="Where the engine computes")
    cache_dir: StringProperty(
        name="Cache folder", subtype="DIR_PATH", default="",
        description="Hugging Face model cache and temporary job files; empty: the standard cache and Blender's "
                    "temporary folder")
    states_limit_gb: FloatProperty(
        name="Saved states limit (GB)", default=2.0, min=0.1, soft_max=100.0,
        description="Generated objects keep their engine state for later edits; the oldest states are deleted "
                    "beyond this size (their objects are then edited from the mesh)")
    time_limit_min: FloatProperty(
        name="Script job time limit (min)", default=360.0, min=0.0,
        description="A job run from a script (blender --background) is ended after this long; 0: no limit")

    def draw(self, context):
        """The preferences page."""
        layout = self.layout
        layout.prop(self, "python_path")
        layout.prop(self, "coarse_model")
        layout.prop(self, "fine_model")
        layout.prop(self, "allow_downloads")
        layout.prop(self, "device")
        layout.prop(self, "cache_dir")
        row = layout.row()
        row.prop(self, "states_limit_gb")
        row.operator(DREAMSMITH_OT_clear_states.bl_idname, icon="TRASH")
        layout.prop(self, "time_limit_min")
        row = layout.row()
        row.operator(DREAMSMITH_OT_check_setup.bl_idname, icon="CHECKMARK")
        from .deps import draw_engine

        draw_engine(layout, self)  # the engine environment: install, repair, uninstall, progress
        if not getattr(bpy.app, "online_access", False):
            layout.label(text="Online access is off: only models already on this computer can be used.",
                         icon="INFO")
        from .models import draw_models

        draw_models(layout, context)


class DREAMSMITH_OT_clear_states(bpy.types.Operator):
    """Delete the saved engine states of generated objects (they are then edited from their mesh)"""

    bl_idname = "dreamsmith.clear_states"
    bl_label = "Clear saved states"

    def execute(self, context):
        """Delete every saved state and say how much space that freed."""
        from .states import clear_states

        files, size = clear_states(get_preferences(context))
        self.report({"INFO"}, f"Deleted {files} saved state(s), {size / 1024**2:.0f} MB.")
        return {"FINISHED"}


def check_setup(python: str, env: dict[str, str], own_python: bool) -> tuple[bool, str]:
    """Run ``python`` once and say whether it can run the engine: ``(ok, message)`` (takes a few seconds: it
    imports torch). Safe to call from a thread: it touches no Blender data."""
    names = [name for name, _ in REQUIREMENTS]
    try:
        proc = subprocess.run([python, "-c", CHECK_CODE, json.dumps(names)], capture_output=True, text=True,
                              timeout=180, env=env, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Cannot run {python!r} ({exc}); set the Python path in the preferences."
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("DREAMSMITH ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"{python!r} failed the check ({tail}); is it a Python 3.10+ interpreter?"
    info = json.loads(lines[-1][len("DREAMSMITH "):])
    if info["missing"]:
        pip = " ".join(f'"{p}"' for n, p in REQUIREMENTS if n in info["missing"])
        how = ("use Install engine in the add-on preferences" if not own_python
               else f"install them with: \"{python}\" -m pip install {pip}")
        return False, f"Missing in {python!r}: {', '.join(info['missing'])}; {how}."
    gpu = "CUDA available" if info.get("cuda") else "no CUDA GPU (CPU or MPS)"
    return True, f"Ready: Python {info['python']}, torch {info.get('torch')}, {gpu}."


class DREAMSMITH_OT_check_setup(bpy.types.Operator):
    """Check that the chosen Python can run the engine (torch, diffusers and the rest)"""

    bl_idname = "dreamsmith.check_setup"
    bl_label = "Check setup"

    def _args(self, context) -> tuple[str, dict[str, str], bool]:
        prefs = get_preferences(context)
        return interpreter(prefs), engine_env(prefs), bool(prefs.python_path)

    def _report(self, ok: bool, message: str) -> set[str]:
        self.report({"INFO"} if ok else {"ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}

    def execute(self, context):
        """Run the check and wait for it (scripts)."""
        return self._report(*check_setup(*self._args(context)))

    def invoke(self, context, event):
        """In the UI: run the check in a thread, so Blender stays responsive; :meth:`modal` reports it."""
        if bpy.app.background or context.window is None:
            return self.execute(context)
        self._result: list[tuple[bool, str]] = []
        args = self._args(context)
        self._thread = threading.Thread(target=lambda: self._result.append(check_setup(*args)), daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.25, window=context.window)
        context.window_manager.modal_handler_add(self)
        self.report({"INFO"}, "Checking the engine's Python...")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        """Report once the thread has finished."""
        if event.type != "TIMER" or self._thread.is_alive():
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._report(*(self._result[0] if self._result else (False, "The check stopped unexpectedly.")))
