"""Running `forgather train` in the background and watching it: its output line by line (no sleep-polling),
and its rank processes found as descendants of the process the test started (never by name)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


class Training:
    """A background `forgather train` whose merged output is read by a thread into a queue."""

    def __init__(self, project: Path, *args: str, nproc: int = 1, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forgather.cli", "train", "--no-accelerator", "--nproc-per-node", str(nproc), *args],
            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """Block until an output line matches `pattern`; AssertionError with the output so far if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matched {pattern!r} in {timeout:.0f}s:\n" + self.output[-3000:]) from None
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait()}) before {pattern!r}:\n" + self.output[-3000:])
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self, timeout: float = 180.0) -> int:
        """Wait for exit, collecting the rest of the output; the exit status."""
        status = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)
        return status

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def ranks(self) -> list[psutil.Process]:
        """The rank processes under this run (descendants running forgather.run)."""
        found = []
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "forgather.run" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                continue
        return found
