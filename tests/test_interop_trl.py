"""TRL's SFTTrainer (the installed release; the test extra pins it) on a dataprep folder: every batch of an epoch
from SFTTrainer's own data loader carries dataprep's labels, in the settings the study found exact; its default
max_length cuts long rows again, and the label guard stops that run."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from dataprep.train.guard import LabelGuard, LabelsChanged, SplitRows, audit_epoch, read_split  # noqa: E402
from tests.conftest import SHARED_DATA, invoke  # noqa: E402
from tests.interop_data import (  # noqa: E402
    assert_exact,
    epoch_report,
    layout_of,
    tiny_model_dir,
    tokenize_folder,
)

pytest_plugins = ("tests.interop_fixtures",)  # the tokenized folder, the tiny model
pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXACT_SETTINGS = {
    "defaults": {},
    "completion_only_loss": {"completion_only_loss": True},
    "packing_bfd": {"packing": True, "packing_strategy": "bfd"},
    "packing_bfd_split": {"packing": True, "packing_strategy": "bfd_split"},
    "padding_free": {"padding_free": True, "max_length": None},
}


def sft_trainer(folder: Path, model_dir: Path, tmp_path: Path, **config: object):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(str(tmp_path / "out"), per_device_train_batch_size=8, report_to="none", seed=0, bf16=False,
                     **{"dataset_num_proc": None, **config})
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                      train_dataset=datasets.load_from_disk(str(folder), keep_in_memory=True)["train"],
                      processing_class=AutoTokenizer.from_pretrained(folder / "tokenizer"))


@pytest.mark.parametrize("setting", list(EXACT_SETTINGS))
@pytest.mark.parametrize("layout", ["dataprep", "trl"])
def test_sft_trainer_is_exact(fixture_folder: Path, fixture_model: Path, tmp_path: Path, setting: str,
                              layout: str) -> None:
    folder = layout_of(fixture_folder, layout)
    loader = sft_trainer(folder, fixture_model, tmp_path, **EXACT_SETTINGS[setting]).get_train_dataloader()
    assert_exact(epoch_report(folder, loader))
    assert audit_epoch(SplitRows(read_split(folder, "train")), loader).exact


@pytest.mark.parametrize("layout", ["dataprep", "trl"])
def test_a_packed_folder_is_exact_with_padding_free(fixture_folder: Path, fixture_model: Path, tmp_path: Path,
                                                   layout: str) -> None:
    """dataprep pack's rows: TRL takes position_ids from seq_lengths, so every original row reaches the model once,
    whole, with its own labels, and no example attends to another."""
    packed = tmp_path / "packed"
    result = invoke("pack", fixture_folder, "-o", packed, "--max-length", "512", "--emit-for", layout, "-q")
    assert result.exit_code == 0, result.stderr
    loader = sft_trainer(packed, fixture_model, tmp_path, padding_free=True, max_length=None).get_train_dataloader()
    assert_exact(epoch_report(fixture_folder, loader))


def test_a_short_max_length_cuts_rows_and_loses_their_ends(fixture_folder: Path, fixture_model: Path,
                                                           tmp_path: Path) -> None:
    """The default max_length (1,024) on a folder with longer rows, scaled down: 64 on the fixture's rows."""
    rows = SplitRows(read_split(fixture_folder, "train"))
    over = int((rows.lengths > 64).sum())
    loader = sft_trainer(fixture_folder, fixture_model, tmp_path, max_length=64).get_train_dataloader()
    report = epoch_report(fixture_folder, loader)
    assert report["whole"] == report["rows"] - over and report["trained"] < report["targets"]
    audit = audit_epoch(rows, loader)
    assert audit.cut + audit.missing == over  # each long row arrives cut, or not at all (nothing left to learn)
    assert audit.lost == report["targets"] - report["trained"] and audit.extra == 0


def test_the_guard_stops_trl_when_it_cuts_rows(fixture_folder: Path, fixture_model: Path, tmp_path: Path) -> None:
    trainer = sft_trainer(fixture_folder, fixture_model, tmp_path, max_length=64, max_steps=3)
    trainer.add_callback(LabelGuard.from_folder(fixture_folder).callback())
    with pytest.raises(LabelsChanged) as caught:
        trainer.train()
    assert "cut" in str(caught.value) and "supervised tokens lost" in str(caught.value)
    assert "max_length" in caught.value.hint


def test_the_guard_lets_an_exact_trl_run_train(fixture_folder: Path, fixture_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    trainer = sft_trainer(fixture_folder, fixture_model, tmp_path, packing=True, max_steps=2)
    guard = LabelGuard.from_folder(fixture_folder, batches=2)
    trainer.add_callback(guard.callback())
    trainer.train()
    assert trainer.state.global_step == 2 and guard.report.batches == 2 and guard.report.targets > 0
    assert "label guard: 2 batches" in capsys.readouterr().err


def test_settings_that_refuse_tokenized_rows(fixture_folder: Path, fixture_model: Path, tmp_path: Path) -> None:
    """The table's crash rows: assistant_only_loss wants conversations; padding_free wants max_length=None."""
    with pytest.raises((ValueError, RuntimeError)):
        sft_trainer(fixture_folder, fixture_model, tmp_path, assistant_only_loss=True).get_train_dataloader()
    with pytest.raises(ValueError, match="padding_free"):
        sft_trainer(fixture_folder, fixture_model, tmp_path, padding_free=True)


@pytest.mark.slow
def test_default_max_length_cuts_long_lima_rows(tmp_path_factory: pytest.TempPathFactory) -> None:
    """LIMA with Qwen2.5 and --max-length 4096: the rows over 1,024 tokens reach the model cut to 1,024."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("lima")
    folder = tokenize_folder(root / "default", SHARED_DATA / "llamafactory" / "lima.json",
                             SHARED_DATA / "tokenizers" / "qwen2.5", "--max-length", 4096)
    model = tiny_model_dir(folder, root / "model")
    rows = SplitRows(read_split(folder, "train"))
    over = int((rows.lengths > 1024).sum())
    audit = audit_epoch(rows, sft_trainer(folder, model, root).get_train_dataloader())
    assert over > 100 and audit.cut + audit.missing == over
    assert audit.lost > 0.1 * audit.targets and audit.extra == 0
    exact = audit_epoch(rows, sft_trainer(folder, model, root, max_length=None).get_train_dataloader())
    assert exact.exact
