"""Keep freed CPU memory in the process during training instead of handing it back to the kernel.

glibc serves allocations above its mmap threshold (at most 32 MiB by default) with fresh mmap'd pages and
unmaps them on free. A CPU training step allocates activations and gradients far larger than that, so every
step page-faults them all in again and the kernel zeroes each page (a 268 MB buffer: 84 ms per allocate-fill
cycle with the defaults, 24 ms with these settings, on the 2-core benchmark VM; see BENCHMARKS.md). Raising
the mmap and trim thresholds makes glibc reuse those blocks from its heap, as a caching allocator does on
the GPU. Best effort: other C libraries are left alone.

Only CPU ranks get it (`tune_host_allocator`): on a GPU the step's tensors live in CUDA's own caching
allocator, and the big host blocks are checkpoint staging copies, which the setting would keep
resident (up to 2 GiB of freed heap per rank) between saves for no speedup.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from (and return to) the heap; larger ones are rare
_TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: keep up to 2 GiB of free heap top


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds for this process; True when glibc accepted both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def tune_host_allocator(device: Any) -> bool:
    """keep_freed_memory() on a CPU rank (where it speeds steps up), nothing elsewhere; True when applied."""
    return getattr(device, "type", str(device)) == "cpu" and keep_freed_memory()
