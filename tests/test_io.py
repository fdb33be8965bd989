"""Readers of every input format (records, line numbers, errors) and the atomic writers."""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from pathlib import Path

import pytest

from dataprep.errors import InputError
from dataprep.io import AtomicFile, detect_format, dumps, read_batches, read_records
from tests.conftest import FIXTURES

DATA = FIXTURES / "data"
BROKEN = DATA / "broken"
ALPACA = json.loads((DATA / "alpaca.json").read_text(encoding="utf-8"))
FLAT = [r for r in ALPACA if "history" not in r]


def collect_bad() -> tuple[list[tuple[str, str, str, str]], object]:
    seen: list[tuple[str, str, str, str]] = []

    def on_bad(location: str, reason: str, detail: str, raw: str) -> None:
        seen.append((location, reason, detail, raw))

    return seen, on_bad


def object_start_lines(path: Path) -> list[int]:
    """Lines where the indented array's records open: what an editor shows for record i."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [n for n, text in enumerate(lines, start=1) if text == "  {"]


def as_delimited(record: dict) -> dict:
    columns = ("instruction", "input", "output", "system", "category")
    return {c: record.get(c, "") for c in columns}


# --- format detection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.json", "json"), ("a.JSONL", "jsonl"), ("a.ndjson", "jsonl"), ("a.jsonl.gz", "jsonl"),
     ("a.json.gz", "json"), ("a.csv", "csv"), ("a.tsv", "tsv"), ("a.parquet", "parquet"), ("a.txt", "jsonl")],
)
def test_detect_format_from_name(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_detect_format_sniffs_stdin_and_knows_dataset_dirs() -> None:
    assert detect_format("-", b"  \n[{") == "json"
    assert detect_format("-", codecs.BOM_UTF8 + b"[") == "json"
    assert detect_format("-", b'{"a": 1}\n') == "jsonl"
    assert detect_format(str(DATA / "alpaca_saved")) == "arrow"


# --- every reader gives the same records ----------------------------------------------------------------------


def test_json_array_records_lines_and_indexes() -> None:
    batches = list(read_batches(str(DATA / "alpaca.json")))
    assert [r for b in batches for r in b.records] == ALPACA
    assert [n for b in batches for n in b.lines] == object_start_lines(DATA / "alpaca.json")
    assert [i for b in batches for i in b.indexes] == list(range(40))
    assert batches[0].location(3) == f"{DATA / 'alpaca.json'}:{batches[0].lines[3]}"


def test_json_array_in_small_batches_keeps_lines() -> None:
    batches = list(read_batches(str(DATA / "alpaca.json"), batch_size=7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 7, 5]
    assert [n for b in batches for n in b.lines] == object_start_lines(DATA / "alpaca.json")


def test_single_object_json_file_is_one_record(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('\n\n{"instruction": "hi", "output": "hello"}\n', encoding="utf-8")
    [batch] = read_batches(str(path))
    assert batch.records == [{"instruction": "hi", "output": "hello"}]
    assert batch.lines == [3]


@pytest.mark.parametrize("name", ["alpaca.jsonl", "alpaca.jsonl.gz"])
def test_jsonl_and_gzip(name: str) -> None:
    batches = list(read_batches(str(DATA / name)))
    assert [r for b in batches for r in b.records] == ALPACA
    assert [n for b in batches for n in b.lines] == list(range(1, 41))


def test_jsonl_skips_blank_lines_but_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\r\n', encoding="utf-8")
    [batch] = read_batches(str(path))
    assert batch.records == [{"a": 1}, {"a": 2}]
    assert batch.lines == [1, 4]
    assert batch.indexes == [0, 1]


def test_csv_gives_strings_and_the_line_where_a_record_starts() -> None:
    [batch] = read_batches(str(DATA / "alpaca.csv"))
    assert batch.records == [as_delimited(r) for r in FLAT]
    text = (DATA / "alpaca.csv").read_text(encoding="utf-8").splitlines()
    for record, line in zip(batch.records, batch.lines, strict=True):
        assert text[line - 1].lstrip('"').startswith(record["instruction"][:20]), (line, record["instruction"])
    assert batch.lines[:3] == [2, 5, 6]  # the first record's output spans three lines


def test_tsv_has_no_quoting() -> None:
    [batch] = read_batches(str(DATA / "alpaca.tsv"))
    flat = [as_delimited(r) for r in FLAT if not any("\n" in v for v in r.values() if isinstance(v, str))]
    assert batch.records == flat
    assert batch.lines == list(range(2, 2 + len(flat)))
    assert any('"' in r["output"] for r in batch.records)  # a quote is just a character


def test_tsv_in_the_mrpc_layout() -> None:
    records = read_records(str(DATA / "pairs.tsv"))
    assert len(records) == 240
    assert list(records[0]) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    assert sorted({r["Quality"] for r in records}) == ["0", "1"]


def test_csv_with_a_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv:3: expected 2 columns, got 1$"):
        read_records(str(path))


def test_parquet_keeps_types_and_drops_nulls() -> None:
    batches = list(read_batches(str(DATA / "alpaca.parquet"), batch_size=16))
    assert [r for b in batches for r in b.records] == ALPACA
    assert [len(b) for b in batches] == [16, 16, 8]
    assert batches[1].lines == [0] * 16
    assert batches[1].indexes == list(range(16, 32))
    assert batches[1].location(2) == f"{DATA / 'alpaca.parquet'}[18]"


def test_save_to_disk_directory() -> None:
    assert read_records(str(DATA / "alpaca_saved")) == ALPACA


def test_dataset_dict_directory_gives_each_record_its_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(5)]
    DatasetDict({"train": Dataset.from_list(rows[:3]), "validation": Dataset.from_list(rows[3:])}).save_to_disk(
        str(tmp_path / "dd"))
    batches = list(read_batches(str(tmp_path / "dd")))
    assert [(Path(b.source).name, len(b)) for b in batches] == [("train", 3), ("validation", 2)]
    records = [r for b in batches for r in b.records]
    assert [r["split"] for r in records] == ["train"] * 3 + ["validation"] * 2
    assert [r["output"] for r in records] == [f"a{i}" for i in range(5)]


def test_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a dataset saved with save_to_disk"):
        read_records(str(tmp_path))


@pytest.mark.parametrize(
    ("data", "expected_lines"),
    [(b'[\n  {"a": 1},\n  {"a": 2}\n]\n', [2, 3]), (b'{"a": 1}\n{"a": 2}\n', [1, 2]),
     (codecs.BOM_UTF8 + b'[{"a": 1}, {"a": 2}]', [1, 1]), (codecs.BOM_UTF8 + b'{"a": 1}\n{"a": 2}', [1, 2])],
)
@pytest.mark.parametrize("buffered", [True, False])
def test_stdin_is_sniffed(monkeypatch: pytest.MonkeyPatch, data: bytes, expected_lines: list[int],
                          buffered: bool) -> None:
    raw = io.BufferedReader(io.BytesIO(data)) if buffered else io.BytesIO(data)  # a pipe, or CliRunner's stdin
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
    [batch] = read_batches("-")
    assert batch.source == "<stdin>"
    assert batch.records == [{"a": 1}, {"a": 2}]
    assert batch.lines == expected_lines


def test_empty_input_has_no_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert list(read_batches(str(BROKEN / "empty.jsonl"))) == []
    (tmp_path / "blank.json").write_text(" \n", encoding="utf-8")
    (tmp_path / "none.json").write_text("[]", encoding="utf-8")
    assert list(read_batches(str(tmp_path / "blank.json"))) == []
    assert list(read_batches(str(tmp_path / "none.json"))) == []
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert list(read_batches("-")) == []


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_byte_order_mark_is_skipped(tmp_path: Path, suffix: str) -> None:
    body = {".json": '[{"a": "1"}]', ".jsonl": '{"a": "1"}\n', ".csv": "a\n1\n"}[suffix]
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(codecs.BOM_UTF8 + body.encode("utf-8"))
    assert read_records(str(path)) == [{"a": "1"}]


def test_forced_format_overrides_the_name(tmp_path: Path) -> None:
    path = tmp_path / "records.txt"
    path.write_text('[{"a": 1}]', encoding="utf-8")
    assert read_records(str(path), fmt="json") == [{"a": 1}]


# --- broken input: one-line errors naming file and line --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.jsonl", "malformed.jsonl:4: malformed JSON at column 66: Expecting ',' delimiter"),
        ("invalid_utf8.jsonl", "invalid_utf8.jsonl:3: invalid UTF-8 at byte 20"),
        ("truncated.json", "truncated.json:17: malformed JSON at column 15: Unterminated string starting at"),
    ],
)
def test_broken_fixture_errors(name: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        read_records(str(BROKEN / name))
    assert str(info.value) == f"{BROKEN / name}"[: -len(name)] + message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "count"),
    [("wrong_types.json", 4), ("missing_fields.json", 3), ("ends_on_user.json", 2), ("not_alternating.json", 2)],
)
def test_broken_content_is_still_readable_json(name: str, count: int) -> None:
    """These files are well-formed: their faults are for validate and normalize to find, not the reader."""
    assert len(read_records(str(BROKEN / name))) == count


def test_missing_file_and_bad_gzip(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file$"):
        read_records(str(tmp_path / "nope.jsonl"))
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"fake\.jsonl\.gz: cannot read: Not a gzipped file"):
        read_records(str(fake))
    with pytest.raises(InputError, match=r"nope\.parquet: not a readable Parquet file"):
        read_records(str(tmp_path / "nope.parquet"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1}, 2]', r"x\.json:1: expected a JSON object, got int"),
        ('[{"a": 1}\n{"a": 2}]', r"x\.json:2: malformed JSON: expected ',' or ']' after a record"),
        ('[{"a": 1}]\n[]', r"x\.json:2: extra data after the JSON array"),
        ('{"a": 1}\n{"a": 2}\n', r"x\.json:2: extra data after the JSON object \(is this JSONL\? name it \.jsonl\)"),
        ('"text"', r"x\.json:1: expected a JSON array of records"),
    ],
)
def test_json_array_structure_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_records(str(path))


def test_invalid_utf8_inside_a_json_array_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b'[\n{"a": "ok"},\n{"a": "caf\xe9"}\n]')
    with pytest.raises(InputError, match=r"x\.json:3: invalid UTF-8 at byte 25"):
        read_records(str(path))


def test_invalid_utf8_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n3,caf\xe9\n")
    with pytest.raises(InputError, match=r"x\.csv:\d+: invalid UTF-8"):
        read_records(str(path))


# --- on_bad: rejection instead of failure ------------------------------------------------------------------------


def test_on_bad_rejects_a_malformed_line_and_reads_on() -> None:
    seen, on_bad = collect_bad()
    batches = list(read_batches(str(BROKEN / "malformed.jsonl"), on_bad=on_bad))
    assert [n for b in batches for n in b.lines] == [1, 2, 3, 5, 6, 7]
    assert [i for b in batches for i in b.indexes] == list(range(6))
    [(location, reason, detail, raw)] = seen
    assert location == f"{BROKEN / 'malformed.jsonl'}:4"
    assert reason == "malformed_json"
    assert detail == "malformed JSON at column 66: Expecting ',' delimiter"
    assert raw == '{"instruction": "Name a colour.", "input": "", "output": "Green."'


def test_on_bad_rejects_invalid_utf8_and_non_objects(tmp_path: Path) -> None:
    seen, on_bad = collect_bad()
    assert len(read_records(str(BROKEN / "invalid_utf8.jsonl"), on_bad=on_bad)) == 4
    assert [(loc.rsplit(":", 1)[1], reason, detail) for loc, reason, detail, _ in seen] == [
        ("3", "invalid_utf8", "invalid UTF-8 at byte 20")]
    assert "Caf\ufffd menu" in seen[0][3]

    seen, on_bad = collect_bad()
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n"text"\n{"a": 2}\n', encoding="utf-8")
    assert read_records(str(path), on_bad=on_bad) == [{"a": 1}, {"a": 2}]
    assert [(loc.rsplit(":", 1)[1], reason, raw) for loc, reason, _, raw in seen] == [
        ("2", "not_an_object", "[1, 2]"), ("3", "not_an_object", '"text"')]


def test_on_bad_in_a_json_array_skips_non_objects_and_keeps_indexes(tmp_path: Path) -> None:
    seen, on_bad = collect_bad()
    path = tmp_path / "x.json"
    path.write_text('[\n{"a": 1},\n7,\n{"a": 2}\n]', encoding="utf-8")
    [batch] = read_batches(str(path), on_bad=on_bad)
    assert batch.records == [{"a": 1}, {"a": 2}]
    assert batch.lines == [2, 4]
    assert batch.indexes == [0, 2]
    assert [(reason, raw) for _, reason, _, raw in seen] == [("not_an_object", "7")]


def test_on_bad_does_not_hide_whole_file_problems() -> None:
    seen, on_bad = collect_bad()
    with pytest.raises(InputError, match="Unterminated string"):
        read_records(str(BROKEN / "truncated.json"), on_bad=on_bad)


# --- writers ---------------------------------------------------------------------------------------------------


def test_dumps_is_compact_and_keeps_unicode() -> None:
    assert dumps({"a": "日本", "b": [1, 2]}) == '{"a":"日本","b":[1,2]}'


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_file_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "report.txt"
    with pytest.raises(ValueError), AtomicFile(target) as f:
        f.handle.write("half")
        assert leftovers(target.parent) != []  # the temporary file exists meanwhile, beside the target
        raise ValueError("boom")
    assert leftovers(target.parent) == []
    with AtomicFile(target) as f:
        f.handle.write("whole")
    assert target.read_text(encoding="utf-8") == "whole"
    assert leftovers(target.parent) == ["report.txt"]
    assert not any(name.endswith(".tmp") for name in os.listdir(target.parent))
