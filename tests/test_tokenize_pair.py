"""dataprep tokenize --task classification: ids equal the tokenizer's own pair encoding, sorted label ids,
token_type_ids, truncation modes, rejects; on the fixture pairs and on real GLUE MRPC."""

from __future__ import annotations

import csv
import json
from functools import cache

import pytest
from datasets import load_from_disk

from dataprep.tokenize.pair import ClassifyOptions, PairClassifier, label_key, sorted_labels
from dataprep.tokenizer_io import load_tokenizer
from tests.conftest import FIXTURES, invoke

WORDPIECE = FIXTURES / "tokenizers" / "tiny-wordpiece"
PAIRS = FIXTURES / "data" / "pairs.tsv"
PAIR_ARGS = ("--task", "classification", "--text", "#1 String", "--text-pair", "#2 String", "--label", "Quality")


@cache
def wordpiece():
    return load_tokenizer(str(WORDPIECE))


def read_tsv(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def encode(records, **options):
    encoder = PairClassifier(wordpiece(), ClassifyOptions(**options))
    prepared = encoder.prepare(records, ["train"] * len(records))
    return encoder, encoder.finish(prepared, encoder.encode(prepared))


def test_labels_sort_numerically_when_they_are_integers():
    assert sorted_labels({"10", "2", "0"}) == ["0", "2", "10"]
    assert sorted_labels({"pos", "neg"}) == ["neg", "pos"]
    assert [label_key(v) for v in ("x", 1, True)] == ["x", "1", "true"]


def test_ids_equal_the_tokenizer_pair_encoding_with_truncation():
    rows = read_tsv(PAIRS)[:40]
    tok = wordpiece()
    encoder, result = encode(rows, text="#1 String", text_pair="#2 String", label="Quality", max_length=24)
    t = result.tokens
    assert len(t) == len(rows) and not result.rejected
    for i, row in enumerate(rows):
        a, b = t.offsets[i], t.offsets[i + 1]
        ref = tok(row["#1 String"], row["#2 String"], truncation=True, max_length=24)
        assert t.columns["input_ids"][a:b].tolist() == ref["input_ids"]
        assert t.columns["token_type_ids"][a:b].tolist() == ref["token_type_ids"]
        assert t.columns["input_ids"][a] == tok.cls_token_id
    assert t.truncated.sum() == sum(len(tok(r["#1 String"], r["#2 String"])["input_ids"]) > 24 for r in rows)
    assert encoder.label_names == ["0", "1"]


def test_drop_mode_and_missing_fields_are_rejected_with_reasons():
    rows = read_tsv(PAIRS)[:10]
    rows[3] = {k: v for k, v in rows[3].items() if k != "#2 String"}
    rows[5]["Quality"] = ""
    _, result = encode(rows, text="#1 String", text_pair="#2 String", label="Quality", max_length=12,
                       truncation="drop")
    reasons = {i: r.reason for i, r in result.rejected}
    assert reasons[3] == "missing_field" and reasons[5] == "missing_label"
    assert all(reasons.get(i) == "too_long" for i in range(10) if i not in (3, 5))
    assert len(result.tokens) == 0


def test_cli_on_fixture_pairs_with_named_splits(tmp_path):
    out = tmp_path / "out"
    result = invoke("tokenize", f"train={PAIRS}", f"validation={PAIRS}", "-o", out, "--tokenizer", WORDPIECE,
                    *PAIR_ARGS)
    assert result.exit_code == 0, result.stderr
    n = len(read_tsv(PAIRS))
    assert result.stderr.startswith(f"tokenize: {2 * n} in, {2 * n} out, 0 rejected")
    dd = load_from_disk(str(out))
    assert list(dd) == ["train", "validation"]
    train = dd["train"]
    assert train.column_names == ["id", "input_ids", "attention_mask", "token_type_ids", "labels", "length"]
    assert str(train.features["labels"].dtype) == "int64"
    expected = [int(r["Quality"]) for r in read_tsv(PAIRS)]
    assert train["labels"] == expected
    manifest = json.loads((out / "dataprep.json").read_text())
    assert manifest["task"] == "classification"
    assert manifest["labels"]["names"] == ["0", "1"]
    assert manifest["splits"]["validation"]["rows"] == n
    assert manifest["tokenizer"]["pad_token_id"] == wordpiece().pad_token_id
    shown = invoke("inspect", out, "--index", "0")
    assert shown.exit_code == 0 and shown.stdout.startswith("=== train[0] id=")
    assert f"label: {expected[0]} ({expected[0]})" in shown.stdout and "[CLS]" in shown.stdout


def test_classification_options_are_checked(tmp_path):
    no_text = invoke("tokenize", PAIRS, "-o", tmp_path / "o", "--tokenizer", WORDPIECE, "--task", "classification")
    assert no_text.exit_code == 2 and "needs --text FIELD" in no_text.stderr
    mixed = invoke("tokenize", PAIRS, "-o", tmp_path / "o", "--tokenizer", WORDPIECE, *PAIR_ARGS, "--mask-history")
    assert mixed.exit_code == 2 and "only applies with --task causal" in mixed.stderr


@pytest.mark.slow
def test_real_mrpc_train_and_dev(shared_data, tmp_path):
    mrpc = shared_data / "mrpc"
    out = tmp_path / "mrpc"
    result = invoke("tokenize", f"train={mrpc / 'train.tsv'}", f"validation={mrpc / 'dev.tsv'}", "-o", out,
                    "--tokenizer", WORDPIECE, *PAIR_ARGS, "--max-length", "128")
    assert result.exit_code == 0, result.stderr
    dd = load_from_disk(str(out))
    assert (dd["train"].num_rows, dd["validation"].num_rows) == (3667, 408)
    assert sum(dd["validation"]["labels"]) == 279  # 279 paraphrases, 129 not (SOURCES.md)
    assert max(dd["train"]["length"]) == 128
    dev = read_tsv(mrpc / "dev.tsv")
    tok = wordpiece()
    for i in (0, 100, 407):
        ref = tok(dev[i]["#1 String"], dev[i]["#2 String"], truncation=True, max_length=128)
        assert dd["validation"][i]["input_ids"] == ref["input_ids"]


@pytest.mark.parametrize("field", ["#1 String"])
def test_single_text_without_labels(tmp_path, field):
    out = tmp_path / "o"
    result = invoke("tokenize", PAIRS, "-o", out, "--tokenizer", WORDPIECE, "--task", "classification",
                    "--text", field)
    assert result.exit_code == 0, result.stderr
    train = load_from_disk(str(out))["train"]
    assert "labels" not in train.column_names
    assert set(train[0]["token_type_ids"]) == {0}
