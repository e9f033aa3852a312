"""Load a tokenizer.json or train a byte-level BPE; explicit BOS/EOS; vocab-vs-embedding check."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import DataError
from .spec import MIN_VOCAB_SIZE, TokenizerSpec
from .written import CACHE_FIX, write_whole

_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>")
_BOS_CANDIDATES = ("<|endoftext|>", "<s>", "<bos>", "<|begin_of_text|>")
TRAINED_SPECIAL = "<|endoftext|>"
AUTO_VOCABS = (4096, 8192, 16384, 32768)


@dataclass
class Tokenizer:
    """A `tokenizers.Tokenizer` plus the document-boundary policy (BOS/EOS ids) the packer relies on."""

    path: str
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    add_eos: bool
    file_hash: str
    _tok: object = None

    @property
    def tok(self):
        """The underlying tokenizers.Tokenizer (loaded lazily so the dataclass pickles small)."""
        if self._tok is None:
            from tokenizers import Tokenizer as HFTokenizer

            self._tok = HFTokenizer.from_file(self.path)
        return self._tok

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tok": None}

    @property
    def vocab_size(self) -> int:
        """Number of ids the model must embed (including added special tokens)."""
        return self.tok.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        """Id written into padding positions (masked out of the loss, so any valid id works)."""
        return self.eos_id if self.eos_id is not None else (self.bos_id if self.bos_id is not None else 0)

    def encode_docs(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids per document, with BOS/EOS added as configured (tokenizer's own post-processor off).

        A blank document is no document: it yields no tokens at all, not a lone BOS/EOS.
        """
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        pre = [self.bos_id] if self.add_bos else []
        post = [self.eos_id] if self.add_eos else []
        return [np.asarray(pre + e.ids + post if t.strip() else [], dtype=np.int32) for t, e in zip(texts, encs)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text for ids, special tokens kept visible."""
        return self.tok.decode(list(map(int, ids)), skip_special_tokens=False)

    def settings(self) -> dict:
        """What the token stream depends on, for cache fingerprints."""
        return {"file": self.file_hash, "bos": self.bos_id, "eos": self.eos_id,
                "add_bos": self.add_bos, "add_eos": self.add_eos}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_tokenizer(url: str, cache_root: Path) -> Path:
    """A remote tokenizer.json (hf://ORG/MODEL/tokenizer.json, https://...) copied once into the cache."""
    import fsspec

    target = cache_root / "tokenizers" / "remote" / hashlib.sha256(url.encode()).hexdigest()[:16] / "tokenizer.json"
    if target.is_file():
        return target
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
    except Exception as exc:  # offline, no such repo or file, auth: the same fix for all of them
        raise DataError(f"data.tokenizer.path {url}: cannot fetch it ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); download tokenizer.json and point "
                        "data.tokenizer.path at the file") from None
    return write_whole(target, data)


def keep_copy(path: str | Path, cache_root: Path) -> Path:
    """A content-addressed copy of a tokenizer.json under the cache (stays when the original is deleted)."""
    target = Path(cache_root) / "tokenizers" / "kept" / f"{file_sha256(path)[:16]}.json"
    if not target.is_file():
        write_whole(target, Path(path).read_bytes())
    return target


def load_tokenizer(spec: TokenizerSpec, path: str | None = None) -> Tokenizer:
    """Load spec.path (or an explicit trained path) and resolve BOS/EOS ids; DataError on any problem."""
    from tokenizers import Tokenizer as HFTokenizer

    path = path or spec.path
    if not path:
        raise DataError("data.tokenizer.path is not set; give a tokenizer.json or let forgather train one")
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(path):
        raise DataError(f"tokenizer file not found: {path}")
    try:
        hf = HFTokenizer.from_file(path)
    except Exception as e:
        raise DataError(f"cannot load tokenizer {path}: {str(e)[:200]}") from None
    bos = _special_id(hf, spec.bos_token, _BOS_CANDIDATES, "bos", spec.add_bos, path)
    eos = _special_id(hf, spec.eos_token, _EOS_CANDIDATES, "eos", spec.add_eos, path)
    t = Tokenizer(path, bos, eos, spec.add_bos, spec.add_eos, file_sha256(path))
    t._tok = hf
    return t


def _special_id(hf, name: str | None, candidates: tuple[str, ...], role: str, needed: bool, path: str) -> int | None:
    if name is not None:
        i = hf.token_to_id(name)
        if i is None:
            raise DataError(f"tokenizer {path} has no token {name!r} (data.tokenizer.{role}_token)")
        return i
    for c in candidates:
        i = hf.token_to_id(c)
        if i is not None:
            return i
    if needed:
        raise DataError(f"tokenizer {path} has none of {', '.join(candidates)}; set data.tokenizer.{role}_token "
                        f"or add_{role}: false")
    return None


def auto_vocab_size(unique_words: int) -> int:
    """Vocab heuristic: ~1 token per 4 distinct words, rounded up to 4096/8192/16384/32768.

    <16k distinct words → 4096, <32k → 8192, <64k → 16384, else 32768. Small corpora get small
    vocabularies so each merge is seen often enough to be learned; 32768 caps embedding cost.
    """
    for v in AUTO_VOCABS:
        if unique_words < v * 4:
            return v
    return AUTO_VOCABS[-1]


def count_unique_words(texts: Iterable[str], limit: int = 2_000_000) -> int:
    """Distinct whitespace/punctuation-separated words (capped at `limit` for speed)."""
    seen: set[str] = set()
    for t in texts:
        seen.update(re.findall(r"\w+", t.lower()))
        if len(seen) >= limit:
            break
    return len(seen)


TOKENIZER_SAMPLE_CHARS = 400_000_000  # BPE merges settle long before this; it bounds time and memory on huge data


def tokenizer_sample(sources: list, budget: int = TOKENIZER_SAMPLE_CHARS) -> Iterator[str]:
    """Documents to train a tokenizer on: all of a small corpus; on a big one, each source's leading documents
    up to its share (∝ its document count) of `budget` characters."""
    total = max(1, sum(len(s) for s in sources))
    for source in sources:
        allowance = budget * len(source) / total
        for a in range(0, len(source), 1024):
            for text in source.texts(a, a + 1024):
                yield text
                allowance -= len(text)
            if allowance <= 0:
                break


def train_tokenizer(texts: Iterable[str], vocab_size: int | str, out_path: str | Path, fix: str = CACHE_FIX) -> Path:
    """Train a byte-level BPE (special token <|endoftext|> = id 0) and save it atomically to out_path (`fix`: what
    a failed write tells the user to do)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    texts = list(texts)
    if vocab_size == "auto" or vocab_size is None:
        vocab_size = auto_vocab_size(count_unique_words(texts))
    vocab_size = int(vocab_size)
    if vocab_size < MIN_VOCAB_SIZE:
        raise DataError(f"data.tokenizer.vocab_size {vocab_size} is too small for byte-level BPE "
                        f"(min {MIN_VOCAB_SIZE})")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[TRAINED_SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_batches(texts), trainer=trainer, length=len(texts))
    # Serialised here and written by write_whole: the tokenizers library's own save raises a bare Exception.
    return write_whole(Path(out_path), tok.to_str(pretty=True), fix)


def _batches(texts: list[str], n: int = 256) -> Iterator[list[str]]:
    for i in range(0, len(texts), n):
        yield texts[i:i + n]


def trained_path(cache_root: Path, sources_digest: str, vocab_size: int | str) -> Path:
    """Where the tokenizer trained on these sources with this vocab setting is saved."""
    key = hashlib.sha256(json.dumps([sources_digest, str(vocab_size)]).encode()).hexdigest()[:16]
    return cache_root / "tokenizers" / f"bpe-{key}.json"


def check_vocab(vocab_size: int, embedding_size: int) -> None:
    """DataError when token ids could index past the model's embedding table."""
    if vocab_size > embedding_size:
        raise DataError(f"tokenizer vocab ({vocab_size} ids) is larger than the model's embedding "
                        f"({embedding_size} rows); set model vocab_size >= {vocab_size} or use a smaller tokenizer")


def save_tokenizer_files(tokenizer: Tokenizer, out_dir: str | Path) -> None:
    """tokenizer.json plus a tokenizer_config.json, so a saved model dir is complete for HF AutoTokenizer too."""
    import shutil

    out = Path(out_dir)
    shutil.copyfile(tokenizer.path, out / "tokenizer.json")
    tok = tokenizer.tok

    def name(token_id: int | None) -> str | None:
        return None if token_id is None else tok.id_to_token(token_id)

    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name(tokenizer.bos_id),
              "eos_token": name(tokenizer.eos_id), "pad_token": name(tokenizer.pad_id)}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
