"""Shared fixtures: the Khronos glTF validator and Blender's importers, each run in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets"


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_children():
    """A suite started in the background (``make test &``) inherits an ignored SIGINT, and so would the engines the
    Ctrl-C tests start and interrupt. Python's own handler here, as from a terminal: a child's exec resets a handled
    signal to its default, and the child then installs its own."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def gltf_validate():
    """A function ``path -> report dict`` running the npm ``gltf-validator``; skips when node or it is missing."""
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("node or the gltf-validator npm package is not installed (make test installs it)")

    def run(path: Path) -> dict:
        proc = subprocess.run([node, str(ASSETS / "validate_gltf.mjs"), str(path)], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.fixture(scope="session")
def blender_import():
    """A function ``paths -> [report]`` importing files with Blender's own importers (bpy in a subprocess)."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed")

    def run(*paths: Path) -> list[dict]:
        proc = subprocess.run([sys.executable, str(ASSETS / "blender_import_report.py"), *map(str, paths)],
                              capture_output=True, text=True, timeout=180)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
        assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
        return json.loads(lines[-1][len("REPORT "):])

    return run
