"""Training on packed rows: a packed batch's loss on the tiny Llama equals the token-weighted loss of the same rows
run one by one (so no example sees another), the traps that break this are shown to break it, and ``dataprep
train`` runs on a packed folder."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from tests.conftest import FIXTURES, invoke

torch = pytest.importorskip("torch")

from dataprep.tokenize.layout import IGNORE_INDEX  # noqa: E402
from dataprep.train.model import tiny_causal_config  # noqa: E402
from dataprep.train.packed import PackedCollator, packed_collator, prepare_model  # noqa: E402

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"


def ok(*args: object, input: str | None = None):
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """alpaca + messages fixtures tokenized with --train-on-prompt (every first token is supervised, so a loss
    that lets one example predict the next one's first token differs), then packed into rows of 600."""
    root = tmp_path_factory.mktemp("packed-train")
    text = ok("normalize", FIXTURES / "data" / "alpaca.json", "-q").stdout
    text += ok("normalize", FIXTURES / "data" / "messages.jsonl", "-q").stdout
    split = ok("split", "-", "--val-size", "0.25", "-q", input=text).stdout
    ok("tokenize", "-", "-o", root / "tok", "--tokenizer", TINY_BPE, "--train-on-prompt", "-q", input=split)
    ok("pack", root / "tok", "-o", root / "packed", "--max-length", 600, "-q")
    return root / "tok", root / "packed"


def tiny_model(attention: str = "sdpa"):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)  # large initial weights: logits that depend strongly on what each token attends to
    model = LlamaForCausalLM(tiny_causal_config(1500, pad_token_id=0, bos_token_id=None, eos_token_id=2,
                                                initializer_range=0.5))
    model.set_attn_implementation(attention)
    return model.eval()


def one_by_one_loss(model, rows: list[dict]) -> float:
    """Cross-entropy summed over every row's own supervised next tokens, run alone (no padding, no neighbours),
    divided by their number: the token-weighted loss of the rows unpacked."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor(row["labels"][1:])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
            total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX,
                                                       reduction="sum").item()
            count += int((labels != IGNORE_INDEX).sum())
    return total / count


def batches(folders: tuple[Path, Path], size: int = 3):
    """Packs ``size`` at a time (only those holding several rows), with the original rows they hold."""
    tok, packed = folders
    original = datasets.load_from_disk(str(tok))["train"]
    packs = [p for p in datasets.load_from_disk(str(packed))["train"] if len(p["ids"]) > 1]
    assert len(packs) >= 2 * size
    for start in range(0, 2 * size, size):
        group = packs[start:start + size]
        yield group, [original[i] for p in group for i in p["source_rows"]]


def differs(loss: float, right: float) -> bool:
    """Clearly off: equal losses agree to ~1e-7 here (float32 sums of a few hundred terms); 5e-5 is well above."""
    return abs(loss - right) > 5e-5 * right


def packed_loss(model, batch: dict) -> float:
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("flat", [False, True], ids=["rows", "flat"])
def test_packed_loss_equals_the_token_weighted_loss_of_the_rows_alone(folders, attention: str, flat: bool) -> None:
    model = tiny_model(attention)
    assert model.config.use_cache  # LlamaConfig's default: prepare_model must turn it off
    assert prepare_model(model) == attention and not model.config.use_cache
    collate = PackedCollator(0, flat=flat, pad_to_multiple_of=16)
    for group, rows in batches(folders):
        batch = collate(group)
        assert "attention_mask" not in batch
        assert packed_loss(model, batch) == pytest.approx(one_by_one_loss(model, rows), rel=1e-6)


def test_each_trap_breaks_the_equality(folders) -> None:
    """What the collator and prepare_model prevent, shown on the same batch: each alone changes the loss."""
    model = tiny_model()
    group, rows = next(batches(folders))
    right = one_by_one_loss(model, rows)
    batch = PackedCollator(0)(group)
    model.config.use_cache = True  # the default: transformers builds a cache and skips packed detection
    assert differs(packed_loss(model, batch), right)
    prepare_model(model)
    assert packed_loss(model, batch) == pytest.approx(right, rel=1e-6)
    with_mask = {**batch, "attention_mask": torch.ones_like(batch["input_ids"])}  # an all-ones 2D mask
    assert differs(packed_loss(model, with_mask), right)
    unmasked = {**batch, "labels": batch["labels"].clone()}  # each row's first label kept: its neighbour predicts it
    for i, pack in enumerate(group):
        unmasked["labels"][i, :len(pack["labels"])] = torch.tensor(pack["labels"])
    assert differs(packed_loss(model, unmasked), right)


def test_rows_padding_is_inert(folders) -> None:
    """Padding a batch wider changes nothing: pad tokens sit at position 0 with label -100."""
    model = tiny_model()
    prepare_model(model)
    group, _ = next(batches(folders))
    tight = PackedCollator(0)(group)
    wide = PackedCollator(0, pad_to_multiple_of=256)(group)
    assert wide["input_ids"].shape[1] > tight["input_ids"].shape[1]
    assert packed_loss(model, wide) == pytest.approx(packed_loss(model, tight), rel=1e-6)


def test_packed_collator_uses_rows_on_the_cpu(folders) -> None:
    model = tiny_model()
    collate = packed_collator(model, 0, 8)
    assert not collate.flat and collate.pad_to_multiple_of == 8 and not model.config.use_cache


def test_dataprep_train_runs_on_a_packed_folder(folders, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _, packed = folders
    run = tmp_path / "run"
    result = ok("train", "--data", packed, "--model", "tiny", "-o", run, "--max-steps", 8, "--eval-steps", 4,
                "--batch-size", 2, "--logging-steps", 2, "--lr", 3e-3, "--seed", 0, "-q")
    assert result.stderr == ""
    summary = json.loads((run / "train_result.json").read_text())
    assert summary["steps"] == 8 and summary["final_loss"] < summary["first_loss"]
    assert "eval_loss" in summary["eval"]
    lengths = datasets.load_from_disk(str(packed))["train"]["length"]  # 16 packs seen, padding not counted
    assert 16 * min(lengths) <= summary["train_tokens"] <= 16 * max(lengths)
