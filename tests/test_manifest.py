"""The output folder: content-addressed cache keys, stdin spooling, refusing foreign folders, the card."""

from __future__ import annotations

import io

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


@pytest.mark.parametrize("data", [b'[{"prompt": "p", "response": "r"}]', b"  \n" * 40 + b"[]",
                                  b'{"a": 1}\n' * 5000, b""])
def test_stdin_read_as_it_arrives_gives_the_spooled_facts(tmp_path, monkeypatch, data):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    spooled = mf.hash_input("-", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    streamed = mf.StreamedStdin(str(tmp_path), split="train")
    reader = streamed.reader()
    assert reader.read(100) == data[:100]  # the run reads part of it (the head read first is not lost) ...
    fact = streamed.fact()  # ... and the rest is hashed when the facts are asked for
    assert (fact.name, fact.sha256, fact.bytes, fact.fmt, fact.split) == (
        spooled.name, spooled.sha256, spooled.bytes, spooled.fmt, "train")


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        mf.hash_input(str(tmp_path / "absent.jsonl"), str(tmp_path))


def sample_manifest() -> mf.Manifest:
    return mf.Manifest(
        task="classification", key="k" * 64, options={"max_length": 128},
        tokenizer=mf.TokenizerFacts(len=740, vocab_size=740, pad_token_id=0, class_name="T",
                                    files_sha256={"tokenizer.json": "ff"}),
        inputs=[{"name": "train.tsv", "split": "train", "bytes": 10, "sha256": "ee"}],
        splits={"train": mf.SplitStats(rows=3, tokens=30, supervised_tokens=None, truncated=1)},
        rejected={"too_long": 2}, labels={"names": ["0", "1"]},
        totals=mf.Totals(rows_in=5, rows_out=3, rejected=2),
    )


def test_manifest_round_trips_through_its_file(tmp_path):
    manifest = sample_manifest()
    mf.write_manifest(tmp_path, manifest)
    assert mf.load_manifest(tmp_path) == manifest
    assert mf.read_manifest(tmp_path) == manifest


@pytest.mark.parametrize("text, problem", [
    ("{", "not a valid manifest"),
    ('{"task": "causal"}', "no tokenizer.len"),
    ('{"task": "regression", "tokenizer": {"len": 3}}', "task 'regression' is unknown"),
    ("[1]", "expected a JSON object"),
])
def test_a_broken_manifest_is_one_line_and_read_manifest_says_none(tmp_path, text, problem):
    (tmp_path / mf.MANIFEST).write_text(text)
    with pytest.raises(DataprepError, match=problem):
        mf.load_manifest(tmp_path)
    assert mf.read_manifest(tmp_path) is None


def test_missing_manifest_names_the_folder(tmp_path):
    with pytest.raises(DataprepError, match="no dataprep.json here"):
        mf.load_manifest(tmp_path)


def test_split_order_puts_known_splits_first():
    assert mf.split_order(["zeta", "test", "alpha", "train"]) == ["train", "test", "alpha", "zeta"]
