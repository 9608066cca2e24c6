"""House rule 1: the engine (core/, kernels/) and the shared evaluation code (eval/), every module of every package
under them, import without bpy."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import importlib, pkgutil, sys
sys.modules["bpy"] = None  # any `import bpy` now raises ImportError
import dreamsmith
names = []
for pkg in ("dreamsmith.core", "dreamsmith.kernels", "dreamsmith.eval"):  # every package under them, walked
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, prefix=pkg + "."):
        names.append(info.name)
for name in names:
    importlib.import_module(name)
assert "bpy" not in {m for m, v in sys.modules.items() if v is not None}
print(len(names))
"""


def test_engine_imports_without_bpy():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 60


def test_package_import_is_light():
    proc = subprocess.run([sys.executable, "-c", "import sys, dreamsmith; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
