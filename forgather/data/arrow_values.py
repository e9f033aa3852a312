"""Arrow values made from buffers, on the paths every data-prepare process runs.

pyarrow imports pandas (~0.2 s) the first time it converts a Python or numpy value (`pa.array(ndarray)`,
`pa.scalar("")`, a Python literal passed to a compute function), to check for pandas types; each `data prepare`
helper and training rank opens the data in a fresh interpreter, so these few values are built from buffers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def int64_array(values: np.ndarray) -> pa.Array:
    """`values` as an int64 arrow array (no nulls), sharing a contiguous copy's memory."""
    contiguous = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(contiguous), [None, pa.py_buffer(contiguous)])


def empty_value(type_: pa.DataType) -> pa.Scalar:
    """'' (string types) or b'' (binary types) as a scalar of `type_`."""
    wide = pa.large_string() if pa.types.is_string(type_) or pa.types.is_large_string(type_) else pa.large_binary()
    offsets = pa.py_buffer(np.zeros(2, np.int64))
    return pa.Array.from_buffers(wide, 1, [None, offsets, pa.py_buffer(b"")]).cast(type_)[0]


def value_bytes(column: pa.ChunkedArray) -> np.ndarray:
    """Bytes of each value of a string or binary column, from its offsets (a null spans its slot, normally 0)."""
    wide = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
    parts = []
    for chunk in column.chunks:
        offsets = np.frombuffer(chunk.buffers()[1], np.int64 if wide else np.int32)
        parts.append(np.diff(offsets[chunk.offset:chunk.offset + len(chunk) + 1]).astype(np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
