"""What the rest of the add-on reads about where and how the engine runs: the preferences (or their defaults), the
Python that runs the engine and its environment, online access, and the add-on's user folders. It imports no other
add-on module that could import it back (the bottom of the add-on's import graph, with :mod:`.job` and
:mod:`.engine_install`)."""

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import bpy

from ..protocol import DEPENDENCIES
from .engine_install import engine_python
from .job import prepend_python_path

#: The add-on's module name: "dreamsmith" as a plain add-on, "bl_ext.<repo>.dreamsmith" as an extension.
ADDON_ID = __package__.rpartition(".")[0]

DEFAULTS = SimpleNamespace(python_path="", coarse_model="", fine_model="", allow_downloads=True, device="auto",
                           cache_dir="", states_limit_gb=2.0, time_limit_min=360.0)


def get_preferences(context=None):
    """The add-on's preferences, or the defaults when it was registered without being enabled (scripts)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    prefs = getattr(addon, "preferences", None)
    return prefs if prefs is not None else DEFAULTS


def interpreter(prefs) -> str:
    """The Python that runs the worker: the "Python" preference ("use my own Python"), else the installed engine
    environment's, else Blender's own (right when it already has the packages, as with bpy as a module). Cheap
    (file checks only): draw code may call it."""
    if prefs.python_path:
        return bpy.path.abspath(prefs.python_path)
    return engine_python() or sys.executable


def engine_env(prefs) -> dict[str, str]:
    """The environment of engine processes: this process's, with any extra package folders on PYTHONPATH (none
    today: every interpreter that runs the engine brings its own packages)."""
    return prepend_python_path(dict(os.environ), engine_paths(prefs))


def online_hint(action: str) -> str:
    """How to get online access to ``action`` ("install the engine"): Blender started with ``--offline-mode`` needs
    a restart without it; otherwise the preference (Preferences > System > Network)."""
    if getattr(bpy.app, "online_access_override", False) and not getattr(bpy.app, "online_access", False):
        return f"Blender was started with --offline-mode: restart it without that option to {action}."
    return f"Allow Online Access (Preferences > System > Network) to {action}."


def online_access(prefs=None) -> bool:
    """Whether models may be downloaded: Blender's "Allow Online Access" (False before 4.2) and the preference."""
    allowed = bool(getattr(bpy.app, "online_access", False))
    return allowed and bool(getattr(prefs, "allow_downloads", True))


@functools.cache
def blender_python_ready() -> bool:
    """Whether Blender's own Python already has every engine package (as with bpy as a module): then nothing
    needs installing. Looked up once, without importing anything."""
    return all(importlib.util.find_spec(name) is not None for name, _ in DEPENDENCIES)


def deps_dir(create: bool = False) -> Path:
    """The extension's user folder's ``site-packages``, where earlier versions installed packages (Uninstall
    removes it); its parent is the user folder that :func:`states_dir` uses."""
    if ADDON_ID.startswith("bl_ext.") and hasattr(bpy.utils, "extension_path_user"):
        return Path(bpy.utils.extension_path_user(ADDON_ID, path="site-packages", create=create))
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
    """Folders the worker needs on ``PYTHONPATH`` besides the extension: none, since every interpreter that runs
    the engine (the engine environment's, the user's, Blender's own) brings its packages."""
    return []
