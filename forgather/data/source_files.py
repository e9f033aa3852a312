"""What a source's path and split name: the local files of a file/glob/dir path, the rows of a virtual
split such as 'train[1000:]', and the counts a source reports (with the one UTF-8 decoder that keeps
them). Shared by sources.py and parquet_source.py, so that only sources.py imports parquet_source."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import DataError
from .spec import SourceSpec, candidate_files, is_glob

_FILE_EXT = {"parquet": (".parquet",), "jsonl": (".jsonl", ".json"), "text": (".txt", ".text", ".md")}


@dataclass
class SourceStats:
    """Counts a user should see: documents read, skipped as empty, decoded with replacement characters."""

    total: int = 0
    skipped_empty: int = 0
    replaced_utf8: int = 0


def decode_utf8(raw: bytes, stats: SourceStats) -> str:
    """One document's bytes as text; invalid UTF-8 becomes U+FFFD and is counted in stats, never fatal."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.replaced_utf8 += 1
        return raw.decode("utf-8", errors="replace")


def resolve_files(spec: SourceSpec, kind: str) -> list[str]:
    """The concrete files for a file/glob/dir path, sorted; DataError when none exist."""
    p = spec.path
    if is_glob(p):
        # a format inferred from a glob's files (resolved_kind) reads only that format's files
        files = [str(f) for f in candidate_files(p) if spec.kind or f.suffix.lower() in _FILE_EXT[kind]]
    elif os.path.isdir(p):
        files = [str(f) for f in candidate_files(p) if f.suffix.lower() in _FILE_EXT[kind]]
    elif os.path.isfile(p):
        files = [p]
    else:
        raise DataError(f"source {spec.name!r}: file not found: {p}")
    if not files:
        raise DataError(f"source {spec.name!r}: no {kind} files match {p}")
    return files


def split_range(split: str, n: int) -> range:
    """Indices of a virtual split like 'train[10:]' or 'train[:5%]' over n rows."""
    inner = split[split.index("[") + 1: split.rindex("]")]
    a, _, b = inner.partition(":")

    def bound(s: str, default: int) -> int:
        s = s.strip()
        if not s:
            return default
        v = int(s[:-1]) * n / 100 if s.endswith("%") else int(s)
        v = int(round(v)) if s.endswith("%") else v
        return max(0, min(n, v + n if v < 0 else v))

    return range(bound(a, 0), bound(b, n))
