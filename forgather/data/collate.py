"""Turn packed blocks into the batch dict the model consumes."""

from __future__ import annotations

import numpy as np
import torch

from .packing import IGNORE_INDEX, block_arrays

KEYS = ("input_ids", "labels", "position_ids", "document_ids")


def collate_blocks(blocks: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """input_ids, labels (-100 masked), position_ids, document_ids: each a long tensor [B, T]."""
    arrays = [block_arrays(t, s) for t, s in blocks]
    return {k: torch.from_numpy(np.stack([a[k] for a in arrays])) for k in KEYS}


def empty_block(block_size: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """An all-padding block (labels all -100): fills the last validation batch without biasing the loss."""
    return np.full(block_size, pad_id, dtype=np.int32), np.zeros((0, 4), dtype=np.int64)


def token_count(batch: dict[str, torch.Tensor]) -> int:
    """Positions that contribute to the loss."""
    return int((batch["labels"] != IGNORE_INDEX).sum())
