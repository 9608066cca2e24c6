"""Install dependencies (preferences button): refused while Blender's online access is off; with it on, pip
installs into the add-on's user folder (here from a local wheel, no network), logs, and the engine's environment
then imports what was installed; a failing install reports pip's error."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed")

SCRIPT = r"""
import json, os, subprocess, sys
ARGS = json.loads(sys.argv[1])
os.environ["BLENDER_USER_RESOURCES"] = ARGS["user"]
import bpy, addon_utils
REPORT = {}
bpy.ops.wm.read_factory_settings(use_empty=True)
addon_utils.enable("dreamsmith", default_set=True)
from dreamsmith.addon import deps
from dreamsmith.addon.preferences import engine_env, get_preferences

def call(**kw):
    try:
        return str(sorted(bpy.ops.dreamsmith.install_dependencies(**kw)))
    except RuntimeError as exc:
        return "RuntimeError: " + str(exc)

bpy.context.preferences.system.use_online_access = False
REPORT["offline"] = call(packages_json=json.dumps([ARGS["wheel"]]), pip_args_json='["--no-index"]')
bpy.context.preferences.system.use_online_access = True
REPORT["ok"] = call(packages_json=json.dumps([ARGS["wheel"]]), pip_args_json='["--no-index"]')
target = deps.deps_dir()
REPORT["under_user"] = str(target).startswith(ARGS["user"])
REPORT["installed"] = (target / "dreamsmith_dummy_dep" / "__init__.py").is_file()
log = target.parent / deps.LOG_NAME
REPORT["log"] = log.is_file() and "Successfully installed" in log.read_text()
env = engine_env(get_preferences())
proc = subprocess.run([sys.executable, "-c", "import dreamsmith_dummy_dep as d; print(d.VALUE)"], env=env,
                      capture_output=True, text=True)
REPORT["engine_sees_it"] = proc.stdout.strip()
REPORT["blender_path_unchanged"] = str(target) not in sys.path
REPORT["fails"] = call(packages_json='["dreamsmith-no-such-package-xyz"]', pip_args_json='["--no-index"]')
REPORT["idle"] = not deps.installing()
addon_utils.disable("dreamsmith", default_set=True)
REPORT["timer"] = bpy.app.timers.is_registered(deps.install_timer)
print("REPORT " + json.dumps(REPORT))
"""


def _dummy_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, written here (pip installs it with --no-index)."""
    path = folder / "dreamsmith_dummy_dep-1.0-py3-none-any.whl"
    files = {
        "dreamsmith_dummy_dep/__init__.py": "VALUE = 42\n",
        "dreamsmith_dummy_dep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: dreamsmith-dummy-dep\n"
                                                      "Version: 1.0\n",
        "dreamsmith_dummy_dep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: dreamsmith-tests\n"
                                                   "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "dreamsmith_dummy_dep-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("dreamsmith_dummy_dep-1.0.dist-info/RECORD", record)
    return path


def test_install_dependencies_respects_online_access_installs_logs_and_reports_failure(tmp_path):
    args = {"user": str(tmp_path / "user"), "wheel": str(_dummy_wheel(tmp_path))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PIP_NO_INDEX="1"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(lines[-1][len("REPORT "):])
    assert rep["offline"].startswith("RuntimeError") and "Allow Online Access" in rep["offline"]
    assert rep["ok"] == "['FINISHED']" and rep["under_user"] and rep["installed"] and rep["log"]
    assert rep["engine_sees_it"] == "42" and rep["blender_path_unchanged"]
    assert rep["fails"].startswith("RuntimeError: Error: Installing failed: ERROR:"), rep["fails"]
    assert "full log:" in rep["fails"] and rep["idle"] and not rep["timer"]
