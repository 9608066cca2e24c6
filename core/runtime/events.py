"""Progress events and cancellation: how a running job talks to whoever started it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import Cancelled

if TYPE_CHECKING:  # the worker imports this module before it knows the engine's packages are there
    import numpy as np


@dataclass
class ProgressEvent:
    """One progress report from the pipeline.

    Attributes:
        stage: Stage name ("coarse", "mesh", "bake", "export", ...).
        step: Steps done in this stage (0..total).
        total: Steps in this stage.
        loss: Latest loss value, if the stage optimises something.
        seconds: Seconds since the stage started.
        preview: Optional preview image, uint8 ``[H, W, 3]``.
        message: Optional human-readable note.
    """

    stage: str
    step: int
    total: int
    loss: float | None = None
    seconds: float = 0.0
    preview: np.ndarray | None = field(default=None, repr=False)
    message: str = ""

    @property
    def eta(self) -> float | None:
        """Estimated seconds left in this stage, from the mean step time so far."""
        if self.step <= 0 or self.total <= 0:
            return None
        return self.seconds / self.step * max(self.total - self.step, 0)


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """A flag checked every step; ``check()`` raises :class:`Cancelled` once it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was requested."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("The job was cancelled; nothing was written.")


class StageReporter:
    """Helper for one stage: times steps, checks cancellation, throttles events."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback | None, cancel: CancelToken | None,
                 every: int = 1) -> None:
        self.stage, self.total, self.callback, self.cancel = stage, total, callback, cancel
        self.every = max(1, every)
        self.start = time.perf_counter()

    def step(self, step: int, loss: float | None = None, preview: np.ndarray | None = None,
             force: bool = False) -> None:
        """Report step ``step`` (1-based) and check for cancellation."""
        if self.cancel is not None:
            self.cancel.check()
        if self.callback is not None and (force or step % self.every == 0 or step == self.total or preview is not None):
            self.callback(ProgressEvent(self.stage, step, self.total, loss, time.perf_counter() - self.start, preview))


class StageTimes(dict[str, float]):
    """Seconds per stage of a job (a result's ``seconds``): ``with times.stage("coarse"): ...`` adds the block's
    wall time to its stage, so a stage timed in parts (loading, then the prompt's embeddings) sums them."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0
