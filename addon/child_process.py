"""Following a child process without blocking Blender: a reader thread moves its output lines into an
:class:`Inbox`, and the caller (a ``bpy.app.timers`` callback on the main thread) drains it; a caller that may block
(a background script, a test driving the timer itself) waits for the next line instead of polling. No bpy here.

The process is started from an argument list, never a shell string; its stdin is closed at once (or gets one piece
of text first). :func:`end_process` (used by :meth:`LineProcess.stop` and the worker's cancel) terminates a process,
then kills it after a grace period.
"""

from __future__ import annotations

import queue
import subprocess
import threading


class Inbox(queue.Queue):
    """The queue a reader thread fills: drained without blocking, or waited on until something arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False  # the reader is done: nothing more will arrive

    def drain(self) -> list:
        """What arrived since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """The reader's last word: wake every waiter, nothing more will arrive."""
        with self.not_empty:
            self.closed = True
            self.not_empty.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block until something is waiting to be drained or the reader is done (True), or ``timeout`` seconds
        passed (False)."""
        with self.not_empty:
            return self.not_empty.wait_for(lambda: self._qsize() > 0 or self.closed, timeout)


def end_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate ``proc`` if it still runs, kill it when it has not ended after ``grace`` seconds, and wait."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LineProcess:
    """A running child process whose stdout lines (stderr merged in) arrive in :meth:`drain`.

    Args:
        args: The argument list (the program first).
        env: Its environment.
        stdin_text: Written to its stdin before closing it (e.g. a secret that must not be in ``args``).
        cwd: Its working folder (None: this process's).
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, stdin_text: str = "",
                 cwd: str | None = None) -> None:
        self.args = list(args)
        self.lines = Inbox()
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            encoding="utf-8", errors="replace", env=env, cwd=cwd,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        try:
            if stdin_text:
                self.proc.stdin.write(stdin_text)
            self.proc.stdin.close()
        except OSError:  # it died at once; its exit code says why
            pass
        self.reader = threading.Thread(target=self._read, name="dreamsmith-process-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
            self.proc.stdout.close()
        finally:
            self.lines.close()

    def drain(self) -> list[str]:
        """The lines that arrived since the last call."""
        return self.lines.drain()

    def wait_for_output(self, timeout: float) -> bool:
        """Block until a line has arrived that :meth:`drain` has not returned, or the output has ended (True), or
        ``timeout`` seconds passed (False)."""
        return self.lines.wait(timeout)

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.proc.poll()

    def finish(self, timeout: float = 5.0) -> tuple[int, list[str]]:
        """Wait for the exit and the reader; returns ``(exit code, the last lines)``."""
        code = self.proc.wait()
        self.reader.join(timeout=timeout)
        return code, self.drain()

    def stop(self, grace: float = 5.0) -> None:
        """Terminate it (kill after ``grace`` seconds) and wait for the reader."""
        end_process(self.proc, grace)
        self.reader.join(timeout=grace)
