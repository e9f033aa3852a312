"""manifest.json: every file's size and sha256, written last and checked before any load (torch-free)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import CheckpointError
from .layout import MANIFEST_FILE, list_checkpoints

log = logging.getLogger("forgather.checkpoint")

FORMAT = "forgather-checkpoint"
FORMAT_VERSION = 2  # 2: weights and optimizer moments as row-sharded safetensors (no DCP pickle)
_CHUNK = 8 << 20  # stream hashes so a multi-GB shard never sits in memory


def file_sha256(path: Path, *, fsync: bool = False) -> str:
    """The sha256 of a file, read in chunks; optionally fsync it while it is open."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            # Flushes the inode's dirty pages no matter which process wrote them (other ranks' files too).
            os.fsync(handle.fileno())
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Make a file's contents, or a directory's entries (created, renamed), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def write_manifest(directory: Path, step: int, **extra: Any) -> dict[str, Any]:
    """Hash and fsync every file already under directory, then write manifest.json (a directory written by
    other means than a save, which hashes its files as it writes them)."""
    directory = Path(directory)
    entries = [{"path": path.relative_to(directory).as_posix(), "size": path.stat().st_size,
                "sha256": file_sha256(path, fsync=True)} for path in _files(directory)]
    return write_manifest_entries(directory, step, entries, **extra)


def write_manifest_entries(directory: Path, step: int, entries: list[dict], **extra: Any) -> dict[str, Any]:
    """Write manifest.json from entries whose hashes were taken as the files were written (each file hashed
    once per save), fsync it and every directory holding the files."""
    directory = Path(directory)
    listed = {e["path"] for e in entries}
    present = {p.relative_to(directory).as_posix() for p in _files(directory)}
    if listed != present:
        raise CheckpointError(f"{directory}: files written and files listed differ ({sorted(listed ^ present)[:3]})")
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
                "files": sorted(entries, key=lambda e: e["path"])}
    target = directory / MANIFEST_FILE
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    for sub in sorted({p.parent for p in _files(directory)} | {directory}):
        fsync_path(sub)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed manifest; CheckpointError naming the file when it is missing or malformed."""
    path = Path(directory) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete (interrupted save?)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise CheckpointError(f"{path}: not a forgather checkpoint manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {manifest['format_version']} is newer than this forgather "
                              f"reads ({FORMAT_VERSION}); upgrade forgather")
    return manifest


def _entry_path(directory: Path, entry: Any) -> Path:
    rel = entry.get("path") if isinstance(entry, dict) else None
    pure = PurePosixPath(rel) if isinstance(rel, str) else None
    if pure is None or pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise CheckpointError(f"{directory / MANIFEST_FILE}: bad file entry {entry!r}")
    return directory / pure


def verify_manifest(directory: Path) -> dict[str, Any]:
    """Check every listed file's size and sha256; returns the manifest or raises CheckpointError naming the file."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for entry in manifest["files"]:
        path = _entry_path(directory, entry)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"{path}: listed in the manifest but missing") from None
        if size != entry.get("size"):
            raise CheckpointError(f"{path}: size {size} bytes, manifest says {entry.get('size')} (truncated or replaced)")
        if file_sha256(path) != entry.get("sha256"):
            raise CheckpointError(f"{path}: sha256 mismatch with the manifest (corrupted)")
    return manifest


def checkpoint_size(manifest: dict[str, Any]) -> int:
    """Total bytes of the files a manifest lists."""
    return sum(int(entry.get("size", 0)) for entry in manifest["files"])


def find_latest(root: Path) -> Path | None:
    """The highest-step checkpoint whose manifest verifies; each one that fails is logged (naming the file) and skipped."""
    latest, failures = find_latest_verified(root)
    for path, reason in failures:
        log.warning("skipping checkpoint %s: %s", path.name, reason)
    return latest


def find_latest_verified(root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the highest-step checkpoint whose manifest verifies, [(newer checkpoint, why it failed), ...])."""
    failures: list[tuple[Path, str]] = []
    for _step, path in reversed(list_checkpoints(root)):
        try:
            verify_manifest(path)
        except CheckpointError as exc:
            failures.append((path, str(exc)))
            continue
        return path, failures
    return None, failures
