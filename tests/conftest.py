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


def _validator_missing() -> str:
    """Why the Khronos glTF validator cannot run here ("" when it can)."""
    if shutil.which("node") is None or not (REPO / "node_modules" / "gltf-validator").is_dir():
        return "node or the gltf-validator npm package is not installed (make test installs it when npm is there)"
    return ""


@pytest.fixture(scope="session")
def gltf_validate():
    """A function ``path -> report dict`` running the npm ``gltf-validator``; skips (the validator's own tests)
    when node or it is missing."""
    if _validator_missing():
        pytest.skip(_validator_missing())
    return _run_validator


@pytest.fixture(scope="session")
def validate_if_present():
    """``path -> report dict | None``: the Khronos validator's report when it can run, else None with one warning;
    a job's test runs its job and its own checks either way (never skipped for want of node)."""
    if _validator_missing():
        import warnings

        warnings.warn(f"GLBs not checked by the Khronos validator: {_validator_missing()}", stacklevel=2)
        return lambda path: None
    return _run_validator


def _run_validator(path: Path) -> dict:
    """The Khronos validator's report of ``path``."""
    proc = subprocess.run([shutil.which("node"), str(ASSETS / "validate_gltf.mjs"), str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


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


#: Test files whose tests are end-to-end jobs of a minute or more (the ``slow`` tier; ``make test-fast`` leaves them
#: out). Measured with ``pytest --durations`` on this project's 2-core CPU.
SLOW_FILES = {"test_image_to_3d_toy.py", "test_toy_prior.py", "test_reconstruct_e2e.py", "test_presets.py",
              "test_batch_ray.py", "test_golden.py", "test_image_to_3d_engine.py", "test_worker.py"}


#: Each long test's measured seconds (``scripts/test_durations.py`` writes it from a ``--durations=0`` run).
DURATIONS: dict[str, float] = json.loads((REPO / "tests" / "durations.json").read_text())


def pytest_collection_modifyitems(config, items):
    """Tiers by marker: ``blender`` for everything under ``tests/addon`` and the core tests that import into
    Blender, ``gpu`` for the CUDA-only tests, ``slow`` for the end-to-end files of :data:`SLOW_FILES`.

    Then the long tests of :data:`DURATIONS` go first, longest first, the others keep their order: workers that
    take the next test as they finish (``make test``: ``--dist load``) share the long runs evenly and the short
    tests fill the ends (longest-first list scheduling). On this 2-core machine the tests' sum over two was 1036 s
    against 1195 s for the collection's order (docs/benchmarks.md)."""
    for item in items:
        path = Path(str(item.fspath))
        if "addon" in path.parts or "blender_import" in getattr(item, "fixturenames", ()) \
                or "blender_reports" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.blender)
        if path.name == "test_cuda_parity.py" or "cuda" in item.name:
            item.add_marker(pytest.mark.gpu)
        if path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: -DURATIONS.get(item.nodeid, 0.0))  # stable: the short ones keep their order
