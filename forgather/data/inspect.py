"""What `forgather data show` and `forgather data prepare` print (the CLI only wires arguments)."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from .packing import IGNORE
from .spec import DataSpec

DOC_MARK = "\n⟦doc {doc} · pos {pos}{cont}⟧\n"


def progress_printer(label: str, stream: TextIO | None = None, width: int = 30) -> Callable[[int, int], None]:
    """A plain \\r progress bar (a line per update when not a TTY) — tqdm is not a dependency."""
    out = stream or sys.stderr
    tty = out.isatty()
    start = time.monotonic()
    last = [-1.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if not tty and done < total and now - last[0] < 2.0:
            return  # logs get a line every 2 s, not every batch
        last[0] = now
        frac = done / max(1, total)
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done / max(1e-9, now - start)
        line = f"{label} [{bar}] {done}/{total} docs {rate:,.0f} docs/s"
        out.write(("\r" + line) if tty else (line + "\n"))
        if tty and done >= total:
            out.write("\n")
        out.flush()

    return update


def describe_sources(data) -> str:
    """Sources with document counts, skipped/replaced counts and their draw probabilities."""
    rows = ["| source | documents | skipped empty | replaced utf-8 | probability |", "|---|---:|---:|---:|---:|"]
    for label, stream in (("train", data.train), ("validation", data.val)):
        if stream is None:
            continue
        total = sum(stream.counts)
        for s, n in zip(stream.sources, stream.counts):
            rows.append(f"| {label}: {s.name} | {n:,} | {s.stats.skipped_empty:,} | {s.stats.replaced_utf8:,} "
                        f"| {n / max(1, total):.3f} |")
    return "\n".join(rows)


def render_block(data, k: int = 0, epoch: int = 0, max_chars: int = 2000) -> str:
    """Block k decoded, with a marker at every document start (⟦doc ordinal · first position · continued⟧)."""
    tokens, segs = data.train.block(k, epoch)
    tok = data.tokenizer
    parts = []
    for start, length, doc, off in segs.tolist():
        cont = " · continued" if off > 0 else ""
        parts.append(DOC_MARK.format(doc=doc, pos=off, cont=cont) + tok.decode(tokens[start:start + length]))
    used = int(segs[:, 1].sum()) if len(segs) else 0
    if used < len(tokens):
        parts.append(f"\n⟦padding × {len(tokens) - used}⟧")
    text = "".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n… ({len(text) - max_chars} more characters)"
    return text


def show(spec: DataSpec, block: int = 0, max_chars: int = 2000, out: TextIO | None = None) -> str:
    """Sources, sizes, probabilities, tokenizer, cache/fill facts and a decoded sample block."""
    from .loader import open_data

    data = open_data(spec, progress=progress_printer("prepare", out))
    lines = [describe_sources(data), "",
             f"tokenizer: {data.tokenizer.path} (vocab {data.tokenizer.vocab_size:,}, bos {data.tokenizer.bos_id}, "
             f"eos {data.tokenizer.eos_id}, add_bos {data.tokenizer.add_bos}, add_eos {data.tokenizer.add_eos})",
             f"block_size {spec.block_size}, pack_window {spec.pack_window}, seed {spec.seed}, mode {spec.mode}"]
    if spec.mode == "cached":
        ep = data.train.epoch(0)
        m = ep.manifest
        lines.append(f"cache: {ep.path} — {m['num_blocks']:,} blocks, {m['tokens']:,} tokens, fill {m['fill']:.2%}")
    tokens, segs = data.train.block(block)
    lines += ["", f"block {block}: {len(segs)} segment(s), "
                  f"fill {int(segs[:, 1].sum()) / len(tokens):.2%}, labels masked at "
                  f"{len(segs)} segment end(s) + padding (label {IGNORE})", render_block(data, block, 0, max_chars)]
    return "\n".join(lines)


def prepare(spec: DataSpec, epochs: int = 1, out: TextIO | None = None) -> str:
    """Build the caches (with a progress bar) and return a one-paragraph summary."""
    from .loader import open_data
    from .loader import prepare as build

    if spec.mode != "cached":
        return "mode is streaming: nothing to prepare (blocks are packed on the fly)"
    t0 = time.monotonic()
    data = open_data(spec, progress=progress_printer("tokenize+pack", out))
    build(data, epochs)
    lines = []
    for label, stream, n in (("train", data.train, epochs), ("validation", data.val, 1)):
        if stream is None:
            continue
        for e in range(n):
            m = stream.epoch(e).manifest
            lines.append(f"{label} epoch {e}: {m['num_blocks']:,} blocks × {m['block_size']} = {m['tokens']:,} "
                         f"tokens, fill {m['fill']:.2%} → {stream.epoch(e).path}")
    lines.append(f"done in {time.monotonic() - t0:.1f}s")
    return "\n".join(lines)
