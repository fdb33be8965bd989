"""Reading and normalizing in a worker process: the same bytes, counts, rejects and errors as in one process."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import re
from pathlib import Path

import pytest

from dataprep import offload
from dataprep.errors import DataprepError, InputError, UsageProblem
from dataprep.normalize import NormalizeOptions, NormalizeStage
from tests.conftest import FIXTURES, invoke
from tests.test_runner import ALPACA, SHAREGPT, write_recipe

pytestmark = pytest.mark.skipif(not offload.can_fork(), reason="the worker is forked")

BROKEN = FIXTURES / "data" / "broken"


def _run(tmp_path: Path, name: str, recipe: dict, workers: int, *args: str) -> tuple[int, str, dict[str, bytes]]:
    out = tmp_path / name
    path = write_recipe(tmp_path / f"{name}.yaml", {**recipe, "output": str(out / "out.jsonl"),
                                                    "rejects": str(out / "rejects")})
    result = invoke("run", path, "--workers", str(workers), *args)
    written = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
               and ".dataprep-cache" not in p.parts}
    summary = re.sub(r" in [0-9.]+s$", "", result.stderr, flags=re.M)  # the run line's seconds
    return result.exit_code, summary, written


@pytest.mark.parametrize("cache", [True, False])
def test_a_worker_gives_the_output_rejects_and_summary_of_one_process(tmp_path: Path, cache: bool) -> None:
    recipe = {"inputs": [{"path": str(BROKEN / "not_alternating.json")}, {"path": str(SHAREGPT)},
                         {"path": str(ALPACA)}],
              "normalize": None, "filter": {"min_response_chars": 30},
              "split": {"val_size": 0.1, "stratify_by": ["meta.category"]}}
    more = () if cache else ("--no-cache",)
    alone = _run(tmp_path, "alone", recipe, 0, *more)
    worker = _run(tmp_path, "worker", recipe, 1, *more)
    assert alone[0] == 0, alone[1]
    assert worker[1].replace(str(tmp_path / "worker"), "OUT") == alone[1].replace(str(tmp_path / "alone"), "OUT")
    assert worker[2] == alone[2]
    assert sorted(alone[2]) == ["out.jsonl", "rejects/filter.jsonl", "rejects/normalize.jsonl",
                                "rejects/split.jsonl"]
    normalize_rejects = [json.loads(line) for line in worker[2]["rejects/normalize.jsonl"].splitlines()]
    assert [r["location"] for r in normalize_rejects] == [f"{BROKEN / 'not_alternating.json'}:14"]


def test_the_detected_format_is_announced_from_the_worker(tmp_path: Path) -> None:
    recipe = {"inputs": [{"path": str(SHAREGPT)}], "normalize": None}
    alone, worker = (_run(tmp_path, name, recipe, w) for name, w in (("alone", 0), ("worker", 1)))
    assert "format: sharegpt" in worker[1] and worker[2] == alone[2]


def test_unreadable_rows_are_rejected_in_order_or_stop_the_run_with_the_same_message(tmp_path: Path) -> None:
    recipe = {"inputs": [{"path": str(BROKEN / "malformed.jsonl"), "format": "alpaca"}], "normalize": None}
    for workers in (0, 1):
        code, err, _ = _run(tmp_path, f"stop{workers}", recipe, workers)
        assert code == 2 and "malformed.jsonl:4: malformed JSON" in err and "Traceback" not in err, err
    alone, worker = (_run(tmp_path, name, {**recipe, "on_error": "reject"}, w) for name, w in (("a", 0), ("w", 1)))
    assert worker[0] == 0 and worker[1].startswith("normalize: 7 in, 6 out, 1 rejected (malformed_json: 1)")
    assert worker[2] == alone[2]


def test_errors_cross_processes_whole() -> None:
    error = pickle.loads(pickle.dumps(InputError("data.json:4", "malformed JSON", hint="fix it")))
    assert isinstance(error, InputError) and error.exit_code == 2
    assert (str(error), error.location, error.message, error.hint) == ("data.json:4: malformed JSON", "data.json:4",
                                                                       "malformed JSON", "fix it")
    assert pickle.loads(pickle.dumps(UsageProblem("no"))).format() == "no"


def test_a_reader_closed_early_leaves_no_process_behind(tmp_path: Path) -> None:
    data = _alpaca_rows(tmp_path / "rows.jsonl", 5000)
    stage = NormalizeStage(NormalizeOptions(source="alpaca"))
    batches = offload.read_processed(data, None, None, stage, None)
    first = next(batches)
    kept, rejected = first.result
    assert len(first) == len(kept) and not rejected and kept.records[0]["prompt"] == "q0"
    batches.close()
    assert multiprocessing.active_children() == []


def test_a_worker_by_default_only_where_it_pays(tmp_path: Path) -> None:
    """Big files on a second CPU whose rows are not alpaca (told from the first row, or as declared)."""
    two_cpus = len(os.sched_getaffinity(0)) >= 2
    chat = {"conversations": [{"from": "human", "value": "q" * 500}, {"from": "gpt", "value": "a" * 500}]}
    alpaca = {"instruction": "q" * 500, "output": "a" * 500}
    n = offload.MIN_BYTES // 1000 + 1
    files = {"chat.jsonl": "".join(json.dumps(chat) + "\n" for _ in range(n)),
             "alpaca.json": json.dumps([alpaca] * n), "small.jsonl": json.dumps(chat) + "\n",
             "odd.jsonl": json.dumps({"x": 1}) + "\n" + json.dumps(chat) * n}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    auto = NormalizeOptions()

    def worth(name: str, options: NormalizeOptions = auto) -> bool:
        return offload.worth_a_worker(str(tmp_path / name), None, options)

    assert worth("chat.jsonl") == two_cpus
    assert worth("chat.jsonl", NormalizeOptions(source="sharegpt")) == two_cpus
    assert not worth("alpaca.json") and not worth("chat.jsonl", NormalizeOptions(source="alpaca"))
    assert offload.worth_a_worker(str(tmp_path / "alpaca.json"), None, auto, tokenizes=True) == two_cpus
    assert not worth("small.jsonl") and not worth("odd.jsonl")  # too small; a first row of no known format


class _Crashes:
    """A stage whose worker dies (as one killed for memory would), or fails with an error no pickle can carry."""

    name = "normalize"
    notify = None

    def __init__(self, how: str) -> None:
        self.how = how

    def process(self, batch: object) -> None:
        if self.how == "exit":
            os._exit(3)

        class Unpicklable(Exception):
            pass

        raise Unpicklable("no way back")


def _alpaca_rows(path: Path, n: int = 10) -> str:
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(n)))
    return str(path)


def test_a_worker_that_dies_or_fails_oddly_is_a_one_line_error(tmp_path: Path) -> None:
    data = _alpaca_rows(tmp_path / "rows.jsonl")
    with pytest.raises(DataprepError, match=r"rows.jsonl: the process reading it stopped \(exit status 3\)"):
        list(offload.read_processed(data, None, None, _Crashes("exit"), None))
    with pytest.raises(DataprepError, match="^Unpicklable: no way back$"):
        list(offload.read_processed(data, None, None, _Crashes("raise"), None))
    assert multiprocessing.active_children() == []


def test_a_failure_after_normalize_stops_the_worker_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataprep.filter import FilterStage

    calls = []

    def failing(self: FilterStage, batch: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise DataprepError("filter failed mid-stream")
        return original(self, batch)

    original = FilterStage.process
    monkeypatch.setattr(FilterStage, "process", failing)
    recipe = {"inputs": [{"path": _alpaca_rows(tmp_path / "rows.jsonl", 20_000)}], "normalize": None,
              "filter": {"min_response_chars": 1}}
    code, err, written = _run(tmp_path, "out", recipe, 1)
    assert code == 1 and "filter failed mid-stream" in err and "out.jsonl" not in written
    assert multiprocessing.active_children() == []
