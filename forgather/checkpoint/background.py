"""Checkpoint writes on a background thread, one at a time, with their failures kept for the training loop.

The writes of a save are collective (every rank's file list meets on rank 0), so they run on a gloo
process group of their own: its traffic never interleaves with the training collectives on the default
group, whichever thread issues them. A second save waits for the first; a failure is kept and reported by
`failure()` (the trainer agrees on it across ranks and stops at the next step).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch.distributed as dist


class BackgroundWriter:
    """Runs one job at a time on a thread; `wait()` joins it; `failure()` is its one-line error, if any."""

    def __init__(self, world_size: int) -> None:
        # Created by every rank at the same point (new_group is collective).
        self.group = dist.new_group(backend="gloo") if world_size > 1 and dist.is_initialized() else None
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    def submit(self, job: Callable[[Any], None], background: bool = True) -> None:
        """Run job(group) after the previous one finished: on a thread, or here when not `background`."""
        self.wait()

        def run() -> None:
            try:
                job(self.group)
            except Exception as exc:  # noqa: BLE001 - kept and reported by the training loop
                self._error = " ".join(str(exc).split()) or type(exc).__name__

        if not background:
            job(self.group)  # errors propagate to the caller as they are
            return
        self._thread = threading.Thread(target=run, name="forgather-checkpoint", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the job in flight (if any) has finished (or `timeout` seconds passed)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def failure(self) -> str | None:
        """A background job's error (it stays: the run stops on it)."""
        return self._error
