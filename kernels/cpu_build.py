"""Build (once, cached) and load the C++ CPU kernels in ``kernels/csrc``.

Where the library lives: ``$DREAMSMITH_KERNEL_CACHE`` or ``~/.cache/dreamsmith/kernels``, in a folder named for the
torch and Python versions and a digest of the sources and compiler flags (:func:`cache_dir`). Two copies of the
package with other sources (an installed extension and a checkout) therefore never share, nor rebuild, each other's
library; copies with the same sources share one.

Loading a library that is already built takes no lock: the file is imported directly (milliseconds). Building
happens ahead of time (``python -m dreamsmith.kernels.cpu_build``: ``make``, the engine environment's install, the
batch workers' set-up) and, failing that, on first use. A build runs under an operating-system file lock
(``filelock``: ``flock`` / ``LockFileEx``), which the kernel releases when its holder dies, so a builder that was
killed never blocks the next one; it compiles in a private folder and renames the finished library into place, so
a half-built library is never loaded. A process that finds another one building waits for it, at most
:func:`wait_limit` seconds (``DREAMSMITH_KERNEL_WAIT_S``, default 300), reporting the wait through the ``report``
callback, and then runs the pure-PyTorch references instead.

Building needs a C++ compiler and the ``ninja`` package; without them, or with ``DREAMSMITH_KERNELS=reference``,
:func:`cpu_ops` returns None and every kernel runs its pure-PyTorch reference (with one warning saying why).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from .backends import force_reference, warn_fallback_once

SOURCES = ("bindings.cpp", "hashgrid_cpu.cpp", "march_cpu.cpp", "raster_cpu.cpp")
SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
_NAME = "dreamsmith_cpu_kernels"
_LIB_SUFFIX = ".pyd" if sys.platform == "win32" else ".so"  # what torch's builder writes
_LOCK_NAME = "build.lock"
_BUILD_PREFIX = "build-"
#: Seconds between two reports while another process builds.
POLL_S = 1.0
#: ``report(message, waited_s, limit_s)``: called while a build is waited for or runs; may raise to stop the wait.
Report = Callable[[str, float, float], None]
WAIT_MESSAGE = "waiting for another Dreamsmith process to finish building its kernels"
BUILD_MESSAGE = "building the C++ CPU kernels (once for this version; about a minute)"

_lock = threading.Lock()
_ops = None
_error: str | None = None


class BuildTimeout(RuntimeError):
    """Another process was still building the kernels when the wait ran out."""


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


def source_digest() -> str:
    """12 hex digits naming what the library is built from: the sources, the flags and the platform."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    h.update(repr((compiler_flags(), sys.platform)).encode())
    return h.hexdigest()[:12]


def cache_dir() -> Path:
    """The folder of this package's library: one per torch version, Python version and :func:`source_digest`."""
    root = os.environ.get("DREAMSMITH_KERNEL_CACHE") or Path.home() / ".cache" / "dreamsmith" / "kernels"
    tag = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"{tag}-{source_digest()}"


def library_path() -> Path:
    """Where the built library is (it may not exist yet)."""
    return cache_dir() / f"{_NAME}{_LIB_SUFFIX}"


def wait_limit() -> float:
    """Seconds to wait for another process's build (``DREAMSMITH_KERNEL_WAIT_S``, default 300)."""
    try:
        return max(0.0, float(os.environ.get("DREAMSMITH_KERNEL_WAIT_S", "300")))
    except ValueError:
        return 300.0


def _import(path: Path):
    """Import the built library at ``path`` (no lock, no compiler)."""
    spec = importlib.util.spec_from_file_location(_NAME, path)
    if spec is None or spec.loader is None:  # pragma: no cover - an extension module always has a loader
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(folder: Path, verbose: bool = False) -> Path:
    """Compile the sources in ``folder`` (private to this process) with torch's builder; returns the library."""
    from torch.utils.cpp_extension import load

    attempts = compiler_flags()
    for k, (cflags, ldflags) in enumerate(attempts):
        try:
            load(name=_NAME, sources=[str(SOURCE_DIR / s) for s in SOURCES], build_directory=str(folder),
                 extra_cflags=cflags, extra_ldflags=ldflags, verbose=verbose)
            break
        except Exception:
            if k == len(attempts) - 1:
                raise
    built = folder / f"{_NAME}{_LIB_SUFFIX}"
    if not built.is_file():
        raise FileNotFoundError(f"the build wrote no {built.name} in {folder}")
    return built


def _publish(built: Path, target: Path) -> None:
    """Put ``built`` at ``target`` in one rename (a copy under a private name first: never half a library)."""
    part = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    shutil.copy2(built, part)
    os.replace(part, target)


def _acquire(lock, report: Report | None, limit: float) -> None:
    """Take ``lock``, reporting the wait every :data:`POLL_S`; :class:`BuildTimeout` after ``limit`` seconds, or as
    soon as the library appears (then the lock is not needed: returns False)."""
    from filelock import Timeout

    start = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=min(POLL_S, max(limit - (time.monotonic() - start), 0.0)))
            return True
        except Timeout:
            pass
        if library_path().is_file():
            return False
        waited = time.monotonic() - start
        if report is not None:
            report(WAIT_MESSAGE, waited, limit)
        if waited >= limit:
            raise BuildTimeout(f"another Dreamsmith process was still building the kernels after {limit:.0f} s")


def build(report: Report | None = None, verbose: bool = False, limit: float | None = None):
    """The kernels module: imported directly when built, else built now (under the lock, see the module's doc).

    Raises what the build raised (no compiler, no ninja, a compile error), or :class:`BuildTimeout`; whatever
    ``report`` raises (a cancelled job) goes through.
    """
    from filelock import FileLock

    target = library_path()
    if target.is_file():
        return _import(target)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / _LOCK_NAME))
    if not _acquire(lock, report, wait_limit() if limit is None else limit):
        return _import(target)
    try:
        if target.is_file():  # built by the process we waited for
            return _import(target)
        for old in folder.glob(f"{_BUILD_PREFIX}*"):  # left by a builder that died: we hold the lock now
            shutil.rmtree(old, ignore_errors=True)
        if report is not None:
            report(BUILD_MESSAGE, 0.0, 0.0)
        work = folder / f"{_BUILD_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            _publish(_compile(work, verbose), target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return _import(target)
    finally:
        lock.release()


def cpu_ops(report: Report | None = None):
    """The compiled CPU kernels module, or None (forced references, or it cannot be had: see :func:`reason`).

    ``report``: see :func:`build`. The first call in a process decides and later calls return its answer, except
    when ``report`` raised (a cancelled job): that goes through and decides nothing.
    """
    global _ops, _error
    if force_reference():
        return None
    if _ops is None and _error is None:
        with _lock:
            if _ops is None and _error is None:
                stopped: list[BaseException] = []

                def relay(message: str, waited: float, limit: float) -> None:
                    try:
                        report(message, waited, limit)
                    except BaseException as exc:
                        stopped.append(exc)
                        raise

                try:
                    _ops = build(relay if report is not None else None)
                except Exception as exc:  # no compiler, no ninja, a failed build, a wait that ran out
                    if stopped:
                        raise
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
    """Build the kernels now (or find them built) and say where they are (exit 1 when they cannot be built)."""
    try:
        build(verbose="-v" in sys.argv)
    except Exception as exc:
        print(f"dreamsmith: the C++ CPU kernels could not be built; the PyTorch references will run. ({exc})",
              file=sys.stderr)
        return 1
    print(f"dreamsmith: C++ CPU kernels ready in {cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
