"""Shards read exactly as whole files: the same records, locations, rejects and errors, from paths and URIs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.errors import InputError
from dataprep.io import read_batches
from dataprep.shards import count_lines, hash_file, number_lines, plan_shards, read_shard
from tests.conftest import FIXTURES

LINES = [
    '\ufeff{"id": "a", "n": 1}',
    '{"id": "b", "n": 2}',
    "",
    '{"id": "c", "n": NaN}',
    "not json",
    '{"id": "d", "n": 4, "n": 5}',
    '{"id": "e", "text": "' + "x" * 300 + '"}',
    "[1, 2]",
    '{"id": "f", "n": 6}',
]


def _whole(path: str, **kwargs: object) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    bad: list[tuple[str, str]] = []
    rows = [(b.location(i), r) for b in read_batches(path, on_bad=lambda loc, reason, *_: bad.append((loc, reason)),
                                                      **kwargs) for i, r in enumerate(b.records)]
    return rows, bad


def _sharded(path: str, shard_bytes: int, fmt: str | None = None) -> tuple[list, list, int]:
    shards = plan_shards(0, path, fmt, shard_bytes=shard_bytes)
    shards = number_lines(shards, [count_lines(s) for s in shards])
    bad: list[tuple[str, str]] = []
    rows = [(b.location(i), r) for s in shards
            for b in read_shard(s, on_bad=lambda loc, reason, *_: bad.append((loc, reason)))
            for i, r in enumerate(b.records)]
    return rows, bad, len(shards)


@pytest.mark.parametrize("shard_bytes", [1, 20, 64, 1 << 20])
def test_jsonl_shards_give_the_records_locations_and_rejects_of_the_whole_file(tmp_path: Path,
                                                                               shard_bytes: int) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    rows, bad, n = _sharded(str(path), shard_bytes)
    assert (rows, bad) == _whole(str(path))
    assert bad == [(f"{path}:4", "non_finite_number"), (f"{path}:5", "malformed_json"),
                   (f"{path}:6", "duplicate_key"), (f"{path}:8", "not_an_object")]
    assert n > 1 or shard_bytes == 1 << 20


def test_shards_start_after_a_newline_and_cover_the_file(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    data = ("\n".join(LINES) + "\n").encode("utf-8")
    path.write_bytes(data)
    shards = plan_shards(3, str(path), shard_bytes=25)
    assert shards[0].start == 0 and shards[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(shards, shards[1:], strict=False))
    assert all(data[s.start - 1:s.start] == b"\n" for s in shards[1:])
    assert [s.index for s in shards] == list(range(len(shards))) and {s.source for s in shards} == {3}


def test_a_malformed_line_in_a_later_shard_stops_with_the_whole_files_error(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 1}\n' * 50 + "{oops\n", encoding="utf-8")
    with pytest.raises(InputError) as whole:
        list(read_batches(str(path)))
    shards = plan_shards(0, str(path), shard_bytes=100)
    shards = number_lines(shards, [count_lines(s) for s in shards])
    with pytest.raises(InputError) as sharded:
        for s in shards:
            list(read_shard(s))
    assert str(sharded.value) == str(whole.value) == f"{path}:51: malformed JSON at column 2: " \
        "Expecting property name enclosed in double quotes"


def test_parquet_is_sharded_by_row_group_with_row_indexes(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    table = pa.table({"id": [str(i) for i in range(10)], "x": [float(i) for i in range(9)] + [float("nan")]})
    pq.write_table(table, path, row_group_size=3)
    rows, bad, n = _sharded(str(path), 1)
    assert n == 4
    assert (rows, bad) == _whole(str(path))
    assert rows[4][0] == f"{path}[4]" and bad == [(f"{path}[9]", "non_finite_number")]


@pytest.mark.parametrize("name", ["alpaca.json", "alpaca.csv", "alpaca.tsv", "alpaca.jsonl.gz", "alpaca_saved"])
def test_formats_without_a_middle_are_one_shard(name: str) -> None:
    path = str(FIXTURES / "data" / name)
    rows, bad, n = _sharded(path, 10)
    assert n == 1 and (rows, bad) == _whole(path)


def test_a_file_uri_reads_like_the_path_and_names_the_uri(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    uri = path.as_uri()
    rows, bad, _ = _sharded(uri, 30)
    local_rows, local_bad = _whole(str(path))
    assert [r for _, r in rows] == [r for _, r in local_rows]
    assert [loc for loc, _ in bad] == [loc.replace(str(path), uri) for loc, _ in local_bad]
    assert hash_file(uri) == (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)


def test_a_missing_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        plan_shards(0, str(tmp_path / "nope.jsonl"))
