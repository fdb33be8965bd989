"""The output folder: content-addressed cache keys, stdin spooling, refusing foreign folders, the card."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pytest

from dataprep import manifest as mf
from dataprep.errors import DataprepError, InputError


def parts(inputs, **changes):
    base = {"task": "causal", "options": {"max_length": 8}, "inputs": inputs,
            "tokenizer_sha256": {"tokenizer.json": "ab"}, "template": {"name": "tokenizer", "sha256": "cd"}}
    base.update(changes)
    return mf.key_parts(**base)


def test_key_depends_on_content_not_paths(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "sub" / "b.jsonl"
    b.parent.mkdir()
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 1}\n')
    fa, fb = mf.hash_input(str(a), str(tmp_path)), mf.hash_input(str(b), str(tmp_path))
    assert fa.sha256 == fb.sha256 and fa.bytes == 9
    key = mf.cache_key(parts([fa]))
    assert key == mf.cache_key(parts([fb]))
    b.write_text('{"x": 2}\n')
    assert key != mf.cache_key(parts([mf.hash_input(str(b), str(tmp_path))]))
    assert key != mf.cache_key(parts([fa], options={"max_length": 9}))
    assert key != mf.cache_key(parts([fa], tokenizer_sha256={"tokenizer.json": "ac"}))
    assert key != mf.cache_key(parts([fa], template={"name": "tokenizer", "sha256": "ce"}))
    named = mf.hash_input(str(a), str(tmp_path), split="validation")
    assert key != mf.cache_key(parts([named]))


def test_stdin_is_spooled_while_hashing(tmp_path, monkeypatch):
    data = b'[{"prompt": "p", "response": "r"}]'
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    spooled = mf.hash_input("-", str(tmp_path))
    assert spooled.name == "<stdin>" and spooled.fmt == "json"
    with open(spooled.path, "rb") as f:
        assert f.read() == data
    on_disk = tmp_path / "same.json"
    on_disk.write_bytes(data)
    assert mf.hash_input(str(on_disk), str(tmp_path)).sha256 == spooled.sha256


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        mf.hash_input(str(tmp_path / "absent.jsonl"), str(tmp_path))


def test_check_target_refuses_a_foreign_folder_unless_forced(tmp_path):
    mf.check_target(tmp_path / "new", force=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    mf.check_target(empty, force=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(DataprepError, match="not written by dataprep tokenize"):
        mf.check_target(foreign, force=False)
    mf.check_target(foreign, force=True)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / mf.MANIFEST).write_text(json.dumps({"key": "k"}))
    mf.check_target(ours, force=False)
    assert mf.read_manifest(ours) == {"key": "k"}


def test_output_dir_abort_leaves_nothing_and_commit_replaces(tmp_path):
    schema = pa.schema([("id", pa.string())])
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    out = mf.OutputDir(target, schema)
    out.write("train", pa.RecordBatch.from_pydict({"id": ["a"]}, schema=schema))
    out.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "old.txt").read_text() == "old"
    out = mf.OutputDir(target, schema)
    out.write("validation", pa.RecordBatch.from_pydict({"id": ["b"]}, schema=schema))
    out.write("train", pa.RecordBatch.from_pydict({"id": ["a"]}, schema=schema))
    assert out.splits == ["train", "validation"]
    out.finish_splits("key")
    out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not (target / "old.txt").exists()
    assert json.loads((target / "dataset_dict.json").read_text())["splits"] == ["train", "validation"]


def test_split_order_puts_known_splits_first():
    assert mf.split_order(["zeta", "test", "alpha", "train"]) == ["train", "test", "alpha", "zeta"]


def test_dataset_card_has_the_manifest_facts():
    manifest = {
        "dataprep_version": "0.1.0", "key": "k" * 64, "task": "classification",
        "options": {"max_length": 128}, "template": None,
        "tokenizer": {"class": "T", "len": 740, "vocab_size": 740, "pad_token_id": 0, "eos_token_id": None,
                      "bos_token_id": None, "files_sha256": {"tokenizer.json": "ff"}},
        "inputs": [{"name": "train.tsv", "split": "train", "bytes": 10, "sha256": "ee"}],
        "splits": {"train": {"rows": 3, "tokens": 30, "supervised_tokens": None, "truncated": 1}},
        "rejected": {"too_long": 2}, "labels": {"names": ["0", "1"]},
        "totals": {"rows_in": 5, "rows_out": 3, "rejected": 2},
    }
    card = mf.dataset_card(manifest)
    assert "| train | 3 | 30 | n/a | 1 |" in card
    assert "- `too_long`: 2" in card
    assert "0 = `0`, 1 = `1`" in card
    assert "`train.tsv` → split `train`" in card and f"`{'k' * 64}`" in card
