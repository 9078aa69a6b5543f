"""Reading a child process's output as it comes, so that a test waits for the line proving the child is
ready instead of sleeping and hoping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import IO


class LineReader:
    """Collects the lines of a text pipe on a daemon thread; `wait_for` blocks until one matches."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, what: str, matches: Callable[[str], bool], timeout: float = 30.0) -> str:
        """The first line (seen so far or to come) for which `matches` holds; fails naming `what` when the
        pipe closes or `timeout` passes without one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if matches(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    ended = "the stream ended" if self._closed else f"timed out after {timeout}s"
                    raise AssertionError(f"{ended} waiting for {what}; lines so far: {self.lines!r}")
                self._changed.wait(left)

    def close(self, timeout: float = 10.0) -> list[str]:
        """Every line, once the writer has closed the pipe (call after the process ended)."""
        self._thread.join(timeout)
        with self._changed:
            return list(self.lines)
