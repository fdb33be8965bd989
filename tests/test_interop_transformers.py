"""transformers' Trainer and a plain torch loop on a dataprep folder: every batch of an epoch, pulled from the
consumer's own data loader, carries dataprep's labels token for token; the collator that rebuilds labels does
not, and the label guard stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dataprep.train.guard import LabelGuard, LabelsChanged, SplitRows, audit_epoch, read_split  # noqa: E402
from tests.interop_data import (  # noqa: E402
    assert_exact,
    epoch_report,
    layout_of,
    tiny_model_dir,
)

pytest_plugins = ("tests.interop_fixtures",)  # the tokenized folder, the tiny model
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trainer_for(folder: Path, model_dir: Path, tmp_path: Path, collator: str = "seq2seq", batch: int = 8,
                **args: object):
    import datasets
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    collate = {"seq2seq": DataCollatorForSeq2Seq(tokenizer),
               "lm": DataCollatorForLanguageModeling(tokenizer, mlm=False), "default": None}[collator]
    return Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                   args=TrainingArguments(str(tmp_path / "out"), per_device_train_batch_size=batch, report_to="none",
                                          **args),
                   train_dataset=datasets.load_from_disk(str(folder))["train"], data_collator=collate)


@pytest.mark.parametrize("layout", ["dataprep", "trl", "llamafactory", "plain"])
def test_trainer_with_seq2seq_collator_is_exact(fixture_folder: Path, fixture_model: Path, tmp_path: Path,
                                                layout: str) -> None:
    folder = layout_of(fixture_folder, layout)
    loader = trainer_for(folder, fixture_model, tmp_path).get_train_dataloader()
    assert_exact(epoch_report(folder, loader))
    assert audit_epoch(SplitRows(read_split(folder, "train")), loader).exact


def test_trainer_with_length_grouping_is_exact(fixture_folder: Path, fixture_model: Path, tmp_path: Path) -> None:
    trainer = trainer_for(fixture_folder, fixture_model, tmp_path, train_sampling_strategy="group_by_length")
    assert type(trainer._get_train_sampler()).__name__ == "LengthGroupedSampler"
    assert_exact(epoch_report(fixture_folder, trainer.get_train_dataloader()))


def test_plain_torch_pad_sequence_is_exact(fixture_folder: Path) -> None:
    """The seed notebook's loop: with_format("torch") and pad_sequence with -100 for labels."""
    import datasets
    from torch.nn.utils.rnn import pad_sequence

    train = datasets.load_from_disk(str(fixture_folder))["train"].with_format(
        "torch", columns=["input_ids", "attention_mask", "labels"])

    def collate(rows: list[dict]) -> dict:
        return {key: pad_sequence([r[key] for r in rows], batch_first=True, padding_value=value)
                for key, value in (("input_ids", 0), ("attention_mask", 0), ("labels", -100))}

    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    assert_exact(epoch_report(fixture_folder, loader))


def test_language_modeling_collator_trains_the_prompt(fixture_folder: Path, fixture_model: Path,
                                                      tmp_path: Path) -> None:
    """Silent with one row per batch (the usual setting with gradient accumulation); with more rows its
    tokenizer.pad cannot pad the labels column and it crashes instead."""
    with pytest.raises(ValueError, match="Unable to create tensor"):
        next(iter(trainer_for(fixture_folder, fixture_model, tmp_path, collator="lm").get_train_dataloader()))
    loader = trainer_for(fixture_folder, fixture_model, tmp_path, collator="lm", batch=1).get_train_dataloader()
    report = epoch_report(fixture_folder, loader)
    assert report["whole"] == report["rows"] and report["equal"] == 0
    assert report["trained"] > 1.5 * report["targets"]  # the prompt is trained: alpaca prompts are long
    audit = audit_epoch(SplitRows(read_split(fixture_folder, "train")), loader)
    assert audit.changed == audit.rows and audit.extra == report["trained"] - report["targets"]


def test_the_guard_stops_a_trainer_whose_collator_rebuilds_labels(fixture_folder: Path, fixture_model: Path,
                                                                  tmp_path: Path) -> None:
    trainer = trainer_for(fixture_folder, fixture_model, tmp_path, collator="lm", batch=1, max_steps=3)
    trainer.add_callback(LabelGuard.from_folder(fixture_folder).callback())
    with pytest.raises(LabelsChanged) as caught:
        trainer.train()
    assert trainer.state.global_step == 0  # stopped on the first batch, before an optimizer step
    assert "masked tokens trained" in str(caught.value) and "DataCollatorForSeq2Seq" in caught.value.hint


def test_the_default_collator_cannot_pad_labels(fixture_folder: Path, fixture_model: Path, tmp_path: Path) -> None:
    """The table's crash row: Trainer's default collator with batches of more than one row."""
    loader = trainer_for(fixture_folder, fixture_model, tmp_path, collator="default").get_train_dataloader()
    with pytest.raises(ValueError):
        next(iter(loader))


@pytest.mark.slow
def test_trainer_is_exact_on_alpaca_en_demo_with_qwen(real_folder: Path, tmp_path: Path) -> None:
    import json

    model = tiny_model_dir(real_folder, tmp_path / "model")
    for grouping in ("random", "group_by_length"):
        loader = trainer_for(real_folder, model, tmp_path, train_sampling_strategy=grouping).get_train_dataloader()
        report = epoch_report(real_folder, loader)
        assert_exact(report)
    manifest = json.loads((real_folder / "dataprep.json").read_text())
    assert report["targets"] == manifest["splits"]["train"]["supervised_tokens"]  # no row's first label counts
