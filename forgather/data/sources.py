"""Read documents from files, saved datasets, the hub or python docstrings into indexable text sources."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from . import python_docs
from .arrow_values import int64_array
from .fingerprint import digest, local_file_identity
from .parquet_source import ParquetSource, is_url, open_parquet_source, read_parquet_column
from .source_files import SourceStats, decode_utf8, resolve_files, split_range
from .spec import DataSpec, SourceSpec

@dataclass
class DocSource:
    """The documents of one source, as an arrow string column (blank ones included: they tokenize to nothing).

    Blank documents keep their place, so a source has the same length however it is read (here, or lazily
    by ParquetSource, which cannot know blanks up front) and cached and streaming modes give one stream.
    """

    name: str
    column: pa.ChunkedArray
    ident: dict
    stats: SourceStats = field(default_factory=SourceStats)

    def __len__(self) -> int:
        return len(self.column)

    def texts(self, start: int, stop: int) -> list[str]:
        """Documents start..stop as Python strings (a zero-copy slice of the column)."""
        start, stop = max(0, start), min(stop, len(self.column))
        return self.column.slice(start, max(0, stop - start)).to_pylist()

    def texts_at(self, indices: np.ndarray) -> list[str]:
        """Documents at increasing indices (a shard's documents are spread over the source)."""
        return self.column.take(int64_array(indices)).to_pylist()

    def subset(self, start: int, stop: int, tag: str) -> "DocSource":
        """A view of documents start..stop, e.g. a held-out validation tail."""
        return DocSource(f"{self.name}{tag}", self.column.slice(start, stop - start),
                         {**self.ident, "subset": [start, stop]}, self.stats)

    def identity(self) -> dict:
        """What this source's contents depend on, for cache fingerprints."""
        return {"name": self.name, **self.ident}


def file_identity(files: list[str]) -> list[list]:
    """(path, size, content sha256) per file: changes whenever a file's content does."""
    return [local_file_identity(f) for f in files]


def load_source(spec: SourceSpec, cache_root: Path | None = None, lazy: bool = False) -> DocSource | ParquetSource:
    """Load one source, count its blank documents (they stay, tokenizing to nothing) and check it has text.

    Parquet is read lazily by row group when `lazy` (streaming mode) or when it is remote (a URL): then
    nothing is loaded up front and blank documents are counted as they are read.
    """
    spec = spec.located()
    kind = spec.resolved_kind()
    if kind == "parquet" and (lazy or is_url(spec.path)):
        return open_parquet_source(spec, cache_root)
    stats = SourceStats()
    if kind == "python_docs":
        docs = python_docs.documents(spec.path, spec.max_samples, cache_root)
        column = pa.chunked_array([pa.array(docs, pa.large_string())])
        ident = python_docs.identity(spec.path, spec.max_samples, docs)
    elif kind == "text":
        files = resolve_files(spec, kind)
        column = _read_text_files(files, stats)
        ident = {"kind": kind, "files": file_identity(files), "documents": TEXT_RULE}
        column = _limit(column, spec)
    elif kind == "parquet":  # local files read whole (cached mode); nulls are blank documents, as when lazy
        files = resolve_files(spec, kind)
        column = _text_typed(spec, read_parquet_column(spec, files))
        ident = {"kind": kind, "files": file_identity(files)}
        column = _limit(column, spec)
    else:
        column, ident = _read_with_datasets(spec, kind)
        column = _limit(column, spec)
    if kind != "text":
        column = _decode_binary(column, stats)
    stats.total = len(column)
    stats.skipped_empty = stats.total - _count_non_blank(column)
    ident = {**ident, "split": spec.split, "text_column": spec.text_column, "max_samples": spec.max_samples}
    if stats.skipped_empty == stats.total:
        what = "has no documents" if stats.total == 0 else f"has only empty/whitespace documents ({stats.total})"
        raise DataError(f"source {spec.name!r} ({spec.path}, split {spec.split!r}) {what}; "
                        "check the path, split and text_column")
    return DocSource(spec.name, column, ident, stats)


def _limit(column: pa.ChunkedArray, spec: SourceSpec) -> pa.ChunkedArray:
    return column.slice(0, spec.max_samples) if spec.max_samples is not None else column


def _count_non_blank(column: pa.ChunkedArray) -> int:
    """Documents with at least one non-whitespace character (nulls count as blank)."""
    if len(column) == 0:
        return 0
    # A length cast to bool is "non-blank" (a null stays null, and sum skips it): no Python literal to convert
    # (see arrow_values).
    non_blank = pc.cast(pc.utf8_length(pc.utf8_trim_whitespace(column)), pa.bool_())
    return int(pc.sum(pc.cast(non_blank, pa.int64())).as_py() or 0)


def _decode_binary(column: pa.ChunkedArray, stats: SourceStats) -> pa.ChunkedArray:
    """Binary (or invalid-UTF-8 string) columns are decoded with replacement characters, counting the bad ones."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column.validate(full=True)  # some readers (pyarrow json) pass invalid UTF-8 through unchecked
            return column
        except pa.ArrowInvalid:
            column = column.cast(pa.large_binary())
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column
    out = [None if b is None else decode_utf8(b, stats) for b in column.to_pylist()]
    return pa.chunked_array([pa.array(out, pa.large_string())])


# How .txt/.md files split into documents (README "Train on your own data"): a line holding only a form feed,
# or three or more blank lines in a row, separates documents; a file without either is one document. Two blank
# lines stay inside a document (Markdown and prose use them), and the separator itself belongs to no document.
TEXT_RULE = "formfeed-or-3-blank-lines"
_DOC_SEPARATOR = re.compile(r"(?:^|\n)[ \t\r]*\f[ \t\r]*(?=\n|$)|\n(?:[ \t\r]*\n){3,}")


def split_text_documents(text: str) -> list[str]:
    """The documents of one text file under TEXT_RULE (a blank file stays one, blank, document)."""
    docs = [d.strip("\n") for d in _DOC_SEPARATOR.split(text)]
    docs = [d for d in docs if d.strip()]
    return docs or [text]


def count_local_documents(spec: SourceSpec, byte_limit: int) -> int | None:
    """The documents a source of local files holds, counted only when its files total at most byte_limit bytes;
    None for larger ones, URLs, hub ids and the stdlib (they hold plenty, or cannot be counted cheaply)."""
    located = spec.located()
    kind = located.resolved_kind()
    if kind not in ("parquet", "jsonl", "text") or is_url(located.path):
        return None
    files = resolve_files(located, kind)
    if sum(os.path.getsize(f) for f in files) > byte_limit:
        return None
    if kind == "parquet":
        import pyarrow.parquet as pq

        count = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    elif kind == "jsonl":
        if not all(_one_record_per_line(f) for f in files):
            return None  # a JSON array: datasets reads it, and a count would need the same parse
        count = sum(1 for _ in _jsonl_records(files))
    else:
        count = sum(len(split_text_documents(decode_utf8(Path(f).read_bytes(), SourceStats()))) for f in files)
    return min(count, located.max_samples) if located.max_samples else count


def _read_text_files(files: list[str], stats: SourceStats) -> pa.ChunkedArray:
    """The documents of text files (TEXT_RULE); invalid UTF-8 is replaced (U+FFFD) and counted, never fatal."""
    docs = []
    for f in files:
        docs.extend(split_text_documents(decode_utf8(Path(f).read_bytes(), stats)))
    return pa.chunked_array([pa.array(docs, pa.large_string())])


def _read_with_datasets(spec: SourceSpec, kind: str) -> tuple[pa.ChunkedArray, dict]:
    """Load jsonl files, saved dataset dirs and hub ids via `datasets` and return the text column."""
    import datasets

    datasets.disable_progress_bars()
    files: list[str] = []
    try:
        if kind == "arrow_dir":
            if not os.path.isdir(spec.path):
                raise DataError(f"source {spec.name!r}: saved dataset directory not found: {spec.path}")
            ds = datasets.load_from_disk(spec.path)
            if isinstance(ds, datasets.DatasetDict):
                base = spec.split.split("[")[0]
                if base not in ds:
                    raise DataError(f"source {spec.name!r}: {spec.path} has splits {sorted(ds)}, not {base!r}")
                ds = ds[base]
            if "[" in spec.split:
                ds = ds.select(split_range(spec.split, len(ds)))
            ident = {"kind": kind, "files": file_identity(sorted(str(f) for f in Path(spec.path).rglob("*") if f.is_file()))}
        elif kind == "hub":
            ds = _load_hub(spec)
            ident = {"kind": kind, "hub": spec.path, "config": spec.hub_config, "fingerprint": ds._fingerprint}
        else:
            files = resolve_files(spec, kind)
            if _all_empty(files):
                raise DataError(f"source {spec.name!r} ({spec.path}) has no documents: every file is empty")
            builder = "json" if kind == "jsonl" else kind
            with _quiet_loaders():
                ds = datasets.load_dataset(builder, data_files={"train": files}, split=spec.split)
            ident = {"kind": kind, "files": file_identity(files)}
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(f"source {spec.name!r}: {spec.path} is not valid UTF-8 ({e}); re-encode it, "
                        "or use a .txt source (decoded with replacement characters)") from None
    except Exception as e:  # datasets/pyarrow raise many types for malformed input; give one clear message
        chain = [e]
        while e.__cause__ is not None or e.__context__ is not None:  # the innermost error says what is wrong
            e = e.__cause__ or e.__context__
            chain.append(e)
        bad_line = _first_bad_json_line(files) if any(map(_is_json_parse_error, chain)) else None
        if bad_line:
            raise DataError(f"source {spec.name!r}: {bad_line}; each line must be one JSON object such as "
                            '{"text": "..."}') from None
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        if "utf-8" in msg.lower() or "utf8" in msg.lower() or "unicode" in msg.lower():
            msg += "; the file is not valid UTF-8: re-encode it, or use a .txt source"
        raise DataError(f"source {spec.name!r}: cannot read {spec.path} as {kind}: {msg}") from None
    if spec.text_column not in ds.column_names:
        where = _file_missing_column(files, kind, spec.text_column) or spec.path
        raise DataError(f"source {spec.name!r}: {where} has no column {spec.text_column!r}; columns found: "
                        f"{', '.join(ds.column_names)}; set text_column")
    if ds._indices is not None:
        ds = ds.flatten_indices()
    column = _text_typed(spec, ds.data.table.column(spec.text_column) if hasattr(ds.data, "table")
                         else ds.data.column(spec.text_column))
    if pa.types.is_null(column.type) or column.null_count:
        where = _file_missing_column(files, kind, spec.text_column) or spec.path
        raise DataError(f"source {spec.name!r}: {column.null_count} record(s) in {where} have no "
                        f"{spec.text_column!r}; columns found: {', '.join(ds.column_names)}; fix or drop those records")
    return column, ident


def _text_typed(spec: SourceSpec, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column itself if it holds text (string or bytes, or only nulls); DataError naming its type otherwise."""
    t = column.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_null(t)):
        shown = "JSON values (numbers, lists or objects)" if isinstance(t, pa.ExtensionType) else f"{t} values"
        raise DataError(f"source {spec.name!r}: column {spec.text_column!r} in {spec.path} holds {shown}, not text; "
                        f"make each record's {spec.text_column!r} a string, or set the source's text_column to the "
                        "column that holds the text")
    return column


def _all_empty(files: list[str]) -> bool:
    """True when no (jsonl) file holds a record (datasets fails obscurely on empty files)."""
    for f in files:
        with open(f, "rb") as fh:  # stop at the first non-blank chunk: files can be many GB
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                if chunk.strip():
                    return False
    return True


# A failed load's diagnosis reads the files again: bounded, so a damaged multi-GB file is not read twice whole.
_DIAGNOSIS_BYTES = 256 << 20


def _one_record_per_line(path: str) -> bool:
    """A .jsonl file, or a .json file of JSON lines (its first record starts with '{'; an array spans lines)."""
    if path.lower().endswith(".jsonl"):
        return True
    with open(path, "rb") as fh:
        return fh.read(4096).lstrip()[:1] == b"{"


def _jsonl_records(files: list[str]) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, line) for each non-blank line of the files holding one JSON record per line, up to
    _DIAGNOSIS_BYTES in all; a file that cannot be read ends the walk."""
    budget = _DIAGNOSIS_BYTES
    try:
        for f in files:
            if not _one_record_per_line(f):
                continue
            with open(f, "rb") as fh:
                for i, line in enumerate(fh, 1):
                    budget -= len(line)
                    if budget < 0:
                        return
                    if line.strip():
                        yield f, i, line
    except OSError:
        return


def _first_bad_json_line(files: list[str]) -> str | None:
    """'FILE line N: not JSON (...)' for the first line of a jsonl file that does not parse; None if all do."""
    for f, i, line in _jsonl_records(files):
        try:
            json.loads(line)
        except ValueError as exc:
            return f"{f} line {i}: not JSON ({exc})"
    return None


def _is_json_parse_error(error: BaseException) -> bool:
    """Whether a load failed on JSON syntax (pyarrow's reader or the json module), not on anything else."""
    return isinstance(error, json.JSONDecodeError) or "JSON parse error" in str(error)


def _file_missing_column(files: list[str], kind: str, column: str) -> str | None:
    """Name the first file lacking the column (or holding a record without it); None if unknown."""
    if kind != "jsonl":
        return None
    for f, i, line in _jsonl_records(files):
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        if not isinstance(rec, dict) or column not in rec or rec[column] is None:
            found = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
            return f"{f} line {i} (keys: {found})"
    return None


@contextlib.contextmanager
def _quiet_loaders() -> Iterator[None]:
    """datasets' loaders log each failure before raising it; the DataError says it once, in one line."""
    logger = logging.getLogger("datasets.packaged_modules")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_hub(spec: SourceSpec):
    """A hub dataset from the local HF cache or the network; DataError with the local-files fix otherwise."""
    import datasets

    try:
        return datasets.load_dataset(spec.path, spec.hub_config, split=spec.split)
    except Exception as e:  # offline, unknown id, auth: all end the same way for the user
        # An 'a/b' path is read as a hub id only because no such directory exists: a typo'd local path lands here.
        local = (f"; nor is there a directory {spec.project_path} (a path in project.yaml is relative to the "
                 "project)") if spec.project_path else ""
        raise DataError(
            f"source {spec.name!r}: cannot load hub dataset {spec.path!r} ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}){local}; the hub may be unreachable and the dataset "
            "is not cached. Download it elsewhere and point 'path' at local parquet/jsonl files or a save_to_disk "
            "directory"
        ) from None


def load_sources(specs: list[SourceSpec], cache_root: Path | None = None, lazy: bool = False) -> list[DocSource]:
    """Load every source in order (derived corpora such as python docs are cached under cache_root)."""
    return [load_source(s, cache_root, lazy) for s in specs]


def split_validation(sources: list[DocSource], fraction: float) -> tuple[list[DocSource], list[DocSource]]:
    """Hold out the last `fraction` of each source's documents (at least one) for validation. A source too small to
    give one and keep one (a single .md file is one document) trains whole; only when every source is that small
    is there no validation to hold out."""
    train, val = [], []
    for s in sources:
        n_val = max(1, math.ceil(len(s) * fraction))
        if n_val >= len(s):
            train.append(s.subset(0, len(s), ""))
            continue
        train.append(s.subset(0, len(s) - n_val, ""))
        val.append(s.subset(len(s) - n_val, len(s), ":val"))
    if not val:
        sizes = ", ".join(f"{s.name!r} {len(s)}" for s in sources)
        raise DataError(f"every source is too small to hold out validation_fraction={fraction} (documents: {sizes}); "
                        "add data.validation sources, or set data.validation_fraction: 0")
    return train, val


def sources_digest(sources: list[DocSource]) -> str:
    """sha256 over all sources' identities (paths, sizes, contents, options)."""
    return digest([s.identity() for s in sources])


def split_sources(spec: DataSpec) -> tuple[list[DocSource], list[DocSource]]:
    """(training, validation) sources as a run reads them: parquet lazily in streaming mode, validation from
    data.validation or carved off the training sources' tails. The trained tokenizer is keyed by the former."""
    lazy = spec.mode == "streaming"  # parquet is then read by row group on demand, never loaded up front
    train = load_sources(spec.sources, spec.resolved_cache_dir(), lazy)
    if spec.validation:
        return train, load_sources(spec.validation, spec.resolved_cache_dir(), lazy)
    if spec.validation_fraction > 0:
        return split_validation(train, spec.validation_fraction)
    return train, []
