"""Readers of every input format (records, line numbers, errors) and the atomic writers."""

from __future__ import annotations

import codecs
import io
import json
import os
import subprocess
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


# --- one bad row never kills a run (issue 10, item 6) -------------------------------------------------------------

CANON = '{"id":"x","prefix":"","prompt":"p","query":"","response":"r","history":[]}'
DEEP = '{"id":"d","prompt":"p","response":"r","meta":{"x":' + "[" * 100_000 + "]" * 100_000 + "}}"


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        ('{"id":"s1","response":"\\ud800"}', "invalid_unicode",
         "lone surrogate \\ud800 in a string (not a character; cannot be written as UTF-8)"),
        ('{"id":"s2","response":"ok","meta":{"k\\udc80":1}}', "invalid_unicode",
         "lone surrogate \\udc80 in a string (not a character; cannot be written as UTF-8)"),
        (DEEP, "too_deeply_nested", f"nested too deeply to read (the limit is about {sys.getrecursionlimit():,} levels)"),
        ('{"id":"n","meta":{"score":NaN}}', "non_finite_number",
         "NaN is not a JSON number (RFC 8259); no strict reader accepts it"),
        ('{"id":"i","meta":{"s":-Infinity}}', "non_finite_number",
         "-Infinity is not a JSON number (RFC 8259); no strict reader accepts it"),
        ('{"id":"dup","prompt":"first","prompt":"second"}', "duplicate_key",
         "duplicate key 'prompt' in one object (which value is meant is unknowable)"),
        ('{"id":"dup2","meta":{"a":1,"b":{"c":1,"c":2}}}', "duplicate_key",
         "duplicate key 'c' in one object (which value is meant is unknowable)"),
    ],
)
def test_jsonl_rows_json_accepts_but_must_not_carry_on(tmp_path: Path, line: str, reason: str, detail: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(f"{CANON}\n{line}\n{CANON}\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_records(str(path))
    assert str(info.value) == f"{path}:2: {detail}"
    assert info.value.exit_code == 2
    seen, on_bad = collect_bad()
    batches = list(read_batches(str(path), on_bad=on_bad))
    assert [n for b in batches for n in b.lines] == [1, 3]
    assert seen == [(f"{path}:2", reason, detail, line)]
    assert dumps({"raw": seen[0][3]}).encode("utf-8")  # the raw line itself can go to a rejects file


def test_surrogate_pairs_and_escaped_backslashes_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a":"\\ud83d\\ude00"}\n{"b":"\\\\ud800 is how you write it"}\n', encoding="utf-8")
    assert read_records(str(path)) == [{"a": "😀"}, {"b": "\\ud800 is how you write it"}]


def test_json_array_elements_are_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('[\n{"a": 1},\n{"a": NaN},\n{"b": 1, "b": 2},\n{"c": "\\udfff"},\n{"a": 2}\n]', encoding="utf-8")
    seen, on_bad = collect_bad()
    [batch] = read_batches(str(path), on_bad=on_bad)
    assert (batch.records, batch.lines, batch.indexes) == ([{"a": 1}, {"a": 2}], [2, 6], [0, 4])
    assert [(loc.rsplit(":", 1)[1], reason, raw) for loc, reason, _, raw in seen] == [
        ("3", "non_finite_number", '{"a": NaN}'), ("4", "duplicate_key", '{"b": 1, "b": 2}'),
        ("5", "invalid_unicode", '{"c": "\\udfff"}')]
    with pytest.raises(InputError, match=r"x\.json:3: NaN is not a JSON number"):
        read_records(str(path))


def test_deep_nesting_in_a_json_array_is_a_clean_error(tmp_path: Path) -> None:
    """Where a too-deep element ends cannot be found without recursing, so the file stops with its line."""
    path = tmp_path / "x.json"
    path.write_text(f"[\n{CANON},\n{DEEP}\n]", encoding="utf-8")
    seen, on_bad = collect_bad()
    with pytest.raises(InputError, match=r"x\.json:3: nested too deeply to read"):
        read_records(str(path), on_bad=on_bad)


def test_a_single_object_file_with_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": Infinity}', encoding="utf-8")
    seen, on_bad = collect_bad()
    assert read_records(str(path), on_bad=on_bad) == []
    assert [reason for _, reason, _, _ in seen] == ["non_finite_number"]


@pytest.mark.parametrize(
    ("name", "text", "reason", "detail", "raw", "kept_lines"),
    [
        ("x.csv", 'id,prompt,response\nc1,"a\nb",r\nc2,too,many,x\nc3,ok,r\n', "malformed_csv",
         "expected 3 columns, got 4", "c2,too,many,x", [2, 5]),
        ("x.tsv", "id\tprompt\tresponse\nt1\tok\tr\nt2\t\"has\ttab\"\tr\nt3\tx\ty\n", "malformed_tsv",
         "expected 3 columns, got 4", 't2\t"has\ttab"\tr', [2, 4]),
        ("x.csv", "id,prompt,response\nc1,ok,r\nc2\nc3,ok,r\n", "malformed_csv", "expected 3 columns, got 1", "c2", [2, 4]),
    ],
)
def test_ragged_delimited_rows_go_to_on_bad(tmp_path: Path, name: str, text: str, reason: str, detail: str, raw: str,
                                            kept_lines: list[int]) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    seen, on_bad = collect_bad()
    batches = list(read_batches(str(path), on_bad=on_bad))
    assert [n for b in batches for n in b.lines] == kept_lines
    [(location, got_reason, got_detail, got_raw)] = seen
    assert (got_reason, got_detail, got_raw) == (reason, detail, raw)
    with pytest.raises(InputError, match=rf"{name}:{location.rsplit(':', 1)[1]}: {detail}$"):
        read_records(str(path))


def test_a_long_csv_field_is_data_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,response\nc1," + "w" * 300_000 + "\n", encoding="utf-8")
    assert len(read_records(str(path))[0]["response"]) == 300_000


def write_parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_meta_that_is_not_json_stays_text(tmp_path: Path) -> None:
    """Only strict JSON object text becomes an object again; anything else is kept as it is, never a crash."""
    path = write_parquet(tmp_path / "x.parquet", {"id": ["a", "b", "c", "d"],
                                                   "meta": ['{"ok":1}', "{not json", '{"s": NaN}', "plain text"]})
    assert [r["meta"] for r in read_records(str(path))] == [{"ok": 1}, "{not json", '{"s": NaN}', "plain text"]


def test_parquet_rows_with_nan_or_infinity_are_rejected(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "x.parquet", {"id": ["a", "b", "c", "d"],
                                                   "score": [1.5, float("nan"), None, 2.0],
                                                   "marks": [[1.0], [2.0], [float("-inf")], []]})
    seen, on_bad = collect_bad()
    [batch] = read_batches(str(path), on_bad=on_bad)
    assert (batch.records, batch.indexes) == ([{"id": "a", "score": 1.5, "marks": [1.0]},
                                               {"id": "d", "score": 2.0, "marks": []}], [0, 3])
    assert [(loc, reason, detail) for loc, reason, detail, _ in seen] == [
        (f"{path}[1]", "non_finite_number", "score: nan is not a JSON number (RFC 8259)"),
        (f"{path}[2]", "non_finite_number", "marks: -inf is not a JSON number (RFC 8259)")]
    assert json.loads(seen[0][3]) == {"id": "b", "score": "nan", "marks": [2.0]}  # the raw row is valid JSON
    with pytest.raises(InputError, match=r"x\.parquet\[1\]: score: nan is not a JSON number"):
        read_records(str(path))


def saved_dataset(tmp_path: Path) -> Path:
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list([{"id": "a", "prompt": "p", "response": "r"}]).save_to_disk(str(folder))
    return folder


def test_a_saved_dataset_reads(tmp_path: Path) -> None:
    assert read_records(str(saved_dataset(tmp_path))) == [{"id": "a", "prompt": "p", "response": "r"}]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "state.json").write_text("{garbage"),
         "damaged saved dataset: state.json: Expecting property name enclosed in double quotes"),
        (lambda d: (d / "state.json").write_text('{"_data_files": 7}'),
         "damaged saved dataset: state.json lists no data files"),
        (lambda d: next(d.glob("*.arrow")).unlink(), "damaged saved dataset: data-00000-of-00001.arrow is missing"),
        (lambda d: next(d.glob("*.arrow")).write_bytes(os.urandom(5000)),
         "damaged saved dataset: data-00000-of-00001.arrow is not Arrow stream data"),
        (lambda d: (d / "dataset_dict.json").write_text('{"splits": "train"}'),
         "damaged saved dataset: dataset_dict.json has no list of splits"),
    ],
)
def test_a_damaged_saved_dataset_is_an_input_error_naming_the_folder(tmp_path: Path, damage, message: str) -> None:
    folder = saved_dataset(tmp_path)
    damage(folder)
    with pytest.raises(InputError) as info:
        read_records(str(folder))
    assert str(info.value).startswith(f"{folder}: {message}")
    assert info.value.exit_code == 2


def test_closed_stdin_is_a_clear_error(tmp_path: Path) -> None:
    for stage in ("normalize", "filter", "validate -s canonical", "split --val-size 0.1"):
        proc = subprocess.run(["bash", "-c", f'"$0" -m dataprep {stage} - <&-', sys.executable],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (stage, proc.stderr)
        assert proc.stderr.splitlines()[-1] == "Error: <stdin>: standard input is closed (give a file path instead of -)"
    # a file input does not need stdin at all
    proc = subprocess.run(["bash", "-c", '"$0" -m dataprep filter "$1" -q <&-', sys.executable,
                           str(DATA / "canonical.jsonl")], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.count("\n")) == (0, 20)


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"score": float("nan")})


# --- AtomicFile: modes, failures, named errors (issue 10, items 3 and 8) ------------------------------------------


def test_atomic_file_gets_the_umask_mode_or_keeps_the_old_one(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        for name, mode in (("a.jsonl", "w"), ("b.jsonl.gz", "wb")):
            with AtomicFile(tmp_path / name, mode) as f:
                f.handle.write("x" if mode == "w" else b"x")
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o640
        (tmp_path / "a.jsonl").chmod(0o604)
        with AtomicFile(tmp_path / "a.jsonl") as f:
            f.handle.write("y")
        assert (tmp_path / "a.jsonl").stat().st_mode & 0o777 == 0o604  # as the shell's `>` keeps it
    finally:
        os.umask(old)


def run_with_file_size_limit(limit: int, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A real EFBIG: the child may not grow a file past ``limit`` bytes (``ulimit -f``)."""
    import resource

    def limit_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, preexec_fn=limit_size,
                          timeout=120)


@pytest.mark.parametrize("size", [6_000, 200_000])  # fails in the final flush / while writing
def test_a_failed_write_removes_its_temp_and_names_the_target(tmp_path: Path, size: int) -> None:
    code = (
        "import sys\nfrom dataprep.io import AtomicFile\n"
        "try:\n"
        "    with AtomicFile(sys.argv[1]) as f:\n"
        "        f.handle.write('x' * int(sys.argv[2]))\n"
        "except OSError as exc:\n"
        "    print(exc.errno, exc.filename, exc.strerror)\n"
    )
    proc = run_with_file_size_limit(4096, code, str(tmp_path / "out.jsonl"), str(size))
    assert proc.stdout.strip() == f"27 {tmp_path / 'out.jsonl'} File too large", proc.stderr
    assert os.listdir(tmp_path) == []


def test_a_folder_as_target_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        AtomicFile(tmp_path)
    assert (info.value.filename, info.value.strerror) == (str(tmp_path), "is a folder; give the path of a file to write")


def test_a_missing_parent_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as info:
        AtomicFile(tmp_path / "file" / "out.jsonl")
    assert info.value.filename == str(tmp_path / "file" / "out.jsonl")


def test_a_failed_rename_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    f = AtomicFile(target)
    f.handle.write("data")
    target.mkdir()  # now the rename cannot replace it
    with pytest.raises(OSError) as info:
        f.commit()
    assert info.value.filename == str(target)
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_first_row_looks_at_the_head_of_a_file_only(tmp_path):
    from dataprep.io import first_row

    row = {"instruction": "q", "output": "é"}
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf\n" + json.dumps(row).encode() + b"\n{broken")
    (tmp_path / "a.json").write_text(" [\n " + json.dumps(row) + ", 3")
    (tmp_path / "one.json").write_text(json.dumps(row))
    (tmp_path / "long.jsonl").write_text(json.dumps({"x": "y" * 100}) + "\n")
    (tmp_path / "a.csv").write_text("instruction,output\nq,a\n")
    (tmp_path / "list.json").write_text("[[1, 2]]")
    assert first_row(str(tmp_path / "a.jsonl")) == first_row(str(tmp_path / "a.json")) == row
    assert first_row(str(tmp_path / "one.json")) == row
    assert first_row(str(tmp_path / "long.jsonl"), limit=50) is None  # the first row is cut: no guess
    assert first_row(str(tmp_path / "a.csv")) is None and first_row(str(tmp_path / "list.json")) is None
