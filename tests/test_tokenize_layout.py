"""The token-batch layout's Arrow arrays: built from buffers (no pandas import), equal to pyarrow's own."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from dataprep.tokenize.layout import (
    CAUSAL_SCHEMA,
    TokenizedBatch,
    bool_array,
    numpy_array,
    string_array,
    to_numpy,
)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_numpy_array_equals_pyarrows_conversion(dtype: type) -> None:
    values = np.array([3, -1, 0, 7], dtype=dtype)
    assert numpy_array(values).equals(pa.array(values))
    assert numpy_array(values[::2]).equals(pa.array(values[::2]))  # not contiguous: copied first


@pytest.mark.parametrize("strings", [[], ["a", "", "bcd"], ["é", "中文", "😀x", ""], ["3e5bef509efdb55a"] * 3])
def test_string_array_equals_pyarrows_conversion(strings: list[str]) -> None:
    assert string_array(strings).equals(pa.array(strings, pa.string()))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100])
def test_bool_array_equals_pyarrows_conversion(n: int) -> None:
    values = np.random.default_rng(n).random(n) > 0.5
    array = bool_array(values)
    array.validate(full=True)
    assert array.equals(pa.array(values.tolist(), pa.bool_()))


@pytest.mark.parametrize("values", [[3, -1, 0, 7, 9], [True, False, True, True, False, False, True, False, True], []])
def test_to_numpy_reads_what_pyarrow_reads(values: list) -> None:
    array = pa.array(values, pa.bool_() if values and isinstance(values[0], bool) else pa.int32())
    for part in (array, array.slice(1), array.slice(2, 3), pa.chunked_array([array.slice(1), array], array.type)):
        assert to_numpy(part).tolist() == part.to_pylist()
        assert to_numpy(part).dtype == (bool if pa.types.is_boolean(array.type) else np.int32)
    with pytest.raises(ValueError, match="nulls"):
        to_numpy(pa.array([1, None], pa.int32()))


def test_a_batch_becomes_arrow_without_importing_pandas() -> None:
    code = ("import sys, numpy as np; from dataprep.tokenize.layout import CAUSAL_SCHEMA, TokenizedBatch; "
            "b = TokenizedBatch(ids=['x', 'é'], splits=['train'] * 2, offsets=np.array([0, 2, 3]), columns={"
            "'input_ids': np.array([1, 2, 3]), 'attention_mask': np.ones(3, np.int8), 'labels': np.array([-100, 2, 3])},"
            " truncated=np.zeros(2, bool)); print(b.to_arrow(CAUSAL_SCHEMA).num_rows, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]


def test_to_arrow_rows() -> None:
    batch = TokenizedBatch(ids=["a", "b"], splits=["train"] * 2, offsets=np.array([0, 1, 3]),
                           columns={"input_ids": np.array([5, 6, 7]), "attention_mask": np.ones(3, np.int8),
                                    "labels": np.array([-100, 6, 7])}, truncated=np.zeros(2, bool))
    rows = pa.Table.from_batches([batch.to_arrow(CAUSAL_SCHEMA)]).to_pylist()
    assert rows == [{"id": "a", "input_ids": [5], "attention_mask": [1], "labels": [-100], "length": 1},
                    {"id": "b", "input_ids": [6, 7], "attention_mask": [1, 1], "labels": [6, 7], "length": 2}]
