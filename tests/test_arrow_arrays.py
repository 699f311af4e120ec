"""Arrow arrays over numpy buffers: the same arrays as `pa.array`, without importing pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from curate.arrow_arrays import arrow_from_numpy, list_array


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64])
def test_arrow_from_numpy_equals_pa_array(dtype):
    values = np.arange(7).astype(dtype)
    assert arrow_from_numpy(values).equals(pa.array(values))
    strided = values[::2]  # not contiguous: copied
    assert arrow_from_numpy(strided).equals(pa.array(strided))
    assert arrow_from_numpy(values[3:]).to_pylist() == values[3:].tolist()  # a view starting inside the buffer


def test_arrow_from_numpy_refuses_what_arrow_lays_out_differently():
    with pytest.raises(TypeError, match="bool"):
        arrow_from_numpy(np.array([True, False]))  # Arrow packs booleans into bits
    with pytest.raises(TypeError, match="2-d"):
        arrow_from_numpy(np.zeros((2, 2)))


@pytest.mark.parametrize("large", [False, True])
def test_list_array_cuts_values_at_offsets(large):
    out = list_array(np.array([0, 2, 2, 5]), np.array([1, 2, 3, 4, 5], dtype=np.uint64), large=large)
    assert out.to_pylist() == [[1, 2], [], [3, 4, 5]]
    assert out.type == (pa.large_list(pa.uint64()) if large else pa.list_(pa.uint64()))


def test_list_array_does_not_import_pandas():
    code = (
        "import sys, numpy as np; from curate.arrow_arrays import list_array; "
        "list_array(np.array([0, 1]), np.array([7], dtype=np.uint32)); print('pandas' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
