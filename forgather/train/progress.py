"""How far the run is: step/total, elapsed, ETA, s/step and tokens/s, from the host clock alone.

The figures are read without a device sync: on a GPU the host runs at most a few steps ahead of the device
(the launch queue and the allocator bound it), so rates over a window of several steps are right, and the
first window (which includes compilation and the first data) shows up as such. Lines come at steps 1, 2, 4,
8, ... after the start, every PROGRESS_EVERY_S seconds, and at the last step, independent of log_every (log
steps carry the same figures on their metrics line). Elapsed, s/step and ETA include evaluation and
checkpoint time: they are what the wall clock will say; tps on log lines leaves those out.
"""

from __future__ import annotations

import time
from typing import Callable

from ..console import duration

PROGRESS_EVERY_S = 30.0


class Progress:
    """Progress figures over the window since the previous report (or the start)."""

    def __init__(self, start_step: int, total_steps: int, tokens_per_step: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.start_step, self.total_steps, self.tokens_per_step = start_step, total_steps, tokens_per_step
        self.clock = clock
        self.started = self.last_time = clock()
        self.last_step = start_step

    def due(self, step: int) -> bool:
        """Whether `step` gets a progress line: early steps on a doubling schedule, then by time, and the last."""
        done = step - self.start_step
        doubling = done > 0 and done & (done - 1) == 0
        return doubling or step >= self.total_steps or self.clock() - self.last_time >= PROGRESS_EVERY_S

    def report(self, step: int, tokens: bool = True) -> list[str]:
        """`step N/T` and the rate figures since the previous report (tokens/s unless not `tokens`); starts a new
        window."""
        now = self.clock()
        steps = max(step - self.last_step, 1)
        per_step = (now - self.last_time) / steps
        tokens_per_s = steps * self.tokens_per_step / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        rate = [f"{tokens_per_s:,.0f} tok/s"] if tokens else []
        return [f"step {step}/{self.total_steps}", f"{per_step:.3g} s/step", *rate,
                f"elapsed {duration(now - self.started)}",
                f"ETA {duration(per_step * max(self.total_steps - step, 0))}"]
