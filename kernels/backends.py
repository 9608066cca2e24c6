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
