"""Build (once, cached) and load the C++ CPU kernels in ``kernels/csrc`` with torch's extension builder.

The extension is compiled on first use, or ahead of time with ``python -m dreamsmith.kernels.cpu_build`` (``make``
does it after installing), into ``$DREAMSMITH_KERNEL_CACHE`` or ``~/.cache/dreamsmith/kernels/<torch version>``;
later runs load the cached library in milliseconds (torch rebuilds it when a source changes). Building needs a C++
compiler and the ``ninja`` package; without them, or with ``DREAMSMITH_KERNELS=reference``, :func:`cpu_ops`
returns None and every kernel runs its pure-PyTorch reference (with one warning saying why).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import torch

from .backends import force_reference, warn_fallback_once

SOURCES = ("bindings.cpp", "hashgrid_cpu.cpp", "march_cpu.cpp", "raster_cpu.cpp")
_NAME = "dreamsmith_cpu_kernels"
_STALE_LOCK_S = 600.0
_lock = threading.Lock()
_ops = None
_error: str | None = None


def cache_dir() -> Path:
    """Where the compiled library lives."""
    root = os.environ.get("DREAMSMITH_KERNEL_CACHE") or Path.home() / ".cache" / "dreamsmith" / "kernels"
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / tag


def _build(verbose: bool = False):
    from torch.utils.cpp_extension import load

    src = Path(__file__).resolve().parent / "csrc"
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    lock = out / "lock"
    # torch waits forever on the lock file of a build that was killed; no build takes 10 minutes.
    if lock.exists() and time.time() - lock.stat().st_mtime > _STALE_LOCK_S:
        lock.unlink(missing_ok=True)
    attempts = compiler_flags()
    for k, (cflags, ldflags) in enumerate(attempts):
        try:
            return load(name=_NAME, sources=[str(src / s) for s in SOURCES], build_directory=str(out),
                        extra_cflags=cflags, extra_ldflags=ldflags, verbose=verbose)
        except Exception:
            if k == len(attempts) - 1:
                raise


def compiler_flags(platform: str | None = None) -> list[tuple[list[str], list[str]]]:
    """The (compile, link) flags to try in order on ``platform`` (``sys.platform``): with OpenMP where GCC has it,
    then without (Apple clang has no ``-fopenmp``; the kernels parallelise with ``at::parallel_for``, which works
    either way); MSVC's spelling on Windows. Exact float arithmetic (no contraction) in every case."""
    platform = platform or sys.platform
    if platform == "win32":
        return [(["/O2", "/fp:precise"], [])]
    portable = (["-O3", "-ffp-contract=off"], [])
    if platform == "darwin":
        return [portable]
    return [(["-O3", "-fopenmp", "-ffp-contract=off"], ["-fopenmp"]), portable]


def cpu_ops():
    """The compiled CPU kernels module, or None (forced references, or it cannot be built: see :func:`reason`)."""
    global _ops, _error
    if force_reference():
        return None
    if _ops is None and _error is None:
        with _lock:
            if _ops is None and _error is None:
                try:
                    _ops = _build()
                except Exception as exc:  # no compiler, no ninja, a failed build: run the references instead
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    _error = f"the C++ CPU kernels could not be built ({type(exc).__name__}: {first})"
    return _ops


def cpu_ops_for(kernel: str, *tensors: torch.Tensor, dtypes=(torch.float32, torch.float64)):
    """The compiled kernels for one call of ``kernel`` on ``tensors``, or None for the reference.

    None when the references are forced, a tensor is not on the CPU, a floating-point tensor's dtype is not in
    ``dtypes``, or the kernels cannot be built (then warned once per ``kernel``, with :func:`reason`).
    """
    if force_reference() or not all(t.device.type == "cpu" for t in tensors):
        return None
    if not all(t.dtype in dtypes for t in tensors if t.is_floating_point()):
        return None
    ops = cpu_ops()
    if ops is None:
        warn_fallback_once(kernel, reason())
    return ops


def reason() -> str:
    """Why :func:`cpu_ops` is None (empty when it is not)."""
    if force_reference():
        return "DREAMSMITH_KERNELS=reference"
    return "" if cpu_ops() is not None else (_error or "not built")


def main() -> int:
    """Build the kernels now and say where they are (exit 1 when they cannot be built)."""
    try:
        _build(verbose="-v" in sys.argv)
    except Exception as exc:
        print(f"dreamsmith: the C++ CPU kernels could not be built; the PyTorch references will run. ({exc})",
              file=sys.stderr)
        return 1
    print(f"dreamsmith: C++ CPU kernels ready in {cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
