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
