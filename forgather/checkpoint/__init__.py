"""Checkpoints: atomic save, verified load, and retention of step directories.

Importing the package is torch-free (the CLI lists and verifies without torch); the torch-using
entry points are loaded on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "save_checkpoint": "save", "stage_checkpoint": "save", "write_staged": "save", "StagingBuffers": "save",
    "load_checkpoint": "load",
    "find_latest": "manifest", "find_latest_verified": "manifest",
    "verify_manifest": "manifest", "apply_retention": "retention", "has_checkpoints": "layout",
    "check_fresh_start": "layout",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
