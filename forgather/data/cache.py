"""Memory-mapped block cache per epoch, keyed by a fingerprint of sources, tokenizer and packing settings."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import DataError
from .packing import SEG_FIELDS, Block

FORMAT_VERSION = 1
Progress = Callable[[int, int], None]  # (documents done, documents total)


def fingerprint(sources_identity: list[dict], tokenizer_settings: dict, settings: dict) -> str:
    """sha256 over everything a block's contents depend on."""
    blob = json.dumps({"format": FORMAT_VERSION, "sources": sources_identity, "tokenizer": tokenizer_settings,
                       "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def epoch_dir(root: Path, fp: str, epoch: int) -> Path:
    """Where epoch `epoch` of the stream with fingerprint fp lives."""
    return Path(root) / fp[:16] / f"epoch-{epoch}"


class CachedEpoch:
    """Read side of one cached epoch: O(1) access to block k through memory maps."""

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.num_blocks = int(manifest["num_blocks"])
        self.block_size = int(manifest["block_size"])
        self._tokens = None
        self._segs = None
        self._offsets = None

    @classmethod
    def open(cls, path: Path, fp: str | None = None) -> "CachedEpoch":
        """Open a built epoch; DataError if it is missing, incomplete, or built from other settings."""
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise DataError(f"data cache {path} is missing or incomplete (no manifest.json); run `forgather data prepare`")
        manifest = json.loads(mpath.read_text())
        if fp is not None and manifest.get("fingerprint") != fp:
            raise DataError(f"data cache {path} was built from different sources/tokenizer/settings "
                            f"({describe(manifest)}); rebuild it with `forgather data prepare` or remove it")
        return cls(path, manifest)

    def _maps(self):
        # opened lazily so the object pickles cheaply into loader workers
        if self._tokens is None:
            dtype = np.dtype(self.manifest["dtype"])
            self._tokens = np.memmap(self.path / "tokens.bin", dtype=dtype, mode="r",
                                     shape=(self.num_blocks, self.block_size)) if self.num_blocks else \
                np.zeros((0, self.block_size), dtype=dtype)
            self._segs = np.load(self.path / "segments.npy", mmap_mode="r")
            self._offsets = np.load(self.path / "offsets.npy", mmap_mode="r")
        return self._tokens, self._segs, self._offsets

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None, "_segs": None, "_offsets": None}

    def block(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32 [T], segments int64 [n, 4]) of block k of this epoch."""
        if not 0 <= k < self.num_blocks:
            raise IndexError(f"block {k} out of range (epoch has {self.num_blocks})")
        tokens, segs, offsets = self._maps()
        return np.asarray(tokens[k], dtype=np.int32), np.asarray(segs[offsets[k]:offsets[k + 1]])


def describe(manifest: dict) -> str:
    """The human-relevant settings of a manifest, one line."""
    s = manifest.get("settings", {})
    return ", ".join(f"{k}={v}" for k, v in sorted(s.items())) or "unknown settings"


def write_epoch(path: Path, blocks: Iterator[Block], manifest: dict, vocab_size: int,
                finalize: Callable[[], dict] | None = None) -> CachedEpoch:
    """Write blocks to a temp dir next to `path` and rename it into place (readers never see a partial cache)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        n, used = 0, 0
        segs: list[np.ndarray] = []
        offsets = [0]
        with open(tmp / "tokens.bin", "wb") as f:
            for b in blocks:
                f.write(b.tokens.astype(dtype).tobytes())
                seg = b.segments.copy()
                segs.append(seg)
                offsets.append(offsets[-1] + len(seg))
                used += int(seg[:, 1].sum())
                n += 1
        np.save(tmp / "segments.npy", np.concatenate(segs) if segs else np.zeros((0, SEG_FIELDS), np.int64))
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        manifest = {**manifest, "num_blocks": n, "tokens": used, "dtype": np.dtype(dtype).name,
                    "fill": used / max(1, n * manifest["block_size"]), "created": time.time(),
                    **(finalize() if finalize else {})}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if path.exists():  # a stale or concurrent build: replace it (a concurrent identical build is equivalent)
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            try:
                os.rename(path, old)
                shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "manifest.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return CachedEpoch.open(path)


def find_other_builds(root: Path) -> list[dict]:
    """Manifests of other caches under root (to explain a mismatch)."""
    out = []
    for m in sorted(Path(root).glob("*/epoch-*/manifest.json")):
        try:
            out.append({"path": str(m.parent), **json.loads(m.read_text())})
        except (OSError, json.JSONDecodeError):
            continue
    return out


def open_or_build(root: Path, fp: str, epoch: int, build: Callable[[Path], CachedEpoch],
                  rebuild: bool = True) -> CachedEpoch:
    """Reuse the cache for fp if intact and matching, else build it; with rebuild=False a miss is a DataError."""
    path = epoch_dir(root, fp, epoch)
    try:
        return CachedEpoch.open(path, fp)
    except DataError as miss:
        if rebuild:
            return build(path)
        others = [o for o in find_other_builds(root) if o.get("fingerprint") != fp]
        hint = "; caches found: " + " | ".join(f"{o['path']}: {describe(o)}" for o in others[:3]) if others else ""
        raise DataError(f"{miss}{hint}") from None
