"""Real OS pipes between real dataprep processes: counts add up across stages, and `| head` exits cleanly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.io import dumps
from dataprep.records import make_record

REPO = Path(__file__).resolve().parent.parent
ALPACA = REPO / "fixtures" / "data" / "alpaca.json"
TINY_BPE = REPO / "fixtures" / "tokenizers" / "tiny-bpe"
SUMMARY = re.compile(r"^(\w+): (\d+) in, (\d+) out, (\d+) rejected", re.MULTILINE)
pytestmark = pytest.mark.slow  # real processes joined by OS pipes: seconds per test
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def pipe(*stages: list[object], workdir: Path) -> tuple[list[subprocess.CompletedProcess[bytes]], bytes]:
    """Run ``dataprep STAGE1 | dataprep STAGE2 | ...``; each process's exit code and stderr, and the output."""
    procs: list[subprocess.Popen[bytes]] = []
    errs = []
    stdin = None
    for i, args in enumerate(stages):
        err = open(workdir / f"stderr{i}.txt", "w+b")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, "-m", "dataprep", *map(str, args)], cwd=REPO, env=ENV,
                                stdin=stdin, stdout=subprocess.PIPE, stderr=err)
        if stdin is not None:
            stdin.close()  # the next process holds it now, so an early exit downstream reaches upstream
        stdin = proc.stdout
        procs.append(proc)
        errs.append(err)
    out, _ = procs[-1].communicate(timeout=120)
    done = []
    for proc, err in zip(procs, errs, strict=True):
        proc.wait(timeout=120)
        err.seek(0)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, None, err.read()))
        err.close()
    return done, out


def summaries(done: list[subprocess.CompletedProcess[bytes]]) -> dict[str, tuple[int, int, int]]:
    found = {}
    for proc in done:
        for stage, rows_in, rows_out, rejected in SUMMARY.findall(proc.stderr.decode()):
            found[stage] = (int(rows_in), int(rows_out), int(rejected))
    return found


def test_normalize_filter_split_counts_add_up(tmp_path):
    done, out = pipe(["normalize", ALPACA], ["filter", "-", "--min-response-chars", "20"],
                     ["split", "-", "--val-size", "0.2"], workdir=tmp_path)
    assert [p.returncode for p in done] == [0, 0, 0], [p.stderr for p in done]
    counts = summaries(done)
    assert set(counts) == {"normalize", "filter", "split"}
    for rows_in, rows_out, rejected in counts.values():
        assert rows_in == rows_out + rejected
    raw_rows = len(json.loads(ALPACA.read_text()))
    assert counts["normalize"][0] == raw_rows
    assert counts["filter"][0] == counts["normalize"][1]
    assert counts["split"][0] == counts["filter"][1]
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert len(records) == counts["split"][1]
    validation = sum(r["split"] == "validation" for r in records)
    assert validation == int(len(records) * 0.2 + 0.5)
    assert f"train: {len(records) - validation}, validation: {validation}" in done[2].stderr.decode()


def big_input(tmp_path: Path, rows: int = 30_000) -> Path:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(dumps(make_record(prompt=f"question {i}", response=f"answer number {i}")) + "\n"
                            for i in range(rows)))
    return path


@pytest.mark.parametrize("stage", [["filter"], ["split", "--val-size", "0.1"]])
def test_head_closes_the_pipe_cleanly(tmp_path, stage):
    source = big_input(tmp_path)
    dataprep = subprocess.Popen([sys.executable, "-m", "dataprep", stage[0], source, *stage[1:]], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-n", "3"], stdin=dataprep.stdout, capture_output=True, check=True)
    assert dataprep.stdout is not None
    dataprep.stdout.close()
    err = dataprep.stderr.read().decode() if dataprep.stderr else ""
    assert dataprep.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Error" not in err
    assert len(head.stdout.splitlines()) == 3


def test_pipe_into_tokenize_writes_one_dataset_per_split(tmp_path):
    from datasets import load_from_disk

    stages = (["normalize", ALPACA], ["filter", "-"], ["split", "-", "--val-size", "0.2"])
    _, split_out = pipe(*stages, workdir=tmp_path)
    expected: dict[str, list[str]] = {"train": [], "validation": []}
    for line in split_out.decode().splitlines():
        record = json.loads(line)
        expected[record["split"]].append(record["id"])
    done, _ = pipe(*stages, ["tokenize", "-", "-o", tmp_path / "out", "--tokenizer", TINY_BPE], workdir=tmp_path)
    assert [p.returncode for p in done] == [0, 0, 0, 0], [p.stderr for p in done]
    counts = summaries(done)
    assert counts["tokenize"][0] == counts["split"][1]
    dataset = load_from_disk(str(tmp_path / "out"))
    assert sorted(dataset) == ["train", "validation"]
    for name, ids in expected.items():
        assert sorted(dataset[name]["id"]) == sorted(ids)
