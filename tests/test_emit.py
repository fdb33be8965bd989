"""Per-consumer layouts of a tokenized folder, and the folder writer whose features datasets 3.x also reads."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep import emit
from dataprep.errors import UsageProblem
from dataprep.tokenize import CAUSAL_SCHEMA
from tests.interop_data import layout_of

pytest_plugins = ("tests.interop_fixtures",)  # the tokenized folder, the tiny model


def causal_batch() -> pa.RecordBatch:
    ids = [[5, 6, 7, 2], [8, 9, 2]]
    labels = [[-100, -100, 7, 2], [-100, 9, 2]]
    return pa.RecordBatch.from_pydict({
        "id": ["a", "b\nc"], "input_ids": ids, "attention_mask": [[1] * len(x) for x in ids], "labels": labels,
        "length": [4, 3]}, schema=CAUSAL_SCHEMA)


def test_default_layout_is_the_causal_schema_unchanged() -> None:
    batch = causal_batch()
    assert emit.schema_for("dataprep", CAUSAL_SCHEMA) == CAUSAL_SCHEMA
    assert emit.columns_for("dataprep", batch).equals(batch)
    assert emit.ids_beside("dataprep", batch) is None


def test_trl_layout_adds_masks_equal_to_the_supervised_labels() -> None:
    out = emit.columns_for("trl", causal_batch())
    assert out.schema == emit.schema_for("trl", CAUSAL_SCHEMA)
    assert out.column("assistant_masks").to_pylist() == [[0, 0, 1, 1], [0, 1, 1]]
    assert out.column("completion_mask").to_pylist() == out.column("assistant_masks").to_pylist()
    assert out.column("labels").equals(causal_batch().column("labels"))


def test_masks_of_a_sliced_batch_follow_its_rows() -> None:
    sliced = causal_batch().slice(1, 1)  # the offsets no longer start at 0
    assert emit.columns_for("trl", sliced).column("assistant_masks").to_pylist() == [[0, 1, 1]]


@pytest.mark.parametrize("target", ["llamafactory", "axolotl", "plain"])
def test_three_column_layouts_keep_the_ids_beside(target: str) -> None:
    batch = causal_batch()
    out = emit.columns_for(target, batch)
    assert out.schema.names == ["input_ids", "attention_mask", "labels"]
    ids = emit.ids_beside(target, batch)
    assert ids == ["a", "b\nc"]
    assert [json.loads(line) for line in emit.ids_lines(ids).splitlines()] == ids  # a newline in an id survives


def test_unknown_target_and_classification_are_refused() -> None:
    with pytest.raises(UsageProblem, match="--emit-for must be one of dataprep, trl, llamafactory, axolotl, plain"):
        emit.layout("unsloth")
    with pytest.raises(UsageProblem, match="applies to causal datasets"):
        emit.check_task("trl", "classification")
    emit.check_task("dataprep", "classification")


def test_legacy_features_use_sequence() -> None:
    features = emit.legacy_features(emit.schema_for("trl", CAUSAL_SCHEMA))
    assert features["input_ids"] == {"feature": {"dtype": "int32", "_type": "Value"}, "_type": "Sequence"}
    assert features["assistant_masks"]["feature"]["dtype"] == "int8"
    assert features["id"] == {"dtype": "string", "_type": "Value"}


def write_parts(tmp_path: Path, splits: dict[str, list[pa.RecordBatch]]) -> dict[str, Path]:
    parts = {}
    for split, batches in splits.items():
        parts[split] = tmp_path / f"{split}.arrow"
        with pa.ipc.new_stream(str(parts[split]), batches[0].schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    return parts


def test_write_dataset_dict_loads_with_datasets_and_moves_the_files(tmp_path: Path) -> None:
    import datasets

    batch = causal_batch()
    parts = write_parts(tmp_path, {"train": [batch, batch], "validation": [batch.slice(0, 1)]})
    emit.write_dataset_dict(tmp_path / "out", parts, {"train": "f1", "validation": "f2"})
    assert not parts["train"].exists()  # renamed into place, not copied
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert list(loaded) == ["train", "validation"] and len(loaded["train"]) == 4
    assert loaded["train"][1]["labels"] == [-100, 9, 2]
    assert loaded["train"].features["labels"].feature.dtype == "int32"
    assert json.loads((tmp_path / "out" / "train" / "state.json").read_text())["_fingerprint"] == "f1"
    info = json.loads((tmp_path / "out" / "train" / "dataset_info.json").read_text())
    assert info["features"]["labels"]["_type"] == "Sequence"


def test_write_dataset_dict_is_byte_identical_run_to_run(tmp_path: Path) -> None:
    files = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        parts = write_parts(tmp_path / run, {"train": [causal_batch()]})
        emit.write_dataset_dict(tmp_path / run / "out", parts, {"train": "same"})
        files.append({p.relative_to(tmp_path / run / "out"): p.read_bytes()
                      for p in sorted((tmp_path / run / "out").rglob("*")) if p.is_file()})
    assert files[0] == files[1]


def test_write_dataset_dict_refuses_datasets_own_metadata(tmp_path: Path) -> None:
    batch = causal_batch()
    stamped = batch.replace_schema_metadata({"huggingface": "{}"})
    parts = write_parts(tmp_path, {"train": [stamped]})
    with pytest.raises(ValueError, match="write it without"):
        emit.write_dataset_dict(tmp_path / "out", parts, {"train": "x"})


@pytest.mark.parametrize("target", ["trl", "llamafactory", "axolotl"])
def test_convert_folder_keeps_every_row_and_label(fixture_folder: Path, target: str) -> None:
    import datasets

    out = layout_of(fixture_folder, target)
    before, after = datasets.load_from_disk(str(fixture_folder)), datasets.load_from_disk(str(out))
    assert list(after) == list(before)
    manifest = json.loads((out / "dataprep.json").read_text())
    assert manifest["emit_for"] == target
    for split in before:
        assert after[split]["labels"] == before[split]["labels"]
        assert after[split]["input_ids"] == before[split]["input_ids"]
        assert list(after[split].column_names) == list(emit.layout(target).columns)
        assert manifest["splits"][split]["longest"] == max(before[split]["length"])
        if emit.layout(target).ids_beside:
            assert emit.read_ids(out, split) == before[split]["id"]
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    config = {"llamafactory": "llamafactory.yaml", "axolotl": "axolotl.yaml"}.get(target)
    assert sorted(p.name for p in out.glob("*.yaml")) == ([config] if config else [])
