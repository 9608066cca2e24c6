"""The kernels' own errors (the kernels import nothing from the engine; the engine translates where a user can act).
"""

from __future__ import annotations


class KernelError(Exception):
    """Base of the kernels' errors."""


class KernelInputError(KernelError, ValueError):
    """Tensors a kernel cannot take: wrong shape, dtype or device."""


class KernelUnavailable(KernelError, RuntimeError):
    """A fast path was asked for by name but cannot run here (not installed, no CUDA device)."""
