"""Regenerate ``engine.lock``: the pinned packages of the engine environment that the extension installs.

    python scripts/lock_engine.py [--check]

Resolves the engine's dependencies (``protocol.DEPENDENCIES``, the same list as pyproject's ``dependencies``) for
every platform (``uv pip compile --universal``) at Python 3.11, pinned to the versions in ``constraints.txt``.
The packages that only come with a particular torch build (CUDA libraries, triton) are left out: uv's
``--torch-backend auto`` picks the torch build for each machine at install time, and torch brings its own.
Needs uv (``pip install -c constraints.txt uv``, part of the dev extra) and PyPI. ``--check`` only says whether
the file is current (exit code 1 when not).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Packages that belong to one torch build (CUDA wheels, triton): torch's own metadata pulls the right ones.
TORCH_BUILD_PREFIXES = ("nvidia-", "cuda-", "triton", "pytorch-triton")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"dreamsmith_lock_{name.replace('/', '_')}", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _setup():
    return _load("addon/engine_setup")


def drop_torch_build_packages(text: str) -> str:
    """Remove the entries (a pin and its ``# via`` lines) of packages that depend on the torch build."""
    out: list[str] = []
    keep = True
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = not line.lower().startswith(TORCH_BUILD_PREFIXES)
        elif line.startswith("#") and not line.startswith("    "):
            keep = True
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"


def compile_lock() -> str:
    """The lock file's text, resolved now by uv."""
    setup = _setup()
    requirements = [req for _, req in _load("protocol").DEPENDENCIES]
    with tempfile.TemporaryDirectory() as tmp:
        req_in = Path(tmp) / "engine.in"
        req_in.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "uv", "pip", "compile", "--no-config", "--universal", "--python-version",
               setup.PYTHON_VERSION, "--no-header", "--annotation-style", "line", "-c", str(ROOT / "constraints.txt"),
               str(req_in)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"uv pip compile failed:\n{proc.stderr}")
    body = proc.stdout.replace(str(req_in), "engine.in").replace(str(ROOT / "constraints.txt"), "constraints.txt")
    header = ("# The engine environment's packages, for every platform (Python "
              f"{setup.PYTHON_VERSION}).\n# Made by scripts/lock_engine.py from protocol.DEPENDENCIES and "
              "constraints.txt; do not edit.\n# The torch build (CUDA, MPS, CPU) and its CUDA libraries are "
              "chosen at install time by uv's --torch-backend auto.\n")
    return header + drop_torch_build_packages(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that engine.lock is current")
    args = parser.parse_args(argv)
    target = ROOT / _setup().LOCK_NAME
    text = compile_lock()
    if args.check:
        current = target.is_file() and target.read_text(encoding="utf-8") == text
        print(f"{target.name} is {'current' if current else 'out of date: run scripts/lock_engine.py'}")
        return 0 if current else 1
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({sum(1 for ln in text.splitlines() if '==' in ln and not ln.startswith('#'))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
