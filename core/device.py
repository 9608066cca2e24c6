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
