"""Which implementation each kernel uses: the one place that decides.

``DREAMSMITH_KERNELS=reference`` forces the pure-PyTorch references everywhere (tests,
side-by-side benchmarks). Otherwise a kernel uses its fast path when that path is importable
and supports the tensors' device, and falls back to the reference with one warning.
"""

from __future__ import annotations

import os
import warnings

_warned: set[str] = set()


def force_reference() -> bool:
    """True when ``DREAMSMITH_KERNELS=reference`` is set."""
    return os.environ.get("DREAMSMITH_KERNELS", "").strip().lower() == "reference"


def warn_fallback_once(kernel: str, reason: str) -> None:
    """Warn, once per kernel and process, that the reference implementation runs instead of a fast path."""
    if kernel in _warned:
        return
    _warned.add(kernel)
    warnings.warn(f"dreamsmith: {kernel} uses the pure-PyTorch reference ({reason}).", RuntimeWarning, stacklevel=3)


def hash_grid_backend(requested: str = "auto") -> str:
    """The hash grid's implementation for a field: ``"tcnn"`` (tiny-cuda-nn, CUDA) or ``"reference"`` (PyTorch,
    which itself runs the C++ CPU kernel when it is built, see :func:`.cpu_build.cpu_ops_for`).

    ``requested``: ``"auto"`` (tiny-cuda-nn when importable with a CUDA device, else the reference, warned once when a
    GPU is there), ``"reference"`` or ``"tcnn"`` (returned as asked; building it raises
    :class:`~.errors.KernelUnavailable` when it cannot run).
    """
    from . import hashgrid

    if requested == "reference" or (requested == "auto" and force_reference()):
        return "reference"
    if requested == "tcnn" or hashgrid.available():
        return "tcnn"
    import torch

    if torch.cuda.is_available():
        warn_fallback_once("hash_encode", hashgrid.unavailable_reason())
    return "reference"
