"""Which rows of a dim-0-sharded tensor (an FSDP2 parameter, a DTensor) this rank holds.

FSDP2 splits dim 0 like torch.chunk: rank r of W holds rows [r·c, min((r+1)·c, N)) with c = ceil(N / W).
Checkpoints write and read those rows, and meta-device init fills them, from the same rule.
"""

from __future__ import annotations

from torch import Tensor


def chunk_rows(rows: int, parts: int, index: int) -> tuple[int, int]:
    """Rows [start, stop) of part `index` when `rows` are split like torch.chunk into `parts` (FSDP2's rule)."""
    size = -(-rows // parts) if rows else 0
    start = min(rows, index * size)
    return start, min(rows, start + size)


def local_rows(tensor: Tensor) -> tuple[Tensor, int, int, bool]:
    """(this rank's local rows, their global [start, stop), whether this rank is the one that writes them).

    A plain tensor is all rows, written by every caller (the caller picks one rank); a DTensor sharded on dim 0
    is the chunk of its mesh coordinate; replicated mesh dimensions (HSDP) write only from coordinate 0.
    """
    if not hasattr(tensor, "to_local"):
        return tensor, 0, tensor.shape[0] if tensor.dim() else 0, True
    from torch.distributed.tensor import Replicate, Shard

    local = tensor.to_local()
    mesh, start, stop, writer = tensor.device_mesh, 0, tensor.shape[0] if tensor.dim() else 0, True
    for dim, placement in enumerate(tensor.placements):
        coordinate = mesh.get_local_rank(dim)
        if isinstance(placement, Shard):
            if placement.dim != 0:
                raise ValueError(f"tensors sharded on dim {placement.dim} are not supported (only dim 0)")
            start, stop = chunk_rows(tensor.shape[0], mesh.size(dim), coordinate)
        elif isinstance(placement, Replicate):
            writer = writer and coordinate == 0
    if local.dim() and local.shape[0] != stop - start:
        raise ValueError(f"a DTensor's local rows ({local.shape[0]}) are not its chunk [{start}, {stop})")
    return local, start, stop, writer
