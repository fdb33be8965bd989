"""The runner: it alone counts rows, attaches every reject's location, and commits output before rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep.io import Batch, read_batches
from dataprep.sinks import RecordSink
from dataprep.stage import Rejected, StageReport, run, survivors
from tests.conftest import FIXTURES, invoke

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"


class KeepEven:
    """A test stage: rejects odd ``n``, holds ``n == 0`` back and emits it at the end."""

    name = "even"

    def __init__(self) -> None:
        self.held: list[dict] = []

    def process(self, batch: Batch) -> tuple[list[dict], list[Rejected]]:
        rejected = [Rejected(r, "odd", f"n={r['n']}", index=i) for i, r in enumerate(batch.records) if r["n"] % 2]
        self.held += [r for r in batch.records if r["n"] == 0]
        return [r for r in batch.records if r["n"] and not r["n"] % 2], rejected

    def finish(self):
        yield self.held, []

    def facts(self):
        return {"last": "yes"}


def write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_run_counts_locates_and_commits(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [{"n": i} for i in range(5)])
    report = StageReport("even", str(tmp_path / "rejects.jsonl"))
    run(KeepEven(), read_batches(str(source), batch_size=2), RecordSink(str(tmp_path / "out.jsonl")), report)
    assert (report.rows_in, report.rows_out, report.rejected) == (5, 3, 2)
    assert report.summary() == "even: 5 in, 3 out, 2 rejected (odd: 2); last: yes"
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == [f"{source}:2", f"{source}:4"]
    assert (tmp_path / "out.jsonl").read_text() == '{"n":2}\n{"n":4}\n{"n":0}\n'


def test_a_failing_run_leaves_neither_output_nor_rejects(tmp_path):
    def batches():
        yield Batch("x", [{"n": 1}], [1], [0])
        raise RuntimeError("reader died")

    report = StageReport("even", str(tmp_path / "rejects.jsonl"))
    with pytest.raises(RuntimeError):
        run(KeepEven(), batches(), RecordSink(str(tmp_path / "out.jsonl")), report)
    assert list(tmp_path.iterdir()) == []


def test_survivors_keep_their_input_lines():
    batch = Batch("f.jsonl", [{"a": 1}, {"a": 2}, {"a": 3}], [4, 7, 9], [0, 1, 2])
    kept = survivors(batch, [{"b": 1}, {"b": 3}], [Rejected({"a": 2}, "r", "d", index=1)])
    assert kept.records == [{"b": 1}, {"b": 3}]
    assert [kept.location(i) for i in range(2)] == ["f.jsonl:4", "f.jsonl:9"]


CANONICAL = [
    {"id": "a", "prefix": "", "prompt": "Say hi please.", "query": "", "response": "Hi there, friend.", "history": []},
    {"id": "b", "prefix": "", "prompt": "Say hi.", "query": "", "response": "", "history": [],
     "meta": {"source": "x"}},
]


@pytest.mark.parametrize("stage, args", [
    ("normalize", ["--from", "alpaca"]),
    ("filter", []),
    ("split", ["--val-size", "1", "--stratify-by", "meta.source"]),
    ("render", ["--template", "chatml"]),
    ("tokenize", ["--tokenizer", str(TINY_BPE), "-o", "{tmp}/ds"]),
])
def test_every_stage_names_the_line_of_each_reject(tmp_path, stage, args):
    rows = [{"instruction": "x"}, CANONICAL[0], {"instruction": 5, "output": "y"}] if stage == "normalize" else \
        [CANONICAL[0], CANONICAL[1], {"text": "not canonical"}] if stage == "render" else \
        [CANONICAL[0], {**CANONICAL[0], "id": "c", "split": "no good"}] if stage == "tokenize" else \
        [CANONICAL[0], CANONICAL[1], {**CANONICAL[0], "id": "z", "meta": {"source": "y"}}]
    source = write_lines(tmp_path / "in.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in args]
    output = [] if stage == "tokenize" else ["-o", str(tmp_path / "out.jsonl")]
    result = invoke(stage, source, *extra, *output, "--rejects", rejects)
    assert result.exit_code == 0, result.stderr
    found = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert found, result.stderr
    assert all(r["stage"] == stage and r["location"].startswith(f"{source}:") for r in found)


def test_tokenize_on_error_reject_keeps_going(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(CANONICAL[0]) + "\n{broken\n")
    rejects = tmp_path / "rejects.jsonl"
    failed = invoke("tokenize", source, "--tokenizer", TINY_BPE, "-o", tmp_path / "ds")
    assert failed.exit_code == 2 and f"{source}:2: malformed JSON" in failed.stderr
    assert not (tmp_path / "ds").exists()
    kept = invoke("tokenize", source, "--tokenizer", TINY_BPE, "-o", tmp_path / "ds", "--on-error", "reject",
                  "--rejects", rejects)
    assert kept.exit_code == 0 and "2 in, 1 out, 1 rejected (malformed_json: 1)" in kept.stderr
    assert json.loads(rejects.read_text())["location"] == f"{source}:2"


# Replays of the reliability report (2026-11-30, sections c12, c13, c15, c19d, c21): rows that are not canonical
# reached filter, split and tokenize, which crashed ("internal error") or invented turns. Each is now a reject.
GOOD = {"id": "g", "prefix": "", "prompt": "Say hi please.", "query": "", "response": "Hi there, friend.",
        "history": []}
BAD_ROWS = [
    ({**GOOD, "id": "n1", "response": 42}, "wrong_type"),
    ({**GOOD, "id": "n2", "prompt": 3.5}, "wrong_type"),
    ({**GOOD, "id": "u1", "response": None}, "null_field"),
    ({**GOOD, "id": "u5", "history": [[None, "a"]]}, "bad_history"),
    ({**GOOD, "id": "m1", "history": [["a", "b"], 5, "x"]}, "bad_history"),
    ({**GOOD, "id": "m2", "history": "ab"}, "bad_history"),
    ({**GOOD, "id": "c19d", "history": "[]"}, "bad_history"),
    ({**GOOD, "id": "m3", "history": [["u", "a"]], "roles": [1, "user", None, {}]}, "bad_roles"),
    ({**GOOD, "id": "m4", "prompt": ["p", 1], "response": {"a": 1}}, "wrong_type"),
    ({**GOOD, "id": "q1", "prompt": {"a": 1}}, "wrong_type"),
]


@pytest.mark.parametrize("stage, args", [
    ("filter", []),
    ("split", ["--val-size", "1"]),
    ("render", ["--template", "chatml"]),
    ("tokenize", ["--tokenizer", str(TINY_BPE), "-o", "{tmp}/ds"]),
])
def test_non_canonical_rows_are_rejected_with_reasons_never_crash_or_invent(tmp_path, stage, args):
    rows = [GOOD] + [row for row, _ in BAD_ROWS] + [{**GOOD, "id": "g2"}]
    source = write_lines(tmp_path / "in.jsonl", rows)
    rejects = tmp_path / "rejects.jsonl"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in args]
    output = [] if stage == "tokenize" else ["-o", str(tmp_path / "out.jsonl")]
    result = invoke(stage, source, *extra, *output, "--rejects", rejects)
    assert result.exit_code == 0, result.stderr
    found = {r["id"]: r["reason"] for r in map(json.loads, rejects.read_text().splitlines())}
    assert found == {row["id"]: reason for row, reason in BAD_ROWS}
    assert f"{len(rows)} in, 2 out, {len(BAD_ROWS)} rejected" in result.stderr


@pytest.mark.parametrize("stage, args", [("filter", []), ("split", ["--val-size", "0.1"]),
                                         ("render", ["--template", "chatml"])])
def test_raw_alpaca_stops_at_once_instead_of_rejecting_every_row(stage, args):
    result = invoke(stage, FIXTURES / "data" / "alpaca.json", *args)
    assert result.exit_code == 2
    assert "not canonical records: run `dataprep normalize` first" in result.stderr


def test_runners_chain_stages_in_one_process(tmp_path):
    """Each Runner is the sink of the stage before: every stage counts its own rows and keeps its own rejects."""
    from dataprep.stage import Runner

    source = write_lines(tmp_path / "in.jsonl", [{"n": i} for i in range(8)])
    first, second = StageReport("even", str(tmp_path / "r1.jsonl")), StageReport("even", str(tmp_path / "r2.jsonl"))
    out = RecordSink(str(tmp_path / "out.jsonl"))
    run(Halve(), read_batches(str(source), batch_size=3), Runner(KeepEven(), out, second), first)
    assert (first.rows_in, first.rows_out, second.rows_in, second.rows_out) == (8, 8, 8, 4)
    assert (tmp_path / "out.jsonl").read_text() == '{"n":2}\n{"n":2}\n{"n":0}\n{"n":0}\n'
    rejects = [json.loads(line) for line in (tmp_path / "r2.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == [f"{source}:{n}" for n in (3, 4, 7, 8)]


def test_a_failure_downstream_leaves_no_output_and_no_rejects(tmp_path):
    from dataprep.stage import Runner

    class Explode(KeepEven):
        def finish(self):
            raise RuntimeError("boom")

    source = write_lines(tmp_path / "in.jsonl", [{"n": i} for i in range(4)])
    reports = [StageReport("even", str(tmp_path / f"r{i}.jsonl")) for i in range(2)]
    with pytest.raises(RuntimeError):
        run(Halve(), read_batches(str(source)), Runner(Explode(), RecordSink(str(tmp_path / "o.jsonl")),
                                                       reports[1]), reports[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


class Halve:
    """A one-to-one stage: n becomes n // 2, rows keep their input lines."""

    name = "halve"

    def process(self, batch):
        return batch.take(list(range(len(batch))), [{"n": r["n"] // 2} for r in batch.records]), []

    def finish(self):
        return ()

    def facts(self):
        return {}
