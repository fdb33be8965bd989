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


# -- packed rows ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenized_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Rows of a real ``dataprep tokenize`` run on the alpaca fixture with the tiny BPE tokenizer."""
    import datasets

    from tests.conftest import FIXTURES, invoke

    out = tmp_path_factory.mktemp("packed") / "tok"
    normalized = invoke("normalize", FIXTURES / "data" / "alpaca.json", "-q")
    result = invoke("tokenize", "-", "-o", out, "--tokenizer", FIXTURES / "tokenizers" / "tiny-bpe", "-q",
                    input=normalized.stdout)
    assert result.exit_code == 0, result.stderr
    return list(datasets.load_from_disk(str(out))["train"])


def pack(rows: list[dict], by: str = "seq_lengths") -> dict:
    """Concatenate rows into one packed row, marked by ``seq_lengths`` or by restarting ``position_ids``."""
    packed = {key: sum((list(r[key]) for r in rows), []) for key in ("input_ids", "labels")}
    if by == "seq_lengths":
        packed["seq_lengths"] = [len(r["input_ids"]) for r in rows]
    else:
        packed["position_ids"] = sum((list(range(len(r["input_ids"]))) for r in rows), [])
    return packed


def tiny_model(attn: str):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = tiny_causal_config(1500, pad_token_id=0, bos_token_id=None, eos_token_id=2)
    config._attn_implementation = attn
    return LlamaForCausalLM(config).eval()


def test_packed_rows_get_restarting_positions_and_no_attention_mask(tokenized_rows: list[dict]) -> None:
    a, b, c = tokenized_rows[:3]
    batch = PadCollator(0)([pack([a, b]), pack([c], by="position_ids")])
    n_a, n_b, n_c = (len(r["input_ids"]) for r in (a, b, c))
    width = n_a + n_b
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["position_ids"][0].tolist() == list(range(n_a)) + list(range(n_b))
    assert batch["position_ids"][1].tolist() == list(range(n_c)) + list(range(width - n_c))  # padding: its own run
    assert batch["labels"][0, n_a].item() == -100 and batch["labels"][1, n_c:].eq(-100).all()
    assert batch["input_ids"][0].tolist() == a["input_ids"] + b["input_ids"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_loss_equals_the_unpacked_rows_token_weighted_loss(tokenized_rows: list[dict],
                                                                        attn: str) -> None:
    rows = tokenized_rows[:7]
    model = tiny_model(attn)
    collate = PadCollator(0)
    packed = collate([pack(rows[:3]), pack(rows[3:5], by="position_ids"), pack(rows[5:])])
    plain = collate(rows)
    with torch.no_grad():
        packed_out = model(**packed, use_cache=False)
        plain_out = model(**plain, use_cache=False)
    assert packed["labels"].ne(-100).sum() == plain["labels"][:, 1:].ne(-100).sum()
    torch.testing.assert_close(packed_out.loss, plain_out.loss, rtol=1e-5, atol=1e-5)
    # token by token: row 3's logits inside its pack are its logits alone
    start = len(rows[3]["input_ids"])
    alone = plain_out.logits[4, :len(rows[4]["input_ids"])]
    torch.testing.assert_close(packed_out.logits[1, start:start + len(alone)], alone, rtol=1e-4, atol=1e-4)


def test_an_all_ones_attention_mask_would_let_packed_rows_attend_to_each_other(tokenized_rows: list[dict]) -> None:
    """The control for the test above: the same packed batch with a mask is another loss."""
    rows = tokenized_rows[:3]
    model = tiny_model("sdpa")
    packed = PadCollator(0)([pack(rows)])
    with torch.no_grad():
        apart = model(**packed, use_cache=False).loss
        mixed = model(**packed, attention_mask=torch.ones_like(packed["input_ids"]), use_cache=False).loss
    assert abs(apart.item() - mixed.item()) > 1e-3
