"""The label guard: finding a batch's sequences among a split's rows (plain and packed), and telling a cut, a
rebuilt label and a foreign sequence apart, with exact counts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from dataprep.errors import DataprepError  # noqa: E402
from dataprep.train.collate import PadCollator  # noqa: E402
from dataprep.train.guard import (  # noqa: E402
    LabelGuard,
    LabelsChanged,
    SplitRows,
    audit_epoch,
    batch_sequences,
    check_batches,
)
from tests.interop_data import split_rows  # noqa: E402

pytest_plugins = ("tests.interop_fixtures",)  # the tokenized folder, the tiny model

ROWS = [
    {"id": "a", "input_ids": [5, 6, 7, 8, 2], "labels": [-100, -100, 7, 8, 2]},
    {"id": "b", "input_ids": [5, 6, 9, 2], "labels": [-100, -100, 9, 2]},
    {"id": "c", "input_ids": [4, 3, 3, 3, 3, 2], "labels": [-100, -100, 3, 3, 3, 2]},
]


def table(rows: list[dict], **extra: list) -> pa.Table:
    return pa.table({"id": [r["id"] for r in rows], "input_ids": [r["input_ids"] for r in rows],
                     "labels": [r["labels"] for r in rows], **extra})


def tensors(*rows: dict, pad: int = 0) -> dict:
    return PadCollator(pad)([{k: r[k] for k in ("input_ids", "labels")} | {"attention_mask": [1] * len(r["input_ids"])}
                             for r in rows])


def test_rows_are_found_by_their_tokens() -> None:
    rows = SplitRows(table(ROWS))
    assert [rows.find(np.array(r["input_ids"])) for r in ROWS] == [0, 1, 2]
    assert rows.find(np.array([5, 6, 7])) is None and rows.find(np.array([], dtype=np.int64)) is None
    assert rows.find_part(np.array([5, 6, 7])) == (0, 0)  # the start of row a
    assert rows.find_part(np.array([3, 3, 2])) == (2, 3)  # the end of row c
    assert rows.row_id(2) == "c" and rows.supervised_labels() == 9 and rows.supervised_targets() == 9


@pytest.mark.parametrize("mark", ["seq_lengths", "position_ids"])
def test_packed_rows_are_indexed_one_original_row_at_a_time(mark: str) -> None:
    packed = {"id": "ab", "input_ids": ROWS[0]["input_ids"] + ROWS[1]["input_ids"],
              "labels": ROWS[0]["labels"] + ROWS[1]["labels"]}
    marks = {"seq_lengths": [[5, 4], [6]], "position_ids": [[0, 1, 2, 3, 4, 0, 1, 2, 3], list(range(6))]}[mark]
    rows = SplitRows(table([packed, ROWS[2]], **{mark: marks}))
    assert len(rows) == 3 and rows.lengths.tolist() == [5, 4, 6] and rows.row.tolist() == [0, 0, 1]
    assert rows.find(np.array(ROWS[1]["input_ids"])) == 1 and rows.labels(1).tolist() == ROWS[1]["labels"]


def test_seq_lengths_that_do_not_tile_the_row_are_refused() -> None:
    with pytest.raises(DataprepError, match="do not add up"):
        SplitRows(table(ROWS[:1], seq_lengths=[[2, 2]]))


def test_batch_sequences_by_mask_positions_and_cu_seqlens() -> None:
    right = tensors(ROWS[0], ROWS[1])
    assert [s[0].tolist() for s in batch_sequences(right)] == [ROWS[0]["input_ids"], ROWS[1]["input_ids"]]
    left = {"input_ids": torch.tensor([[0, 5, 6, 9, 2]]), "labels": torch.tensor([[-100, -100, -100, 9, 2]]),
            "attention_mask": torch.tensor([[0, 1, 1, 1, 1]])}
    assert [s[0].tolist() for s in batch_sequences(left)] == [ROWS[1]["input_ids"]]
    flat = {"input_ids": torch.tensor([ROWS[0]["input_ids"] + ROWS[1]["input_ids"] + [0, 0]]),
            "labels": torch.tensor([ROWS[0]["labels"] + ROWS[1]["labels"] + [-100, -100]]),
            "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0]])}
    pieces = [s[0].tolist() for s in batch_sequences(flat)]
    assert pieces == [ROWS[0]["input_ids"], ROWS[1]["input_ids"], [0], [0]]
    flat["cu_seq_lens_q"] = torch.tensor([0, 5, 9, 11])
    assert [s[0].tolist() for s in batch_sequences(flat)] == [ROWS[0]["input_ids"], ROWS[1]["input_ids"], [0, 0]]


def test_the_guard_passes_dataprep_labels_and_a_blanked_first_label() -> None:
    guard = LabelGuard(SplitRows(table(ROWS)), batches=2)
    guard.check(tensors(*ROWS))
    first_blank = tensors(*ROWS)
    first_blank["labels"][:, 0] = 7  # the first position is never a target: whatever it holds is not a change
    report = guard.check(first_blank)
    assert guard.done and report.sequences == 6 and report.targets == 18 and not report.findings


def test_rebuilt_labels_are_counted_and_stop_the_run() -> None:
    guard = LabelGuard(SplitRows(table(ROWS)), name="toy")
    batch = tensors(*ROWS)
    batch["labels"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    with pytest.raises(LabelsChanged) as caught:
        guard.check(batch)
    message = str(caught.value)
    assert message.startswith("label guard: the trainer changed the labels of 3 sequence(s) of toy: 3 with other "
                              "labels (3 masked tokens trained)")  # each prompt: 2 tokens, the first never a target
    assert "First: row 0 (id 'a') reached the model with other labels" in message
    assert [f.extra for f in guard.report.findings] == [1, 1, 1]


def test_a_cut_row_is_recognised_with_what_it_lost() -> None:
    guard = LabelGuard(SplitRows(table(ROWS)))
    cut = dict(ROWS[2], input_ids=ROWS[2]["input_ids"][:4], labels=ROWS[2]["labels"][:4])
    with pytest.raises(LabelsChanged) as caught:
        guard.check(tensors(ROWS[0], cut))
    finding = guard.report.findings[0]
    assert (finding.kind, finding.row, finding.row_tokens, finding.tokens, finding.lost) == ("cut", 2, 6, 4, 2)
    assert "row 2 (id 'c') of 6 tokens reached the model cut to 4 (2 supervised tokens lost" in str(caught.value)
    assert "at least 6, this split's longest row" in caught.value.hint


def test_a_foreign_supervised_sequence_stops_and_unsupervised_padding_does_not() -> None:
    guard = LabelGuard(SplitRows(table(ROWS)))
    pad_only = {"input_ids": torch.tensor([[0, 0, 0]]), "labels": torch.full((1, 3), -100),
                "position_ids": torch.tensor([[0, 0, 0]])}
    guard.check(pad_only)
    with pytest.raises(LabelsChanged, match="1 not in the dataset"):
        guard.check(tensors({"input_ids": [11, 12, 13], "labels": [-100, 12, 13]}))


def test_from_folder_refuses_labels_changed_after_tokenize(fixture_folder: Path, tmp_path: Path) -> None:
    guard = LabelGuard.from_folder(fixture_folder)
    manifest = json.loads((fixture_folder / "dataprep.json").read_text())
    assert guard.rows.supervised_labels() == manifest["splits"]["train"]["supervised_tokens"]
    changed = tmp_path / "changed"
    shutil.copytree(fixture_folder, changed)
    manifest["splits"]["train"]["supervised_tokens"] += 1
    (changed / "dataprep.json").write_text(json.dumps(manifest))
    with pytest.raises(DataprepError, match="the folder was changed after dataprep wrote it"):
        LabelGuard.from_folder(changed)
    with pytest.raises(DataprepError, match="no split 'test' here"):
        LabelGuard.from_folder(fixture_folder, "test")


def test_check_batches_stops_looking_after_its_batches(fixture_folder: Path) -> None:
    rows = split_rows(fixture_folder)
    guard = LabelGuard.from_folder(fixture_folder, batches=2)
    batches = [PadCollator(0)(rows[i:i + 4]) for i in range(0, 16, 4)]
    report = check_batches(guard, batches)
    assert report.batches == 2 and report.sequences == 8


def test_audit_counts_duplicates_once_each_and_dropped_rows_as_lost() -> None:
    rows = SplitRows(table([*ROWS, dict(ROWS[1], id="b2")]))
    audit = audit_epoch(rows, [tensors(ROWS[0], ROWS[1]), tensors(ROWS[1], ROWS[2])])
    assert audit.exact and audit.seen == 4 and audit.targets == 11
    dropped = audit_epoch(rows, [tensors(ROWS[0], ROWS[1], ROWS[2])])
    assert not dropped.exact and dropped.missing == 1 and dropped.lost == 2


def test_callback_hook_checks_then_removes_itself(fixture_folder: Path, fixture_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fixture_model).train()
    callback = LabelGuard.from_folder(fixture_folder, batches=1).callback(verbose=False)
    callback.on_train_begin(None, None, None, model=model)
    rows = split_rows(fixture_folder)
    bad = PadCollator(0)(rows[:2])
    bad["labels"] = bad["input_ids"].clone()
    with pytest.raises(LabelsChanged):
        model(**bad)
    assert callback._handle is None  # removed on the way out: a run that goes on is not checked again
    model(**bad)

    callback = LabelGuard.from_folder(fixture_folder, batches=1).callback(verbose=False)
    callback.on_train_begin(None, None, None, model=model)
    model(**PadCollator(0)(rows[:2]))
    assert callback.guard.done and callback._handle is None
    model.eval()
    callback = LabelGuard.from_folder(fixture_folder, batches=1).callback(verbose=False)
    callback.on_train_begin(None, None, None, model=model)
    model(**bad)  # evaluation forwards are not checked
    assert callback.guard.report.batches == 0


def test_callback_without_labels_warns_once_and_steps_aside(fixture_folder: Path, fixture_model: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fixture_model).train()
    callback = LabelGuard.from_folder(fixture_folder).callback()
    callback.on_train_begin(None, None, None, model=model)
    batch = PadCollator(0)(split_rows(fixture_folder)[:2])
    batch.pop("labels")
    model(**batch)
    assert "the model is called without labels" in capsys.readouterr().err and callback._handle is None
