"""The step loop and the optimiser every stage uses."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..runtime.errors import NumericalError
from ..runtime.events import StageReporter


def adam(groups: list[dict]) -> torch.optim.Adam:
    """Adam over parameter groups (``{"params": [...], "lr": ...}``) with instant-ngp's betas and epsilon."""
    return torch.optim.Adam([g for g in groups if g["params"]], betas=(0.9, 0.99), eps=1e-15)


def run_steps(steps: int, optimizer: torch.optim.Optimizer, loss_fn: Callable[[int], Tensor],
              reporter: StageReporter, diverged: str, preview_every: int = 0,
              preview_fn: Callable[[], np.ndarray] | None = None) -> None:
    """Run ``steps`` optimisation steps of ``loss_fn(step)`` (steps count from 1).

    Args:
        steps: Number of steps.
        optimizer: Steps the parameters after each backward pass.
        loss_fn: The scalar loss of a step.
        reporter: Progress and cancellation; gets each step's loss and, every ``preview_every`` steps (and at the
            last), ``preview_fn()``.
        diverged: The error message when the loss is not finite (what to change).
        preview_every: Steps between previews (0: none).
        preview_fn: Optional ``() -> uint8 image`` of the current state.
    """
    for step in range(1, steps + 1):
        loss = loss_fn(step)
        value = loss.item()
        if not math.isfinite(value):
            raise NumericalError(diverged)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        preview = None
        if preview_fn is not None and preview_every and (step % preview_every == 0 or step == steps):
            preview = preview_fn()
        reporter.step(step, value, preview=preview)
