"""Arrow arrays over numpy buffers, without `pyarrow.array`.

`pa.array` imports pandas the first time it runs in a process (pyarrow checks whether its input is a
pandas object), which costs about 0.2 s in every worker; these helpers never do.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def arrow_from_numpy(values: np.ndarray) -> pa.Array:
    """A primitive Arrow array sharing the buffer of a 1-d numpy array of numbers (copied only when
    the array is not contiguous)."""
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(f"arrow_from_numpy takes a 1-d array of numbers, not {values.dtype} x {values.ndim}-d")
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def list_array(offsets: np.ndarray, values: np.ndarray, large: bool = False) -> pa.Array:
    """A list array (`large`: 64-bit offsets) of `values` cut at `offsets` (length rows + 1)."""
    kind, dtype = (pa.LargeListArray, np.int64) if large else (pa.ListArray, np.int32)
    return kind.from_arrays(arrow_from_numpy(offsets.astype(dtype, copy=False)), arrow_from_numpy(values))
