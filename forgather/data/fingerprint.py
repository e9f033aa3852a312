"""Fingerprints: what a cache entry or a resumed stream depends on, hashed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FULL_HASH_BYTES = 256 << 20  # files up to this size are hashed whole
SAMPLES, SAMPLE_BYTES = 64, 1 << 20  # larger files: 64 evenly spaced 1 MiB slices (and the size)


def digest(value: object) -> str:
    """sha256 over a JSON rendering (sorted keys) of value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def content_sha256(path: str | Path) -> str:
    """sha256 of a local file's content: all of it up to 256 MiB, else 64 evenly spaced 1 MiB slices and the size.

    By content, not modification time: a file rewritten with the same size and mtime still changes the
    fingerprint, and copying data to another machine keeps it.
    """
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(8 << 20), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            for i in range(SAMPLES):
                f.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
                h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def local_file_identity(path: str | Path) -> list:
    """(absolute path, size, content sha256) of one local file."""
    return [os.path.abspath(path), os.path.getsize(path), content_sha256(path)]
