"""Which old checkpoints to delete: keep the last N, the best N by eval loss, and always the newest verified."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from . import layout
from .manifest import find_latest


def _eval_loss(path: Path) -> float | None:
    try:
        value = json.loads((path / layout.TRAINER_STATE_FILE).read_text(encoding="utf-8")).get("eval_loss")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def select_kept(root: Path, keep_last: int, keep_best: int, newest: Path | None = None,
                damaged: frozenset[str] = frozenset()) -> set[Path]:
    """The checkpoint dirs retention keeps (`newest`: the one just written and hashed, so not hashed again).

    `damaged` names the step dirs found damaged when the run resumed: they are kept (the files may yet be restored)
    but never count as one of the last `keep_last`, so a damaged newer checkpoint never costs a sound one."""
    every = layout.list_checkpoints(root)
    checkpoints = [(step, path) for step, path in every if path.name not in damaged]
    kept = {path for _, path in checkpoints[-keep_last:]} if keep_last > 0 else set()
    kept |= {path for _, path in every if path.name in damaged}
    if keep_best > 0:
        scored = [(loss, step, path) for step, path in checkpoints if (loss := _eval_loss(path)) is not None]
        kept |= {path for _, _, path in sorted(scored)[:keep_best]}
    newest = newest or find_latest(root)
    if newest is not None:
        kept.add(newest)
    return kept


def apply_retention(root: Path, keep_last: int, keep_best: int, newest: Path | None = None,
                    damaged: frozenset[str] = frozenset()) -> list[Path]:
    """Rank 0 only: delete checkpoints outside the kept set; returns the removed paths, oldest first."""
    root = Path(root)
    kept = select_kept(root, keep_last, keep_best, newest, damaged)
    removed = []
    for step, path in layout.list_checkpoints(root):
        if path in kept:
            continue
        # Rename first: a crash mid-delete leaves an ignored *.tmp dir, never a half-deleted step dir.
        doomed = layout.tmp_dir(root, step, "deleting")
        path.rename(doomed)
        shutil.rmtree(doomed)
        removed.append(path)
    return removed
