"""Device choice: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

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


def seed_job(seed: int, device: torch.device) -> torch.Generator:
    """Seed a job: torch's global generator and a fresh CPU generator for the job's own draws (returned).

    On the CPU it also switches torch to its deterministic algorithms (for the rest of the process: the engine's
    jobs run in their own process): with more than one thread, some of torch's accumulating kernels sum in a
    scheduling-dependent order otherwise, and the same seed would not give the same result bit for bit.
    """
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)
