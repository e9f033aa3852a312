"""What `forgather data show` prints (the CLI only wires arguments)."""

from __future__ import annotations

from typing import TextIO

from .packing import IGNORE_INDEX
from .spec import DataSpec

DOC_MARK = "\n⟦doc {doc} · pos {pos}{cont}⟧\n"


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


def render_block(data, k: int = 0, max_chars: int = 2000) -> str:
    """Global block k decoded, with a marker at every document start (⟦doc ordinal · first position · continued⟧)."""
    tokens, segs = data.train.block(k)
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


def documents_per_batch(stream, batch_size: int, batches: int) -> list[int]:
    """Distinct documents in each of the first `batches` global batches of `batch_size` blocks."""
    readers = {s: stream.reader(s) for s in range(stream.shards)}
    counts = []
    for b in range(batches):
        docs = set()
        for k in range(b * batch_size, (b + 1) * batch_size):
            docs.update(readers[k % stream.shards].next_block()[1][:, 2].tolist())
        counts.append(len(docs))
    return counts


def show(spec: DataSpec, block: int = 0, max_chars: int = 2000, batch_size: int = 8, batches: int = 50,
         out: TextIO | None = None) -> str:
    """Sources, probabilities, tokenizer, shard layout, fill, documents per batch and a decoded sample block."""
    from .opening import open_data

    data = open_data(spec)
    train = data.train
    sizes = [train.layout.shard_documents(s) for s in range(train.shards)]
    from .python_docs import describe as describe_python_docs

    notes = [f"{s.name}: {describe_python_docs(s.ident['python_docs'])}" for s in train.sources
             if "python_docs" in getattr(s, "ident", {})]
    lines = [describe_sources(data), *notes, "",
             f"tokenizer: {data.tokenizer.path} (vocab {data.tokenizer.vocab_size:,}, bos {data.tokenizer.bos_id}, "
             f"eos {data.tokenizer.eos_id}, add_bos {data.tokenizer.add_bos}, add_eos {data.tokenizer.add_eos})",
             f"block_size {spec.block_size}, pack_window {spec.pack_window}, seed {spec.seed}, mode {spec.mode}, "
             f"shards {spec.shards} ({min(sizes):,}–{max(sizes):,} documents each), chunk_tokens "
             f"{spec.chunk_tokens:,}, shuffle {spec.shuffle}"]
    firsts = [train.chunk(s, 0, 0)[0] for s in range(train.shards)]
    blocks = sum(c.num_blocks for c in firsts)
    capacity = max(1, blocks * spec.block_size)
    lines.append(f"first chunk of each shard: {blocks:,} blocks, fill {sum(c.used for c in firsts) / capacity:.2%} "
                 f"(chunk ends pad {sum(c.flush_padding for c in firsts) / capacity:.2%})")
    counts = documents_per_batch(train, batch_size, batches)
    lines.append(f"documents per batch of {batch_size} blocks (first {batches} batches): mean "
                 f"{sum(counts) / len(counts):.2f}, min {min(counts)}; {sum(c == 1 for c in counts)} batch(es) from "
                 "a single document")
    tokens, segs = train.block(block)
    lines += ["", f"block {block} (shard {block % train.shards}): {len(segs)} segment(s), "
                  f"fill {int(segs[:, 1].sum()) / len(tokens):.2%}, labels masked at "
                  f"{len(segs)} segment end(s) + padding (label {IGNORE_INDEX})", render_block(data, block, max_chars)]
    return "\n".join(lines)
