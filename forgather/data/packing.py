"""Best-fit packing of tokenized documents into fixed-size blocks over a bounded window of open blocks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

IGNORE_INDEX = -100  # the label of positions that predict nothing (padding, a document's last token)
SEG_FIELDS = 4  # start, length, document ordinal, position offset


@dataclass
class Block:
    """One packed block: tokens (padded to block_size) and its segments [start, length, doc, pos_offset]."""

    tokens: np.ndarray
    segments: np.ndarray

    @property
    def used(self) -> int:
        return int(self.segments[:, 1].sum()) if len(self.segments) else 0


@dataclass
class _Open:
    pieces: list = field(default_factory=list)  # (tokens, doc, pos_offset)
    used: int = 0


class Packer:
    """Places each document (or the tail of a long one) into the open block it fits most tightly.

    A document longer than a block is cut into block-sized pieces emitted whole; the tail is packed like a
    short document. Pieces keep counting position ids (pos_offset) so a continuation is marked. When a
    piece fits nowhere and `window` blocks are already open, the fullest open block is padded and emitted:
    the window bounds memory and keeps output order deterministic.
    """

    def __init__(self, block_size: int, window: int, pad_id: int) -> None:
        self.block_size = block_size
        self.window = max(1, window)
        self.pad_id = pad_id
        self.open: list[_Open] = []
        self.ready: deque[Block] = deque()
        self.long_docs = 0
        self.flush_padding = 0  # padding tokens in the blocks flush() emitted

    def add(self, tokens: np.ndarray, doc: int) -> None:
        """Pack one document's tokens; finished blocks go to `ready`."""
        T = self.block_size
        n = len(tokens)
        if n == 0:
            return
        offset = 0
        if n > T:
            self.long_docs += 1
        while n - offset >= T:
            self.ready.append(self._finish([(tokens[offset:offset + T], doc, offset)]))
            offset += T
        if offset < n:
            self._place(tokens[offset:], doc, offset)

    def _place(self, piece: np.ndarray, doc: int, pos_offset: int) -> None:
        T, n = self.block_size, len(piece)
        best, best_free = -1, T + 1
        for i, b in enumerate(self.open):
            free = T - b.used
            if n <= free < best_free:
                best, best_free = i, free
        if best < 0:
            if len(self.open) >= self.window:
                fullest = max(range(len(self.open)), key=lambda i: (self.open[i].used, -i))
                self.ready.append(self._finish(self.open.pop(fullest).pieces))
            self.open.append(_Open())
            best = len(self.open) - 1
        b = self.open[best]
        b.pieces.append((piece, doc, pos_offset))
        b.used += n
        if b.used == T:
            self.ready.append(self._finish(self.open.pop(best).pieces))

    def flush(self) -> None:
        """Emit every open block's pieces (a chunk's end), re-packed first-fit decreasing across blocks, so as
        few blocks as possible carry padding; that padding is counted."""
        pieces = sorted((p for b in self.open for p in b.pieces), key=lambda p: -len(p[0]))
        bins: list[_Open] = []
        for piece in pieces:
            target = next((b for b in bins if b.used + len(piece[0]) <= self.block_size), None)
            if target is None:
                target = _Open()
                bins.append(target)
            target.pieces.append(piece)
            target.used += len(piece[0])
        for b in bins:
            self.flush_padding += self.block_size - b.used
            self.ready.append(self._finish(b.pieces))
        self.open = []

    def _finish(self, pieces: list) -> Block:
        tokens = np.full(self.block_size, self.pad_id, dtype=np.int32)
        segs = np.zeros((len(pieces), SEG_FIELDS), dtype=np.int64)
        at = 0
        for j, (p, doc, off) in enumerate(pieces):
            tokens[at:at + len(p)] = p
            segs[j] = (at, len(p), doc, off)
            at += len(p)
        return Block(tokens, segs)


def block_arrays(tokens: np.ndarray, segments: np.ndarray) -> dict[str, np.ndarray]:
    """input_ids, labels (next token; -100 at each document's last token and padding), position_ids,
    document_ids (0.. per block, -1 on padding) for one block."""
    T = len(tokens)
    input_ids = tokens.astype(np.int64)
    labels = np.full(T, IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros(T, dtype=np.int64)
    document_ids = np.full(T, -1, dtype=np.int64)
    for j, (start, length, _doc, off) in enumerate(segments.tolist()):
        end = start + length
        # the last token of a segment must not predict the next document's first token
        labels[start:end - 1] = input_ids[start + 1:end]
        position_ids[start:end] = np.arange(off, off + length)
        document_ids[start:end] = j
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "document_ids": document_ids}


def fill(blocks_used: int, num_blocks: int, block_size: int) -> float:
    """Fraction of block positions holding real tokens (not padding)."""
    return blocks_used / max(1, num_blocks * block_size)
