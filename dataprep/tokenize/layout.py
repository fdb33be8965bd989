"""The token-batch layout every tokenize encoder produces, and the protocol an encoder follows.

Rows travel as flat arrays plus offsets (the layout of an Arrow list column), so a batch becomes an Arrow record
batch without a per-row copy. This module is light on purpose (numpy and pyarrow only): ``inspect`` and ``train``
import ``IGNORE_INDEX`` from here without loading a tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from dataprep.records import Record
from dataprep.stage import Rejected

IGNORE_INDEX = -100
# the columns of a causal-LM split (a consumer's layout derives from them: dataprep.emit)
CAUSAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("attention_mask", pa.list_(pa.int8())),
        ("labels", pa.list_(pa.int32())),
        ("length", pa.int32()),
    ]
)


@dataclass
class TokenizedBatch:
    """Rows as flat arrays: row i is ``flat[offsets[i]:offsets[i+1]]`` — the layout of an Arrow list column."""

    ids: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def select(self, rows: np.ndarray) -> TokenizedBatch:
        """The rows at ``rows`` (sorted indexes), as a new batch; used to route rows to their split."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        take = concat_ranges(starts, lengths)
        return TokenizedBatch(
            ids=[self.ids[i] for i in rows],
            splits=[self.splits[i] for i in rows],
            offsets=new_offsets,
            columns={k: v[take] for k, v in self.columns.items()},
            scalars={k: [v[i] for i in rows] for k, v in self.scalars.items()},
            truncated=self.truncated[rows],
        )

    def to_arrow(self, schema: pa.Schema) -> pa.RecordBatch:
        offsets = numpy_array(self.offsets.astype(np.int32))
        arrays = []
        for f in schema:
            if f.name == "id":
                arrays.append(string_array(self.ids))
            elif f.name == "length":
                arrays.append(numpy_array(self.lengths.astype(np.int32)))
            elif f.name in self.columns:
                values = numpy_array(self.columns[f.name].astype(f.type.value_type.to_pandas_dtype()))
                arrays.append(pa.ListArray.from_arrays(offsets, values))
            else:
                arrays.append(pa.array(self.scalars[f.name], f.type))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


# pa.array() of a numpy array or a list first imports pandas when it is installed (0.2-0.3 s of every run's
# start-up, for nothing here); Arrow arrays built from buffers do not.

def numpy_array(values: np.ndarray) -> pa.Array:
    """A primitive Arrow array sharing a 1-d numpy array's memory (no nulls)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A primitive or boolean Arrow array without nulls as numpy, read from its buffers (``to_numpy`` would import
    pandas); a chunked array's chunks are concatenated."""
    if isinstance(array, pa.ChunkedArray):
        parts = [to_numpy(chunk) for chunk in array.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=array.type.to_pandas_dtype())
    if array.null_count:
        raise ValueError("an Arrow array with nulls")
    data = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        if data is None or not len(array):
            return np.zeros(0, dtype=bool)
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little", count=array.offset + len(array))
        return bits[array.offset:].astype(bool)
    dtype = np.dtype(array.type.to_pandas_dtype())
    if data is None or not len(array):
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def bool_array(values: np.ndarray) -> pa.Array:
    """An Arrow boolean array (bit-packed, as Arrow stores them) of a 1-d numpy array (no nulls)."""
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def string_array(strings: Sequence[str]) -> pa.Array:
    """An Arrow string array of Python strings (no nulls)."""
    joined = "".join(strings)
    data = joined.encode("utf-8")
    sizes = map(len, strings) if len(data) == len(joined) else (len(s.encode("utf-8")) for s in strings)
    offsets = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(sizes, dtype=np.int64, count=len(strings)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("more than 2 GiB of strings in one Arrow string array")
    return pa.Array.from_buffers(pa.string(), len(strings), [None, pa.py_buffer(offsets.astype(np.int32)),
                                                              pa.py_buffer(data)])


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each pair, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    before = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=before[1:])
    return starts[row_of] + (np.arange(total) - before[row_of])


@dataclass
class BatchResult:
    tokens: TokenizedBatch
    rejected: list[tuple[int, Rejected]]  # (index of the row in its input batch, reject)


class Encoder(Protocol):
    """A tokenize task: rows are prepared in Python, encoded by the Rust tokenizer (in a worker thread, so the
    next batch prepares meanwhile), then finished into a :class:`TokenizedBatch`.

    ``splits[i]`` is row i's split, or None for a row already rejected (it is skipped).
    """

    task: str
    schema: pa.Schema
    label_names: list[str] | None  # classification: label ids index this list
    created: int  # rows written beyond one per record (the expand policy)

    def prepare(self, records: Sequence[Record], splits: Sequence[str | None]) -> Any: ...

    def encode(self, prepared: Any) -> Any: ...

    def finish(self, prepared: Any, encoded: Any) -> BatchResult: ...

    def options(self) -> dict[str, Any]:
        """Everything that shapes the output, for the cache key and the manifest."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran, for the manifest (``encoder``, ``self_check``)."""
        ...

    def expect(self, input_bytes: int) -> None:
        """The input's size in bytes, known before the first batch (a hint: large inputs load a faster encoder
        early, beside the reading of the first batches)."""
        ...

    def rewrite_split(self, path: Any) -> Any:
        """Replace a finished split file if the task must (classification maps label names to ids)."""
        ...
