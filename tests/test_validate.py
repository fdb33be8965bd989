"""``dataprep validate`` and ``dataprep.validate``: exit codes, exact reports, every fixture, real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.sinks import RecordSink
from dataprep.validate import Problem, json_pointer, validate_files
from tests.conftest import FIXTURES, REPO, invoke

DATA = FIXTURES / "data"
BROKEN = DATA / "broken"
SHAREGPT_FROM = "['human', 'gpt', 'system', 'function_call', 'observation']"


def summary(files: int, records: int, invalid: int, errors: int, extra: str = "") -> str:
    def n(count: int, word: str) -> str:
        return f"{count:,} {word}{'' if count == 1 else 's'}"

    return (f"validate: {n(files, 'file')}, {n(records, 'record')}, {invalid:,} invalid "
            f"{'record' if invalid == 1 else 'records'}, {n(errors, 'error')}{extra}\n")


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("schema", "name", "records"),
    [
        ("alpaca", "alpaca.json", 40),
        ("alpaca", "alpaca.jsonl", 40),
        ("alpaca", "alpaca.jsonl.gz", 40),
        ("alpaca", "alpaca.csv", 35),
        ("alpaca", "alpaca.tsv", 27),
        ("alpaca", "alpaca.parquet", 40),
        ("alpaca", "alpaca_saved", 40),
        ("sharegpt", "sharegpt.json", 20),
        ("messages", "messages.jsonl", 20),
        ("canonical", "canonical.jsonl", 20),
    ],
)
def test_every_shipped_schema_accepts_its_good_fixture(schema: str, name: str, records: int) -> None:
    result = invoke("validate", DATA / name, "--schema", schema)
    assert result.exit_code == 0, result.stdout
    assert result.stdout == ""
    assert result.stderr == summary(1, records, 0, 0)


def test_a_fixture_of_another_format_is_invalid() -> None:
    result = invoke("validate", DATA / "sharegpt.json", "-s", "alpaca", "--max-errors", "1")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{DATA / 'sharegpt.json'}:2 [record 0]: /: 'instruction' is a required property",
        "... 39 more errors not shown (--max-errors 1)",
    ]
    assert result.stderr == summary(1, 20, 20, 40, " (first 1 shown)")


def test_wrong_types_exact_report() -> None:
    path = BROKEN / "wrong_types.json"
    result = invoke("validate", path, "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2 [record 0]: /output: 5 is not of type 'string'",
        f"{path}:7 [record 1]: /history: 'none' is not of type 'array'",
        f"{path}:13 [record 2]: /history/0/1: 42 is not of type 'string'",
        f"{path}:24 [record 3]: /input: None is not of type 'string'",
        f"{path}:24 [record 3]: /instruction: ['Pick', 'one'] is not of type 'string'",
    ]
    assert result.stderr == summary(1, 4, 4, 5)


def test_missing_fields_point_at_the_record_root() -> None:
    path = BROKEN / "missing_fields.json"
    result = invoke("validate", path, "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:7 [record 1]: /: 'output' is a required property",
        f"{path}:11 [record 2]: /: 'instruction' is a required property",
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.jsonl", ":4: malformed JSON at column 66: Expecting ',' delimiter"),
        ("invalid_utf8.jsonl", ":3: invalid UTF-8 at byte 20"),
        ("truncated.json", ":17: malformed JSON at column 15: Unterminated string starting at"),
    ],
)
def test_unreadable_fixture_is_exit_2_with_file_and_line(name: str, message: str) -> None:
    path = BROKEN / name
    result = invoke("validate", path, "--schema", "alpaca")
    assert result.exit_code == 2
    assert result.stdout == f"{path}{message}\n"
    assert result.stderr == summary(1, 0, 0, 0, ", 1 unreadable file") + f"Error: {path}{message}\n"


def test_empty_file_fails_with_no_records() -> None:
    path = BROKEN / "empty.jsonl"
    result = invoke("validate", path, "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout == f"{path}: no records\n"
    assert result.stderr == summary(1, 0, 0, 1)


@pytest.mark.parametrize("name", ["ends_on_user.json", "not_alternating.json"])
def test_turn_order_is_not_a_schema_matter(name: str) -> None:
    """Both files are well-formed ShareGPT; normalize is the stage that rejects them, with a reason."""
    result = invoke("validate", BROKEN / name, "--schema", "sharegpt")
    assert result.exit_code == 0
    assert result.stderr == summary(1, 2, 0, 0)


def test_jsonl_errors_name_the_line_and_sort_by_pointer(tmp_path: Path) -> None:
    turns = [{"from": "human", "value": "q"}] + [{"from": "gpt", "value": "a"}] * 10
    turns[2] = {"from": "bot", "value": "a"}
    turns[10] = {"from": "gpt", "value": 3}
    path = write_jsonl(tmp_path / "chat.jsonl", [{"conversations": turns[:2]}, {"conversations": turns, "tools": 1}])
    result = invoke("validate", path, "--schema", "sharegpt")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2: /conversations/2/from: 'bot' is not one of {SHAREGPT_FROM}",
        f"{path}:2: /conversations/10/value: 3 is not of type 'string'",
        f"{path}:2: /tools: 1 is not of type 'string'",
    ]
    assert result.stderr == summary(1, 2, 1, 3)


def test_pointer_escaping() -> None:
    assert json_pointer([]) == "/"
    assert json_pointer(["a/b", "m~n", 0]) == "/a~1b/m~0n/0"


def test_files_without_lines_name_the_record_index(tmp_path: Path) -> None:
    with RecordSink(str(tmp_path / "rows.parquet")) as writer:
        writer.write([{"instruction": "i", "output": "o"}, {"instruction": "i"}])
    result = invoke("validate", tmp_path / "rows.parquet", "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout == f"{tmp_path / 'rows.parquet'} [record 1]: /: 'output' is a required property\n"


def test_json_report() -> None:
    path = BROKEN / "missing_fields.json"
    result = invoke("validate", path, DATA / "alpaca.jsonl", "--schema", "alpaca", "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "schema": "alpaca",
        "files": [
            {"file": str(path), "records": 3, "invalid_records": 2, "errors": 2, "readable": True},
            {"file": str(DATA / "alpaca.jsonl"), "records": 40, "invalid_records": 0, "errors": 0, "readable": True},
        ],
        "records": 43,
        "invalid_records": 2,
        "error_count": 2,
        "truncated": False,
        "errors": [
            {"file": str(path), "line": 7, "index": 1, "pointer": "/", "message": "'output' is a required property"},
            {"file": str(path), "line": 11, "index": 2, "pointer": "/",
             "message": "'instruction' is a required property"},
        ],
    }
    assert result.stderr == summary(2, 43, 2, 2)


def test_json_report_of_valid_and_unreadable_files() -> None:
    result = invoke("validate", DATA / "alpaca.json", "-s", "alpaca", "--format", "json", "--quiet")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["valid"] is True
    assert result.stderr == ""
    result = invoke("validate", BROKEN / "malformed.jsonl", "-s", "alpaca", "--format", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 2
    assert report["valid"] is False
    assert report["files"][0]["readable"] is False
    assert report["errors"] == [{"file": str(BROKEN / "malformed.jsonl"), "line": 4, "index": None, "pointer": None,
                                 "message": "malformed JSON at column 66: Expecting ',' delimiter"}]


def test_max_errors_truncates_the_report_but_not_the_counts() -> None:
    path = BROKEN / "wrong_types.json"
    result = invoke("validate", path, "-s", "alpaca", "--max-errors", "2")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:2 [record 0]: /output: 5 is not of type 'string'",
        f"{path}:7 [record 1]: /history: 'none' is not of type 'array'",
        "... 3 more errors not shown (--max-errors 2)",
    ]
    assert result.stderr == summary(1, 4, 4, 5, " (first 2 shown)")
    report = json.loads(invoke("validate", path, "-s", "alpaca", "--max-errors", "2", "--format", "json").stdout)
    assert (report["error_count"], report["truncated"], len(report["errors"])) == (5, True, 2)
    assert invoke("validate", path, "-s", "alpaca", "--max-errors", "5").stdout.count("\n") == 5


def test_max_errors_must_be_positive() -> None:
    result = invoke("validate", DATA / "alpaca.json", "-s", "alpaca", "--max-errors", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--max-errors'" in result.stderr


def test_multiple_files_and_one_unreadable_among_them() -> None:
    files = [DATA / "alpaca.json", BROKEN / "truncated.json", BROKEN / "wrong_types.json", DATA / "alpaca.csv"]
    result = invoke("validate", *files, "--schema", "alpaca")
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == f"{BROKEN / 'truncated.json'}:17: malformed JSON at column 15: Unterminated string starting at"
    assert len(lines) == 6 and all(line.startswith(str(BROKEN / "wrong_types.json")) for line in lines[1:])
    assert result.stderr.splitlines() == [
        summary(4, 79, 4, 5, ", 1 unreadable file").strip(),
        f"Error: {BROKEN / 'truncated.json'}:17: malformed JSON at column 15: Unterminated string starting at",
    ]


def test_two_unreadable_files_say_how_many(tmp_path: Path) -> None:
    result = invoke("validate", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "-s", "alpaca", "-q")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path / 'a.jsonl'}: no such file (and 1 more unreadable file)\n"


def test_stdin_json_array_and_jsonl() -> None:
    records = [{"instruction": "i", "output": "o"}, {"instruction": "i"}]
    result = invoke("validate", "-", "-s", "alpaca", input=json.dumps(records, indent=1))
    assert result.exit_code == 1
    assert result.stdout == "<stdin>:6 [record 1]: /: 'output' is a required property\n"
    result = invoke("validate", "-", "-s", "alpaca", input="".join(json.dumps(r) + "\n" for r in records))
    assert result.exit_code == 1
    assert result.stdout == "<stdin>:2 [record 1]: /: 'output' is a required property\n"
    result = invoke("validate", "-", "-s", "alpaca", "--input-format", "jsonl", input=json.dumps(records[0]))
    assert (result.exit_code, result.stdout) == (0, "")


def test_schema_by_path_and_its_own_draft(tmp_path: Path) -> None:
    schema = tmp_path / "pairs.schema.json"
    schema.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                                  "required": ["Quality"], "properties": {"Quality": {"enum": ["0", "1"]}},
                                  "additionalProperties": {"type": "string"}}), encoding="utf-8")
    result = invoke("validate", DATA / "pairs.tsv", "--schema", schema)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", summary(1, 240, 0, 0))
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"Quality": "2", "a/b": 1}])
    result = invoke("validate", rows, "--schema", schema)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{rows}:1: /Quality: '2' is not one of ['0', '1']",
        f"{rows}:1: /a~1b: 1 is not of type 'string'",
    ]


@pytest.mark.parametrize(
    ("schema_text", "message"),
    [
        ('{"type": "strnig"}', "not a valid JSON Schema: /type: 'strnig' is not valid under any of the given schemas"),
        ('{"type": ', ":1: schema is not valid JSON at column 10: Expecting value"),
    ],
)
def test_broken_schema_file_is_exit_2(tmp_path: Path, schema_text: str, message: str) -> None:
    schema = tmp_path / "bad.schema.json"
    schema.write_text(schema_text, encoding="utf-8")
    result = invoke("validate", DATA / "alpaca.json", "--schema", schema)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {schema}{message if message.startswith(':') else ': ' + message}\n"


def test_unknown_or_missing_schema_is_exit_2(tmp_path: Path) -> None:
    result = invoke("validate", DATA / "alpaca.json", "--schema", "alpac")
    assert result.exit_code == 2
    assert result.stderr == ("Error: unknown schema 'alpac'; use one of alpaca, sharegpt, messages, canonical "
                             "or a path to a .json file\n")
    result = invoke("validate", DATA / "alpaca.json", "--schema", tmp_path / "gone.json")
    assert (result.exit_code, result.stderr) == (2, f"Error: {tmp_path / 'gone.json'}: no such schema file\n")


def test_exit_status_through_the_real_entry_point() -> None:
    """CliRunner skips ``main``; click hands ``ctx.exit(1)`` back to it as a return value, not an exception."""
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dataprep", "validate", *args], input=stdin, text=True,
                              capture_output=True, cwd=REPO)

    proc = run(str(BROKEN / "empty.jsonl"), "-s", "alpaca", "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, f"{BROKEN / 'empty.jsonl'}: no records\n", "")
    proc = run("-", "-s", "alpaca", stdin='{"instruction": "i", "output": "o"}\n')
    assert (proc.returncode, proc.stdout) == (0, "")
    assert run(str(BROKEN / "truncated.json"), "-s", "alpaca").returncode == 2


def test_usage_errors() -> None:
    assert invoke("validate", "--schema", "alpaca").exit_code == 2
    result = invoke("validate", DATA / "alpaca.json")
    assert result.exit_code == 2
    assert "Missing option '-s' / '--schema'" in result.stderr


def test_missing_data_file_is_exit_2(tmp_path: Path) -> None:
    result = invoke("validate", tmp_path / "nope.json", "--schema", "alpaca")
    assert result.exit_code == 2
    assert result.stdout == f"{tmp_path / 'nope.json'}: no such file\n"
    assert result.stderr.endswith(f"Error: {tmp_path / 'nope.json'}: no such file\n")


def test_quiet_keeps_the_report() -> None:
    result = invoke("validate", BROKEN / "missing_fields.json", "-s", "alpaca", "--quiet")
    assert result.exit_code == 1
    assert result.stdout.count("\n") == 2
    assert result.stderr == ""


def test_report_is_deterministic() -> None:
    args = ("validate", BROKEN / "wrong_types.json", BROKEN / "missing_fields.json", "-s", "alpaca", "--format", "json")
    assert invoke(*args).stdout == invoke(*args).stdout


def test_library_report_without_the_cli() -> None:
    report = validate_files([str(BROKEN / "wrong_types.json")], "alpaca", max_errors=1)
    assert (report.valid, report.records, report.invalid_records, report.error_count) == (False, 4, 4, 5)
    assert report.problems == [Problem(str(BROKEN / "wrong_types.json"), 2, 0, "/output", "5 is not of type 'string'")]
    assert report.problems[0].text(show_index=False) == f"{BROKEN / 'wrong_types.json'}:2: /output: 5 is not of type 'string'"


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "long.jsonl", [{"instruction": "i", "output": ["x" * 1000]}])
    [problem] = validate_files([str(path)], "alpaca").problems
    assert len(problem.message) == 300
    assert problem.message.endswith("…")


@pytest.mark.parametrize(
    ("schema", "names", "records"),
    [
        ("alpaca", ["llamafactory/alpaca_en_demo.json", "llamafactory/alpaca_zh_demo.json"], 1999),
        ("alpaca", ["llamafactory/lima.json", "llamafactory/identity.json", "alpaca/code_alpaca_2k.json"], 3137),
        ("sharegpt", ["llamafactory/glaive_toolcall_en_demo.json", "llamafactory/glaive_toolcall_zh_demo.json"], 600),
        ("messages", ["llamafactory/kto_en_demo.json", "llamafactory/mllm_demo.json"], 306),
    ],
)
@pytest.mark.slow
def test_real_llamafactory_data_validates(shared_data: Path, schema: str, names: list[str], records: int) -> None:
    result = invoke("validate", *(shared_data / n for n in names), "--schema", schema)
    assert result.exit_code == 0, result.stdout[:2000]
    assert result.stderr == summary(len(names), records, 0, 0)


@pytest.mark.slow
def test_real_sharegpt_is_not_alpaca(shared_data: Path) -> None:
    result = invoke("validate", shared_data / "llamafactory/glaive_toolcall_en_demo.json", "-s", "alpaca",
                    "--format", "json", "--max-errors", "3")
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert (report["invalid_records"], report["error_count"], len(report["errors"])) == (300, 600, 3)


# --- bounded evaluation, strict reading, honest exit codes (issue 10, items 2, 6, 7, 8) --------------------------


def test_a_backtracking_pattern_is_stopped_per_record(tmp_path: Path) -> None:
    """The report's ReDoS payloads: one hostile value costs at most --record-timeout; the other records are
    still checked, and the run fails because a record could not be checked."""
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "aa"}, {"prompt": "a" * 40 + "!"}, {"prompt": "b"}])
    for pattern in ("^(a+)+$", "^(a|aa)+$"):
        schema = tmp_path / "redos.schema.json"
        schema.write_text(json.dumps({"properties": {"prompt": {"pattern": pattern}}}), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "dataprep", "validate", str(rows), "--schema", str(schema),
                               "--record-timeout", "0.5"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1
        assert proc.stdout.splitlines() == [
            f"{rows}:2: /: not checked: the schema took longer than 0.5 s on this record (a backtracking pattern "
            "or nested anyOf/oneOf?); see --record-timeout",
            f"{rows}:3: /prompt: 'b' does not match {pattern!r}",
        ]
        assert proc.stderr == summary(1, 3, 2, 2)


def test_the_timer_leaves_no_alarm_behind(tmp_path: Path) -> None:
    import signal

    before = signal.getsignal(signal.SIGALRM)
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": "i", "output": "o"}])
    assert validate_files([str(rows)], "alpaca", record_timeout=0.5).valid
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_data_too_deep_for_a_recursive_schema_is_a_record_problem(tmp_path: Path) -> None:
    schema = tmp_path / "tree.schema.json"
    schema.write_text(json.dumps({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
                                  "properties": {"x": {"$ref": "#/$defs/n"}}}), encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": [[["ok"]]]}\n{"x": ' + "[" * 600 + "]" * 600 + '}\n{"x": 1}\n', encoding="utf-8")
    result = invoke("validate", rows, "--schema", schema)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{rows}:1: /x/0/0/0: 'ok' is not of type 'array'",
        f"{rows}:2: /: nested too deeply to check against this schema",
        f"{rows}:3: /x: 1 is not of type 'array'",
    ]


def test_duplicate_keys_nan_and_lone_surrogates_make_records_invalid(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"instruction": "i", "output": "o"}\n'
        '{"instruction": "i", "instruction": "j", "output": "o"}\n'
        '{"instruction": "i", "output": "o", "score": NaN}\n'
        '{"instruction": "\\ud800", "output": "o"}\n'
        '{"instruction": "i"}\n', encoding="utf-8")
    result = invoke("validate", rows, "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{rows}:2: /: duplicate key 'instruction' in one object (which value is meant is unknowable)",
        f"{rows}:3: /: NaN is not a JSON number (RFC 8259); no strict reader accepts it",
        f"{rows}:4: /: lone surrogate \\ud800 in a string (not a character; cannot be written as UTF-8)",
        f"{rows}:5: /: 'output' is a required property",
    ]
    assert result.stderr == summary(1, 5, 4, 4)
    report = json.loads(invoke("validate", rows, "--schema", "alpaca", "--format", "json").stdout)
    assert [(e["line"], e["pointer"]) for e in report["errors"]] == [(2, "/"), (3, "/"), (4, "/"), (5, "/")]


def test_nan_in_a_parquet_row_is_an_invalid_record_with_its_index(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["o", "o"], "score": [1.0, float("inf")]}), path)
    result = invoke("validate", path, "--schema", "alpaca")
    assert result.exit_code == 1
    assert result.stdout == f"{path} [record 1]: /: score: inf is not a JSON number (RFC 8259)\n"


def test_validate_piped_into_head_keeps_exit_1(tmp_path: Path) -> None:
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": str(i)} for i in range(20_000)])
    for fmt in ("text", "json"):
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", '"$0" -m dataprep validate "$1" -s alpaca --format "$2" | head -n 1',
             sys.executable, str(rows), fmt], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout.count("\n") == 1
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    valid = write_jsonl(tmp_path / "ok.jsonl", [{"instruction": "i", "output": "o"}])
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", '"$0" -m dataprep validate "$1" -s alpaca | head -n 1',
                           sys.executable, str(valid)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0


def test_json_report_on_a_full_disk_is_an_error(tmp_path: Path) -> None:
    import resource

    rows = write_jsonl(tmp_path / "rows.jsonl", [{"instruction": str(i)} for i in range(3_000)])
    with open(tmp_path / "report.json", "w") as out:
        proc = subprocess.run([sys.executable, "-m", "dataprep", "validate", str(rows), "-s", "alpaca", "--format",
                               "json", "-q"], stdout=out, stderr=subprocess.PIPE, text=True, timeout=300,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)))
    assert (proc.returncode, proc.stderr) == (2, "Error: <stdout>: File too large\n")
