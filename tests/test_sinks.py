"""Sinks: JSONL/gzip/Parquet files and split folders appear whole on success and leave nothing on failure."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataprep.errors import DataprepError
from dataprep.io import Batch, dumps, read_records
from dataprep.sinks import RecordSink, SplitFilesSink
from tests.conftest import FIXTURES

ALPACA = json.loads((FIXTURES / "data" / "alpaca.json").read_text(encoding="utf-8"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz", "out.parquet"])
def test_record_sink_leaves_nothing_when_the_run_fails(tmp_path: Path, name: str) -> None:
    with pytest.raises(RuntimeError), RecordSink(str(tmp_path / name)) as writer:
        writer.write(ALPACA[:3])
        raise RuntimeError("stage crashed")
    assert leftovers(tmp_path) == []


def test_record_sink_keeps_the_old_file_when_the_run_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n", encoding="utf-8")
    with pytest.raises(RuntimeError), RecordSink(str(target)) as writer:
        writer.write(ALPACA[:3])
        raise RuntimeError("stage crashed")
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert leftovers(tmp_path) == ["out.jsonl"]


def test_record_sink_jsonl_and_gzip_round_trip(tmp_path: Path) -> None:
    for name in ("out.jsonl", "a/b/out.jsonl.gz"):
        with RecordSink(str(tmp_path / name)) as writer:
            writer.write(ALPACA[:20])
            writer.write(ALPACA[20:])
        assert writer.count == 40
        assert read_records(str(tmp_path / name)) == ALPACA
    plain = (tmp_path / "out.jsonl").read_bytes()
    assert gzip.decompress((tmp_path / "a/b/out.jsonl.gz").read_bytes()) == plain
    assert plain.decode("utf-8") == "".join(dumps(r) + "\n" for r in ALPACA)


def test_record_sink_gzip_bytes_are_reproducible(tmp_path: Path) -> None:
    blobs = []
    for name in ("one.jsonl.gz", "two.jsonl.gz"):
        with RecordSink(str(tmp_path / name)) as writer:
            writer.write(ALPACA)
        blobs.append((tmp_path / name).read_bytes())
    assert blobs[0] == blobs[1]


def test_record_sink_parquet_round_trip_with_meta(tmp_path: Path) -> None:
    records = [
        {"id": "a", "prompt": "p", "response": "r", "history": [["u", "v"]], "meta": {"category": "qa", "n": 1}},
        {"id": "b", "prompt": "p2", "response": "r2", "history": []},
    ]
    with RecordSink(str(tmp_path / "out.parquet")) as writer:
        writer.write(records)
    assert read_records(str(tmp_path / "out.parquet")) == records
    assert leftovers(tmp_path) == ["out.parquet"]


def test_record_sink_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with RecordSink("-") as writer:
        writer.write([{"a": "é"}, {"b": 2}])
    assert capsys.readouterr().out == '{"a":"é"}\n{"b":2}\n'




def test_parquet_is_written_batch_by_batch(tmp_path: Path) -> None:
    """Each write is one row group: the sink never holds more than the batch it is given."""
    target = tmp_path / "out.parquet"
    with RecordSink(str(target)) as sink:
        for start in range(0, 40, 10):
            sink.write(ALPACA[start:start + 10])
    assert pq.ParquetFile(target).num_row_groups == 4
    assert read_records(str(target)) == ALPACA


def test_parquet_keeps_a_field_that_appears_late(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with RecordSink(str(target)) as sink:
        sink.write([{"id": "a", "prompt": "p", "score": None}])
        sink.write([{"id": "b", "prompt": "p", "late": 1, "score": 2.5}])
    assert read_records(str(target)) == [{"id": "a", "prompt": "p"},
                                         {"id": "b", "prompt": "p", "late": 1, "score": 2.5}]


def test_parquet_refuses_a_column_of_two_types(tmp_path: Path) -> None:
    with pytest.raises(DataprepError, match="do not fit one Parquet schema"), \
            RecordSink(str(tmp_path / "out.parquet")) as sink:
        sink.write([{"id": "a", "x": 1}])
        sink.write([{"id": "b", "x": "text"}])
    assert leftovers(tmp_path) == []


def test_record_sink_takes_a_batch(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with RecordSink(str(target)) as sink:
        sink.write(Batch("x", ALPACA[:2], [1, 2], [0, 1]))
    assert target.read_text(encoding="utf-8") == "".join(dumps(r) + "\n" for r in ALPACA[:2])


def split_rows(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "split": ("train", "validation", "test")[i % 3]} for i in range(n)]


def test_split_files_are_committed_as_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "splits"
    sink = SplitFilesSink(str(out), ["train", "validation", "test"])
    sink.write(split_rows(9))
    assert not out.exists()  # nothing visible before the commit
    sink.close(ok=True)
    assert leftovers(out) == ["test.jsonl", "train.jsonl", "validation.jsonl"]
    assert [r["id"] for r in read_records(str(out / "validation.jsonl"))] == ["1", "4", "7"]
    assert leftovers(tmp_path) == ["splits"]


def test_a_failed_split_run_keeps_every_old_file(tmp_path: Path) -> None:
    out = tmp_path / "splits"
    out.mkdir()
    for name in ("train", "validation", "test"):
        (out / f"{name}.jsonl").write_text("OLD\n")
    sink = SplitFilesSink(str(out), ["train", "validation", "test"])
    sink.write(split_rows(6))
    sink.close(ok=False)
    assert {p.read_text() for p in out.iterdir()} == {"OLD\n"}
    assert leftovers(tmp_path) == ["splits"]


def test_split_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "raw.json").write_text("[]")
    with pytest.raises(DataprepError, match="holds other files"):
        SplitFilesSink(str(out), ["train", "validation"])
    assert leftovers(out) == ["raw.json"]
