"""Waiting on processes without polling: for one the test did not start itself (a worker re-parented when its
parent died) the kernel says when it ends; a read that waits on a child's next line gets a deadline that kills the
child, so a child that never says it fails the test instead of hanging it."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def deadline(seconds: float, kill: Callable[[], object]) -> Iterator[None]:
    """Call ``kill`` (which ends the output being read) if the block is still running after ``seconds``."""
    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` ended within ``timeout`` seconds, as the kernel reports it (a pidfd on Linux, kqueue
    on macOS and the BSDs). A process already gone, or exited but not reaped (a zombie), has ended."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        try:
            return bool(select.select([fd], [], [], timeout)[0])
        finally:
            os.close(fd)
    kq = select.kqueue()
    try:
        exit_event = select.kevent(pid, select.KQ_FILTER_PROC, select.KQ_EV_ADD | select.KQ_EV_ONESHOT,
                                   select.KQ_NOTE_EXIT)
        try:
            return bool(kq.control([exit_event], 1, timeout))
        except ProcessLookupError:
            return True
    finally:
        kq.close()
