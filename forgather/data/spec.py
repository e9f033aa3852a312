"""Plain dataclasses describing the training data; torch- and datasets-free so the CLI can import them."""

from __future__ import annotations

import glob
import itertools
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError

MIN_VOCAB_SIZE = 300  # the smallest byte-level BPE trained here: 256 byte tokens, specials, a few merges
MAX_VOCAB_SIZE = 1 << 22  # 4M: 16x the largest vocabularies in use (~256K); more is a typo of a few zeros
KINDS = ("parquet", "jsonl", "text", "arrow_dir", "hub", "python_docs")
_EXT_KIND = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "text", ".text": "text", ".md": "text"}


@dataclass
class SourceSpec:
    """One document source: local files (file, glob or dir), a saved dataset dir, a hub id, or python docs.

    `path` for python_docs is 'stdlib' or 'site-packages'. `split` accepts virtual splits such as
    'train[1000:]' or 'train[:5%]'. Text files ('text' kind) split into documents by TEXT_RULE (sources.py).
    A config entry may leave out `name`: named_sources derives one from the path.
    """

    name: str
    path: str
    kind: str | None = None
    hub_config: str | None = None
    split: str = "train"
    text_column: str = "text"
    max_samples: int | None = None
    # A one-slash, extensionless path ('data/wiki') is a project directory or a hub id ('user/dataset'); parsing
    # never touches the filesystem, so it keeps both readings and located() picks one when the data is opened.
    project_path: str | None = field(default=None, init=False, repr=False)

    def located(self) -> "SourceSpec":
        """This source with an ambiguous 'a/b' path settled: the project directory if it exists, else the hub id."""
        if self.project_path is not None and os.path.exists(self.project_path):
            return replace(self, path=self.project_path)
        return self

    def resolved_kind(self) -> str:
        """The explicit kind, or one inferred from the path's extension / directory contents."""
        if self.kind:
            if self.kind not in KINDS:
                raise DataError(f"source {self.name!r}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
            return self.kind
        if self.path in ("stdlib", "site-packages"):
            return "python_docs"
        p = Path(self.path)
        globbed = is_glob(self.path)
        ext = _glob_extension(self.path) if globbed else p.suffix.lower()
        if ext in _EXT_KIND:
            return _EXT_KIND[ext]
        if "://" in self.path:
            raise DataError(f"source {self.name!r}: cannot tell the format of {self.path}; end the URL with "
                            "*.parquet, or set kind: parquet for a directory of parquet files")
        if globbed:
            return self._kind_of_files(candidate_files(self.path))
        if p.is_dir():
            if (p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists():
                return "arrow_dir"
            return self._kind_of_files(candidate_files(self.path))
        if p.exists():
            raise DataError(f"source {self.name!r}: cannot tell the format of {self.path} from its extension; "
                            f"set kind to one of {', '.join(KINDS)}")
        if "/" in self.path and not self.path.startswith((".", "/", "~")) and self.path.count("/") == 1:
            return "hub"
        raise DataError(f"source {self.name!r}: {self.path} does not exist (give a file, glob, directory or hub id)")

    def _kind_of_files(self, paths: Iterable[Path]) -> str:
        """The one format of the data files a directory or glob holds. A source reads one format: mixed formats
        are refused rather than some files silently left out."""
        found: dict[str, list[str]] = {}
        for path in paths:
            if path.suffix.lower() in _EXT_KIND:
                found.setdefault(_EXT_KIND[path.suffix.lower()], []).append(path.name)
        if len(found) == 1:
            return next(iter(found))
        if not found:
            raise DataError(f"source {self.name!r}: {self.path} holds no .parquet/.jsonl/.txt/.md data files (a "
                            "README, LICENSE or dataset_info.json is not data) and is not a saved dataset; set 'kind' "
                            "or point at the files")
        suffixes = sorted({Path(name).suffix.lower() for names in found.values() for name in names})
        counts = ", ".join(f"{sum(Path(n).suffix.lower() == x for names in found.values() for n in names)} {x}"
                           for x in suffixes)
        root = glob_root(self.path) if is_glob(self.path) else self.path.rstrip("/")
        globs = " ".join(f"'{root}/**/*{x}'" for x in suffixes)
        raise DataError(f"source {self.name!r}: {self.path} mixes file formats ({counts} files); a source reads one "
                        f"format: give each as its own source (--data {globs}) or set 'kind'")


# Files that sit beside the data in dataset folders and never hold documents: a dataset card, a license, notes,
# and a saved or hub dataset's metadata. Never counted as data, nor read, when a directory or glob is scanned.
_NOT_DATA_NAME = re.compile(r"(readme|licen[cs]e|notice|changelog|copying)([._\- ]|$)")  # README_zh.md, LICENSE-MIT
_DATASET_METADATA = ("dataset_info", "dataset_infos", "dataset_dict", "state")


def is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def glob_root(pattern: str) -> str:
    """The directory a glob searches under: its leading components without a wildcard ('corpus/part-*' → 'corpus')."""
    fixed = list(itertools.takewhile(lambda part: not is_glob(part), Path(pattern).parts))
    return str(Path(*fixed)) if fixed else "."


def _glob_extension(pattern: str) -> str:
    """The extension a glob names ('notes/*.md' → '.md'; 'ds/*' → '')."""
    return Path(pattern.rstrip("*")).suffix.lower()


def candidate_files(path: str) -> list[Path]:
    """The files a directory (recursively) or a glob gives a source, sorted: all but the files that sit beside data
    (README, LICENSE, dataset_info.json...) and anything in a hidden directory (.git, .cache, .ipynb_checkpoints).
    A glob that names its extension ('notes/*.md') picked its files itself: all it matches are read."""
    root = Path(glob_root(path) if is_glob(path) else path)
    found = (Path(f) for f in glob.glob(path, recursive=True)) if is_glob(path) else root.rglob("*")
    picked = is_glob(path) and _glob_extension(path) in _EXT_KIND
    # Sorted as strings, as sources always were: the order of the files is the order of the stream.
    return sorted((f for f in found if f.is_file() and (picked or not _beside_data(f, root))), key=str)


def _beside_data(path: Path, root: Path) -> bool:
    if _NOT_DATA_NAME.match(path.name.lower()):
        return True
    if path.suffix.lower() == ".json" and path.stem.lower() in _DATASET_METADATA:
        return True
    try:
        inside = path.relative_to(root).parts
    except ValueError:
        inside = path.parts
    return any(part.startswith(".") and part not in (".", "..") for part in inside)


@dataclass
class TokenizerSpec:
    """A tokenizer.json to load, or (path None) a byte-level BPE to train; vocab_size int or 'auto'."""

    path: str | None = None
    vocab_size: int | str = "auto"
    add_bos: bool = False
    add_eos: bool = True
    bos_token: str | None = None
    eos_token: str | None = None

    def __post_init__(self) -> None:
        if self.path is None and not isinstance(self.vocab_size, str) and self.vocab_size < MIN_VOCAB_SIZE:
            raise DataError(f"data.tokenizer.vocab_size {self.vocab_size} is too small for byte-level BPE (256 bytes "
                            f"plus merges): use at least {MIN_VOCAB_SIZE}, or 'auto'")
        if not isinstance(self.vocab_size, str) and self.vocab_size > MAX_VOCAB_SIZE:
            raise DataError(f"data.tokenizer.vocab_size {self.vocab_size:,} is past {MAX_VOCAB_SIZE:,}, far more than "
                            "any tokenizer needs (the model's embedding follows it); use e.g. 32768, or 'auto'")


@dataclass
class DataSpec:
    """Everything that determines the block stream, plus how it is read (mode, workers, batch size)."""

    sources: list[SourceSpec]
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    validation: list[SourceSpec] = field(default_factory=list)
    validation_fraction: float = 0.0
    block_size: int = 4096
    pack_window: int = 64
    seed: int = 1234
    mode: str = "cached"
    cache_dir: str | None = None
    num_workers: int = 0  # processes that build cache shards in `forgather data prepare` (0/1: this process)
    shards: int = 8  # virtual shards: every world size dividing it reads and resumes the same stream
    chunk_tokens: int = 1 << 22  # tokens per chunk, the unit a shard is packed and shuffled in
    shuffle: bool = True  # read each chunk's blocks in a seeded permutation, new every epoch
    batch_size: int = 1
    max_samples: int | None = None  # at most this many documents from each training source

    def __post_init__(self) -> None:
        if not self.sources:
            raise DataError("data.sources is empty; add at least one source (or use the python_docs default)")
        if self.mode not in ("cached", "streaming"):
            raise DataError(f"data.mode must be 'cached' or 'streaming', not {self.mode!r}")
        if self.block_size < 2:
            raise DataError(f"data.block_size must be at least 2, not {self.block_size}")
        if self.shards < 1:
            raise DataError(f"data.shards must be at least 1, not {self.shards}")
        if self.chunk_tokens < self.block_size:
            raise DataError(f"data.chunk_tokens ({self.chunk_tokens}) must be at least data.block_size "
                            f"({self.block_size}); a chunk is many blocks (default 4194304)")
        if self.pack_window < 1:
            raise DataError(f"data.pack_window must be at least 1, not {self.pack_window}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise DataError(f"data.validation_fraction must be in [0, 1), not {self.validation_fraction}")
        if self.batch_size < 1:
            raise DataError(f"data.batch_size must be at least 1, not {self.batch_size}")
        if self.max_samples is not None:
            if self.max_samples < 1:
                raise DataError(f"data.max_samples must be at least 1, not {self.max_samples}")
            for source in self.sources:  # a source's own, smaller cap stands
                source.max_samples = min(self.max_samples, source.max_samples or self.max_samples)
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise DataError(f"data.sources have duplicate names: {names}")

    def resolved_cache_dir(self) -> Path:
        """The cache root: data.cache_dir, else $FORGATHER_DATA_CACHE, else ~/.cache/forgather/data."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("FORGATHER_DATA_CACHE")
        return Path(env) if env else Path.home() / ".cache" / "forgather" / "data"

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: str | Path | None = None) -> "DataSpec":
        """Build from a config mapping; relative paths resolve against base_dir (the project dir)."""
        d = dict(d or {})
        base = Path(base_dir) if base_dir else None
        _check_keys("data", d, cls)
        sources = [_source(s, base, f"data.sources[{i}]")
                   for i, s in enumerate(named_sources(d.pop("sources", None) or []))]
        validation = [_source(s, base, f"data.validation[{i}]")
                      for i, s in enumerate(named_sources(d.pop("validation", None) or []))]
        tok = dict(d.pop("tokenizer", None) or {})
        _check_keys("data.tokenizer", tok, TokenizerSpec)
        if tok.get("path") and "://" not in str(tok["path"]):
            tok["path"] = _resolve(tok["path"], base)
        if d.get("cache_dir"):
            d["cache_dir"] = _resolve(d["cache_dir"], base)
        return cls(sources=sources, validation=validation, tokenizer=TokenizerSpec(**tok), **d)


def default_sources(max_documents: int | None = None) -> list[SourceSpec]:
    """The offline default: docstrings of the Python standard library (a pure function of the Python version)."""
    return [SourceSpec("stdlib_docs", "stdlib", kind="python_docs", max_samples=max_documents)]


def _check_keys(where: str, d: dict, cls: type) -> None:
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _resolve(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    if base is not None and not p.is_absolute():
        return str(base / p)
    return str(p)


def source_name(path: str) -> str:
    """A source name from its path: the last component without globs or extension ('data/*.jsonl' → 'data')."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p and not any(c in p for c in "*?[")]
    stem = Path(parts[-1]).stem if parts else "source"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "source"


def named_sources(entries: Any) -> Any:
    """The entries with a unique `name` on each (derived from the path where absent; _2, _3 on clashes).

    Anything that is not a list of path-bearing entries is returned as is, for the typed check to report."""
    if not isinstance(entries, list):
        return entries
    entries = [{"path": e} if isinstance(e, str) else e for e in entries]
    taken = {e["name"] for e in entries if isinstance(e, dict) and e.get("name")}
    out = []
    for e in entries:
        if isinstance(e, dict) and not e.get("name") and "path" in e:
            base = source_name(str(e["path"]))
            name, n = base, 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
            taken.add(name)
            e = {"name": name, **e}
        out.append(e)
    return out


def _source(s: Any, base: Path | None, where: str) -> SourceSpec:
    if not isinstance(s, dict) or "path" not in s:
        raise DataError(f"{where}: a source needs at least a 'path' (file, glob, dir, hub id, or 'stdlib')")
    s = dict(s)
    _check_keys(where, s, SourceSpec)
    kind = s.get("kind")
    url = "://" in str(s["path"])  # fsspec URLs (hf://datasets/..., s3://...) are never project-relative
    local = kind not in ("hub", "python_docs") and s["path"] not in ("stdlib", "site-packages") and not url
    path = str(s["path"])
    explicit = kind is not None or path.startswith((".", "/", "~")) or any(c in path for c in "*?[")
    maybe_hub = path.count("/") == 1 and Path(path).suffix.lower() not in _EXT_KIND  # resolved_kind's hub rule
    if local and (explicit or not maybe_hub):
        s["path"] = _resolve(path, base)
        return SourceSpec(**s)
    spec = SourceSpec(**s)
    if local and base is not None:
        spec.project_path = _resolve(s["path"], base)
    return spec
