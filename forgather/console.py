"""Startup lines: one per phase, printed as the phase starts, with the seconds since this process started.

A run spends its first seconds to minutes reading sources, training a tokenizer, packing the data cache,
building and compiling the model; each phase says so when it begins, so the console is never silent while
something slow happens.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import psutil


def since_start() -> float:
    """Seconds since this process started (its creation time, so time spent importing counts too)."""
    return max(0.0, time.time() - psutil.Process().create_time())


def phase(text: str, enabled: bool = True, stream: TextIO | None = None) -> None:
    """Print `forgather: [  12.3s] text` now, flushed (to stdout unless `stream`); `enabled` is False on ranks
    that stay quiet."""
    if enabled:
        print(f"forgather: [{since_start():6.1f}s] {text}", file=stream or sys.stdout, flush=True)


def duration(seconds: float) -> str:
    """A short wall-clock duration for progress lines: 42s, 3m05s, 2h07m ('?' when not known yet)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
