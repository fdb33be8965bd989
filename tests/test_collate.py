"""The padding collator: padding is told apart by length, never by id, and never changes a row's loss."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dataprep.train.collate import PadCollator  # noqa: E402
from dataprep.train.model import tiny_causal_config  # noqa: E402

PAD = EOS = 2


def causal(ids: list[int], prompt: int) -> dict:
    return {"id": "x", "length": len(ids), "input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [-100] * prompt + ids[prompt:]}


def test_pads_to_longest_with_minus_100_labels_and_zero_attention() -> None:
    rows = [causal([5, 6, 7, EOS], 2), causal([8, EOS], 1), causal([9, 10, 11, 12, 13, EOS], 3)]
    batch = PadCollator(PAD)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, EOS, PAD, PAD], [8, EOS, PAD, PAD, PAD, PAD],
                                           [9, 10, 11, 12, 13, EOS]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1] * 6]
    assert batch["labels"].tolist() == [[-100, -100, 7, EOS, -100, -100], [-100, EOS, -100, -100, -100, -100],
                                        [-100, -100, -100, 12, 13, EOS]]
    assert batch["input_ids"].dtype == torch.long


def test_pad_equal_to_eos_keeps_the_real_eos_supervised() -> None:
    batch = PadCollator(pad_token_id=EOS)([causal([4, EOS, EOS], 1), causal([4, EOS], 1)])
    assert batch["labels"].tolist() == [[-100, EOS, EOS], [-100, EOS, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_pad_to_multiple_of() -> None:
    batch = PadCollator(PAD, pad_to_multiple_of=8)([causal([5, 6, 7], 1)])
    assert batch["input_ids"].shape == (1, 8)
    assert batch["attention_mask"].sum().item() == 3
    assert batch["labels"][0, 3:].eq(-100).all()


def test_class_labels_are_stacked_and_token_type_ids_padded_with_zero() -> None:
    rows = [{"input_ids": [1, 5, 2, 6, 2], "attention_mask": [1] * 5, "token_type_ids": [0, 0, 0, 1, 1],
             "labels": 1},
            {"input_ids": [1, 7, 2, 8, 9, 2, 2], "attention_mask": [1] * 7, "token_type_ids": [0, 0, 0, 1, 1, 1, 1],
             "labels": 0}]
    batch = PadCollator(0)(rows)
    assert batch["labels"].tolist() == [1, 0]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1]]
    assert batch["input_ids"].tolist()[0] == [1, 5, 2, 6, 2, 0, 0]


def per_row_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row over its supervised positions."""
    shifted, targets = logits[:, :-1], labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(shifted.transpose(1, 2), targets, ignore_index=-100,
                                               reduction="none")
    return losses.sum(1) / targets.ne(-100).sum(1)


def test_mixed_length_batch_gives_each_row_its_own_loss() -> None:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_causal_config(97, pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS)).eval()
    generator = torch.Generator().manual_seed(1)
    rows = []
    for length, prompt in ((5, 2), (17, 6), (9, 3), (2, 1)):
        ids = torch.randint(3, 97, (length - 1,), generator=generator).tolist() + [EOS]
        rows.append(causal(ids, prompt))
    collate = PadCollator(PAD)
    with torch.no_grad():
        batch = collate(rows)
        together = per_row_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"])
        alone = torch.stack([per_row_loss(model(**{k: v for k, v in collate([r]).items() if k != "labels"}).logits,
                                          collate([r])["labels"])[0] for r in rows])
    assert batch["input_ids"].shape == (4, 17)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert len(set(alone.tolist())) == 4
