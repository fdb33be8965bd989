"""dataprep inspect: decoded rows with supervised tokens marked, headers with length and share."""

from __future__ import annotations

import numpy as np
import pytest

from dataprep.inspect import pick_rows, runs
from tests.conftest import FIXTURES, invoke

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
CANONICAL = FIXTURES / "data" / "canonical.jsonl"


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "out"
    result = invoke("tokenize", CANONICAL, "-o", out, "--tokenizer", TINY_BPE, "-q")
    assert result.exit_code == 0, result.stderr
    return out


def test_runs_and_row_choice():
    assert runs(np.array([False, True, True, False])) == [(0, 1, False), (1, 3, True), (3, 4, False)]
    assert runs(np.array([], dtype=bool)) == []
    assert pick_rows(10, index=-1) == [9]
    assert pick_rows(10) == [0, 1, 2]
    assert pick_rows(10, sample=4, seed=3) == pick_rows(10, sample=4, seed=3)
    assert len(pick_rows(2, sample=5)) == 2


def test_markers_wrap_exactly_the_responses(outdir):
    result = invoke("inspect", outdir, "--index", "0")
    assert result.exit_code == 0, result.stderr
    head, body = result.stdout.split("\n", 1)
    assert head.startswith("=== train[0] id=4622bbff76034d5d length=")
    assert "supervised=" in head and "%)" in head
    assert "<|im_start|>assistant\n[[Jupiter.<|im_end|>]]\n" in body
    assert body.count("[[") == 1
    assert "\x1b[" not in result.stdout


def test_color_always_uses_ansi(outdir):
    result = invoke("inspect", outdir, "--index", "0", "--color", "always")
    assert "\x1b[1;32mJupiter.<|im_end|>\x1b[0m" in result.stdout


def test_sample_is_seeded_and_errors_are_one_line(outdir, tmp_path):
    a = invoke("inspect", outdir, "--sample", "2", "--seed", "5").stdout
    assert a == invoke("inspect", outdir, "--sample", "2", "--seed", "5").stdout
    assert a.count("=== train[") == 2
    both = invoke("inspect", outdir, "--index", "0", "--sample", "2")
    assert both.exit_code == 2 and "cannot be used together" in both.stderr
    far = invoke("inspect", outdir, "--index", "999")
    assert far.exit_code == 2 and "out of range" in far.stderr
    missing = invoke("inspect", tmp_path)
    assert missing.exit_code == 1 and "no dataprep.json" in missing.stderr
    split = invoke("inspect", outdir, "--split", "test")
    assert split.exit_code == 2 and "no split 'test'; this folder has train" in split.stderr
