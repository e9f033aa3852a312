"""Parquet documents read lazily, one row group at a time: local files, globs, or fsspec URLs such as
hf://datasets/HuggingFaceTB/smollm-corpus/cosmopedia-v2/*.parquet.

Nothing is converted or downloaded up front: only each file's footer is read (row counts per row
group), so the source knows its length and can seek to any document in O(1) — the two things the
interleaver (draws ∝ remaining documents) and resume (continue at document i) need. Documents are
then read in order, one row group at a time. Blank documents cannot be filtered up front without
reading everything, so they are counted as they are read and tokenize to nothing (see
Tokenizer.encode_docs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DataError
from .arrow_values import empty_value
from .fingerprint import local_file_identity
from .source_files import SourceStats, decode_utf8, resolve_files, split_range
from .spec import SourceSpec
from .written import write_whole


def check_text_column(spec: SourceSpec, path: str, names: list[str]) -> None:
    """DataError naming the columns there are when a parquet file lacks the source's text column."""
    if spec.text_column not in names:
        raise DataError(f"source {spec.name!r}: {path} has no column {spec.text_column!r}; columns found: "
                        f"{', '.join(names)}; set text_column")


def check_first_footer(spec: SourceSpec, files: list[str]) -> None:
    """The launcher's look at a local parquet source: its first file reads as parquet and has the text column
    (its footer only; the ranks read every file)."""
    try:
        names = pq.read_schema(files[0]).names
    except Exception as exc:  # a damaged or non-parquet file: pyarrow raises several types
        raise unreadable(spec, files[0], exc) from None
    check_text_column(spec, files[0], names)


def unreadable(spec: SourceSpec, path: str, exc: Exception) -> DataError:
    """The one line for a file pyarrow cannot read as parquet: its error's first line, cut short."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return DataError(f"source {spec.name!r}: cannot read {path} as parquet ({type(exc).__name__}: {first})")


def is_url(path: str) -> bool:
    """True for fsspec URLs (hf://, s3://, gs://, https://, memory://...)."""
    return "://" in path


def _filesystem(path: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)[0]
    except (ImportError, ValueError) as exc:
        raise DataError(f"cannot open {path}: {exc}") from None


def _list_files(spec: SourceSpec) -> tuple[Any, list[str]]:
    """(filesystem, sorted parquet files) for a URL or local file/glob/dir."""
    if not is_url(spec.path):
        return None, resolve_files(spec, "parquet")
    fs = _filesystem(spec.path)
    protocol = spec.path.split("://", 1)[0]
    try:
        if any(c in spec.path for c in "*?["):
            found = fs.glob(spec.path)
        elif fs.isdir(spec.path):
            found = fs.glob(spec.path.rstrip("/") + "/**/*.parquet")
        else:
            found = [spec.path] if fs.exists(spec.path) else []
    except Exception as exc:  # offline, no such repo, auth: the user needs the same advice for all of them
        raise DataError(f"source {spec.name!r}: cannot list {spec.path} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); check the URL and the network, or "
                        "download the files and point 'path' at them") from None
    files = sorted(f if "://" in f else f"{protocol}://{f}" for f in found if str(f).endswith(".parquet"))
    if not files:
        raise DataError(f"source {spec.name!r}: no parquet files match {spec.path}")
    return fs, files


def _file_identity(fs: Any, path: str) -> list:
    """What a file's content depends on: its content hash (local) or the remote's content hash/etag."""
    if fs is None:
        return local_file_identity(path)
    info = fs.info(path)
    tag = next((str(info[k]) for k in ("blob_id", "sha256", "etag", "ETag", "mtime", "last_modified", "created")
                if info.get(k)), "")
    return [path, int(info.get("size") or 0), tag]


def _open(fs: Any, path: str) -> pq.ParquetFile:
    return pq.ParquetFile(path if fs is None else fs.open(path, "rb"))


def _row_group_counts(spec: SourceSpec, fs: Any, files: list[str], identity: list, cache_root: Path | None
                      ) -> list[list[int]]:
    """Rows per row group of every file, from the footers (remembered under cache_root: remote footers are slow)."""
    key = hashlib.sha256(json.dumps([identity, spec.text_column]).encode()).hexdigest()[:16]
    cached = cache_root / "parquet_index" / f"{key}.json" if cache_root is not None else None
    if cached is not None and cached.is_file():
        return json.loads(cached.read_text())
    counts = []
    for path in files:
        try:
            meta = _open(fs, path)
        except Exception as exc:
            raise unreadable(spec, path, exc) from None
        check_text_column(spec, path, meta.schema_arrow.names)
        counts.append([meta.metadata.row_group(g).num_rows for g in range(meta.metadata.num_row_groups)])
    if cached is not None:
        write_whole(cached, json.dumps(counts))
    return counts


class ParquetSource:
    """Documents lo..hi of the concatenated row groups of some parquet files, read on demand."""

    def __init__(self, name: str, fs: Any, files: list[str], groups: list[tuple[int, int]], group_start: np.ndarray,
                 column: str, lo: int, hi: int, ident: dict) -> None:
        self.name, self.fs, self.files, self.column = name, fs, files, column
        self.groups, self.group_start = groups, group_start  # (file, row group) in order; first row of each
        self.lo, self.hi, self.ident = lo, hi, ident
        self.stats = SourceStats(total=hi - lo)
        self._handles: dict[int, pq.ParquetFile] = {}
        self._loaded: tuple[int, list[str]] | None = None
        self._counted: set[int] = set()

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}, "_loaded": None}  # file handles don't cross processes

    def _group_texts(self, g: int) -> list[str]:
        if self._loaded is not None and self._loaded[0] == g:
            return self._loaded[1]
        f, rg = self.groups[g]
        if f not in self._handles:
            self._handles = {f: _open(self.fs, self.files[f])}  # reads are in order: one open file at a time
        values = self._handles[f].read_row_group(rg, columns=[self.column]).column(0)
        if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            texts = [self._decode(b) for b in values.to_pylist()]
        else:
            texts = ["" if t is None else t for t in values.to_pylist()]
        if g not in self._counted:  # blanks (and nulls) tokenize to nothing; count each row group once
            self._counted.add(g)
            first = int(self.group_start[g])
            self.stats.skipped_empty += sum(1 for i, t in enumerate(texts)
                                            if self.lo <= first + i < self.hi and not t.strip())
        self._loaded = (g, texts)
        return texts

    def _decode(self, raw: bytes | None) -> str:
        return "" if raw is None else decode_utf8(raw, self.stats)

    def texts(self, start: int, stop: int) -> list[str]:
        """Documents start..stop (relative to this source) as Python strings."""
        first, last = self.lo + start, min(self.lo + stop, self.hi)
        out: list[str] = []
        row = first
        while row < last:
            g = int(np.searchsorted(self.group_start, row, side="right")) - 1
            texts = self._group_texts(g)
            offset = row - int(self.group_start[g])
            take = texts[offset:offset + (last - row)]
            out.extend(take)
            row += len(take)
        return out

    def texts_at(self, indices: np.ndarray) -> list[str]:
        """Documents at increasing indices (relative to this source), one row group read at a time."""
        rows = self.lo + np.asarray(indices, dtype=np.int64)
        groups = np.searchsorted(self.group_start, rows, side="right") - 1
        return [self._group_texts(int(g))[int(r - self.group_start[g])] for r, g in zip(rows, groups)]

    def subset(self, start: int, stop: int, tag: str) -> "ParquetSource":
        """A view of documents start..stop, e.g. a held-out validation tail."""
        return ParquetSource(f"{self.name}{tag}", self.fs, self.files, self.groups, self.group_start, self.column,
                             self.lo + start, self.lo + stop, {**self.ident, "subset": [start, stop]})

    def identity(self) -> dict:
        """What this source's contents depend on, for cache fingerprints."""
        return {"name": self.name, **self.ident}


def _split_rows(spec: SourceSpec, total: int) -> range:
    """The rows of spec.split over files holding `total` rows: parquet files have one split, 'train', maybe sliced."""
    base, _, _ = spec.split.partition("[")
    if base != "train":
        raise DataError(f"source {spec.name!r}: parquet files have one split, 'train' (optionally sliced, e.g. "
                        f"'train[:1%]'), not {spec.split!r}")
    return split_range(spec.split, total) if "[" in spec.split else range(total)


def read_parquet_column(spec: SourceSpec, files: list[str]) -> pa.ChunkedArray:
    """The text column of local parquet files, whole, in file order and sliced by spec.split (cached mode).

    Read with pyarrow directly: `datasets` would cost each process ~1 s to import and copy the corpus into its
    own cache first, for the same column.
    """
    parts = []
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            if spec.text_column in names:
                parts.append(parquet.read(columns=[spec.text_column]).column(0))
        except Exception as exc:  # a damaged or non-parquet file: pyarrow raises several types
            raise unreadable(spec, path, exc) from None
        check_text_column(spec, path, names)
    parts = [p.cast(pa.large_string()) if pa.types.is_null(p.type) else p for p in parts]  # an all-null column
    if len({part.type for part in parts}) > 1:  # e.g. string in one file, large_string in another
        text = all(pa.types.is_string(p.type) or pa.types.is_large_string(p.type) for p in parts)
        parts = [p.cast(pa.large_string() if text else pa.large_binary()) for p in parts]
    column = pa.chunked_array([c for p in parts for c in p.chunks], parts[0].type)
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if column.null_count and (text or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        # a null is a blank document, as _decode reads it in streaming mode (other types are refused by the caller)
        column = pc.fill_null(column, empty_value(column.type))
    rows = _split_rows(spec, len(column))
    return column.slice(rows.start, len(rows))


def open_parquet_source(spec: SourceSpec, cache_root: Path | None = None) -> ParquetSource:
    """A lazily read parquet source for a local path/glob/dir or an fsspec URL; DataError on any problem."""
    fs, files = _list_files(spec)
    identity = [_file_identity(fs, f) for f in files]
    counts = _row_group_counts(spec, fs, files, identity, cache_root)
    total = sum(sum(c) for c in counts)
    rows = _split_rows(spec, total)
    lo, hi = rows.start, rows.stop
    if spec.max_samples is not None:
        hi = min(hi, lo + spec.max_samples)
    if hi <= lo:
        raise DataError(f"source {spec.name!r} ({spec.path}, split {spec.split!r}) has no documents; "
                        "check the path, split and text_column")
    ident = {"kind": "parquet", "files": identity, "split": spec.split, "text_column": spec.text_column,
             "max_samples": spec.max_samples}
    groups = [(f, g) for f, per_file in enumerate(counts) for g in range(len(per_file))]
    group_start = np.cumsum([0] + [n for per_file in counts for n in per_file])
    return ParquetSource(spec.name, fs, files, groups, group_start, spec.text_column, lo, hi, ident)
