"""One bad row never kills a run under --on-error reject (issue 10, item 6): the report's replay inputs, through
the real commands. Every output and rejects file must be strict JSON (no NaN, no lone surrogates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, invoke

GOOD = (FIXTURES / "data" / "canonical.jsonl").read_text(encoding="utf-8").splitlines()[:10]
DEEP = '{"id":"d","prefix":"","prompt":"p","query":"","response":"r","history":[],"meta":{"x":' + "[" * 100_000 \
    + "]" * 100_000 + "}}"
STAGES = [("normalize", ["--from", "canonical"]), ("filter", []), ("split", ["--val-size", "0.1"])]


def strict_lines(path: Path) -> list[dict]:
    """Parse as a strict reader (jq, serde) would: NaN/Infinity refused, the text must be valid UTF-8."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in output")

    return [json.loads(line, parse_constant=refuse) for line in path.read_bytes().decode("utf-8").splitlines()]


def replay_inputs(folder: Path) -> dict[str, tuple[Path, int, str]]:
    """name -> (file, rows in, the reason of its one bad row), as in the report's Replay section."""
    def jsonl(name: str, bad: str, at: int = 1) -> Path:
        lines = GOOD[:at] + [bad] + GOOD[at:3]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder / name

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b"], "prefix": ["", ""], "prompt": ["p", "q"], "query": ["", ""],
                             "response": ["r", "r"], "history": [[], []], "score": [float("nan"), 1.0]}),
                   folder / "nan.parquet")
    (folder / "c19b.csv").write_text(
        'id,prefix,prompt,query,response\nc1,,"a\nb",,r\nc2,,"c\nd",,r\nc3,,ok,,r\nc4,,too,many,columns,x\n')
    (folder / "c20.tsv").write_text("id\tprefix\tprompt\tquery\tresponse\nt1\t\tok\t\tr\nt2\t\t\"has\ttab\"\t\tr\n")
    return {
        "c09": (jsonl("c09.jsonl", DEEP), 4, "too_deeply_nested"),
        "c10": (jsonl("c10.jsonl", GOOD[5].replace('"history"', '"meta":{"score":NaN},"history"', 1)), 4,
                "non_finite_number"),
        "c11": (jsonl("c11.jsonl", '{"id":"dup","prefix":"","prompt":"first","prompt":"second","query":"",'
                                   '"response":"a","response":"b","history":[]}'), 4, "duplicate_key"),
        "w05": (jsonl("w05.jsonl", '{"id":"s1","prefix":"","prompt":"p","query":"","response":"\\ud800",'
                                   '"history":[]}'), 4, "invalid_unicode"),
        "nan.parquet": (folder / "nan.parquet", 2, "non_finite_number"),
        "c19b": (folder / "c19b.csv", 4, "malformed_csv"),
        "c20": (folder / "c20.tsv", 2, "malformed_tsv"),
    }


@pytest.mark.parametrize(("stage", "options"), STAGES)
def test_reject_mode_keeps_the_run_going(tmp_path: Path, stage: str, options: list[str]) -> None:
    for name, (path, rows, reason) in replay_inputs(tmp_path).items():
        out, rejects = tmp_path / f"{name}.out.jsonl", tmp_path / f"{name}.rej.jsonl"
        result = invoke(stage, path, *options, "-o", out, "--on-error", "reject", "--rejects", rejects)
        if path.suffix in (".csv", ".tsv") and stage != "normalize":  # no history column: not canonical records
            assert result.exit_code == 2 and "run `dataprep normalize` first" in result.stderr, (name, result.stderr)
            continue
        assert result.exit_code == 0, (name, result.stderr)
        summary = result.stderr.strip().splitlines()[-1]
        assert summary.startswith(f"{stage}: {rows} in, {rows - 1} out, 1 rejected ({reason}: 1)"), (name, summary)
        assert len(strict_lines(out)) == rows - 1
        [reject] = strict_lines(rejects)
        assert (reject["stage"], reject["reason"]) == (stage, reason)
        assert reject["location"].startswith(str(path))


@pytest.mark.parametrize(("stage", "options"), STAGES)
def test_fail_mode_stops_with_file_and_line(tmp_path: Path, stage: str, options: list[str]) -> None:
    for name, (path, _, _) in replay_inputs(tmp_path).items():
        result = invoke(stage, path, *options, "-o", tmp_path / "out.jsonl")
        assert result.exit_code == 2, (name, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"Error: {path}"), line
        assert not (tmp_path / "out.jsonl").exists()


def test_nan_never_comes_out_as_non_json(tmp_path: Path) -> None:
    """The report's one-liner: `... "score":NaN}` in, no `NaN` out; the row is refused instead."""
    result = invoke("normalize", "-", "-q", input='{"instruction":"p","input":"","output":"o","score":NaN}\n'
                                                  '{"instruction":"p2","input":"","output":"o"}\n')
    assert result.exit_code == 2
    assert "NaN is not a JSON number" in result.stderr
    result = invoke("normalize", "-", "-q", "--on-error", "reject", "--rejects", tmp_path / "r.jsonl",
                    input='{"instruction":"p","input":"","output":"o","score":NaN}\n'
                          '{"instruction":"p2","input":"","output":"o"}\n')
    assert result.exit_code == 0
    assert "NaN" not in result.stdout and len(result.stdout.splitlines()) == 1
    assert strict_lines(tmp_path / "r.jsonl")[0]["raw"].endswith('"score":NaN}')  # kept as text, valid JSON
