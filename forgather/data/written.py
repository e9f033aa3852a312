"""Files the data layer writes (its cache, a trained tokenizer): whole or not at all, and a write that fails
(a full disk, a read-only mount, a quota) is one line naming the file and what to do, never a traceback."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import DataError

CACHE_FIX = "free space there, or point data.cache_dir (or FORGATHER_DATA_CACHE) at a directory you can write to"


@contextlib.contextmanager
def write_errors(target: Path, fix: str = CACHE_FIX) -> Iterator[None]:
    """An OSError raised inside becomes a DataError naming `target` and the fix."""
    try:
        yield
    except OSError as exc:
        raise DataError(f"cannot write {target} ({exc.strerror or exc}); {fix}") from None


def write_whole(target: Path, data: bytes | str, fix: str = CACHE_FIX) -> Path:
    """Write through a temp file of this process's own, renamed into place: readers never see half a file, and
    processes that race to write the same bytes (ranks filling one cache) each rename a whole one."""
    target = Path(target)
    with write_errors(target, fix):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            if isinstance(data, str):
                tmp.write_text(data, encoding="utf-8")
            else:
                tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:  # a write that failed part-way leaves no partial file behind in a cache that is short of space
            tmp.unlink(missing_ok=True)
    return target
