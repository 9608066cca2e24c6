"""Device choice: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import ResourceError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name`` (auto | cpu | cuda | cuda:N | mps); a missing device is a ResourceError."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ResourceError("CUDA was requested but no CUDA GPU is available; use --device cpu or --device auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ResourceError("Apple MPS was requested but is not available; use --device cpu or --device auto.")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ResourceError(f"Unknown device {name!r}; use auto, cpu, cuda or mps.")
    return torch.device(name)


@contextmanager
def seeded_job(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """Run a job's body with ``seed``: torch's global generator is seeded, and the body gets a fresh CPU
    generator for its own draws.

    On the CPU the body also runs with torch's deterministic algorithms (restored afterwards). With more than one
    thread, the backward of tensor indexing (``x[idx]``, an accumulating ``index_put_``) adds into shared slots
    with atomic adds in a scheduling-dependent order, so that two runs with the same seed would differ; the
    deterministic kernels cost no measurable time here.
    """
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


#: The progress stage of the C++ CPU kernels' build, or of the wait for another process's build.
KERNELS_STAGE = "kernels"


def prepare_kernels(callback=None, cancel=None) -> None:
    """Load the C++ CPU kernels before a job's work, so that a build (or the wait for another process's build) is
    a stage of its own: ``callback`` gets :data:`KERNELS_STAGE` events with the message (seconds waited of the
    limit), ``cancel`` stops the wait. Loading a built library is a file import; without the kernels the references
    run, as always."""
    from ...kernels.cpu_build import cpu_ops
    from .events import ProgressEvent

    def report(message: str, waited: float, limit: float) -> None:
        if cancel is not None:
            cancel.check()
        if callback is not None:
            callback(ProgressEvent(KERNELS_STAGE, int(waited), int(limit), seconds=waited, message=message))

    cpu_ops(report)
