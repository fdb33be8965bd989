"""The trainer's pieces without a training run: tiny models, metrics, the log, the dataset checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from dataprep.errors import DataprepError  # noqa: E402
from dataprep.train.callbacks import log_rows  # noqa: E402
from dataprep.train.data import load_tokenized  # noqa: E402
from dataprep.train.metrics import accuracy_f1, perplexity  # noqa: E402
from dataprep.train.model import build_model, tiny_causal_config, tiny_classifier_config  # noqa: E402
from dataprep.train.synthetic import copy_task_rows, write_tokenized  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
TINY_WORDPIECE = FIXTURES / "tokenizers" / "tiny-wordpiece"


def test_tiny_causal_config_is_small_and_sized_to_the_tokenizer() -> None:
    from transformers import LlamaForCausalLM

    config = tiny_causal_config(1500, pad_token_id=0, bos_token_id=None, eos_token_id=2, max_positions=4000)
    model = LlamaForCausalLM(config)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 4)
    assert config.max_position_embeddings == 4000
    assert model.get_input_embeddings().num_embeddings == 1500
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_tiny_classifier_config_takes_labels_from_the_manifest() -> None:
    config = tiny_classifier_config(740, ["no", "yes", "maybe"], pad_token_id=None)
    assert config.num_labels == 3 and config.id2label == {0: "no", 1: "yes", 2: "maybe"}
    assert config.label2id["maybe"] == 2 and config.pad_token_id == 0 and config.type_vocab_size == 2


def test_accuracy_and_f1_by_hand() -> None:
    logits = np.array([[2.0, 0.1], [0.3, 0.9], [0.8, 0.1], [0.2, 0.7], [0.6, 0.5]])  # predicts 0 1 0 1 0
    labels = np.array([0, 1, 1, 1, 0])
    metrics = accuracy_f1(logits, labels)
    assert metrics["accuracy"] == pytest.approx(0.8)
    # class 0: tp 2, fp 1, fn 0 -> 0.8; class 1: tp 2, fp 0, fn 1 -> 0.8
    assert metrics["f1"] == pytest.approx(0.8) and metrics["f1_positive"] == pytest.approx(0.8)
    never = accuracy_f1(np.array([[1.0, 0.0]] * 4), np.array([0, 0, 1, 1]))
    assert never == {"accuracy": 0.5, "f1": pytest.approx((2 / 3 + 0) / 2), "f1_positive": 0.0}


def test_perplexity() -> None:
    assert perplexity(math.log(42.0)) == pytest.approx(42.0)
    assert perplexity(1e4) == math.inf


def test_log_rows_merge_train_and_eval_of_a_step() -> None:
    history = [
        {"loss": 7.1, "learning_rate": 1e-3, "grad_norm": 2.0, "epoch": 0.1, "num_input_tokens_seen": 100,
         "train_runtime": 0.5, "train_tokens_per_second": 200.0, "step": 1},
        {"loss": 6.0, "learning_rate": 5e-4, "grad_norm": 1.0, "epoch": 0.5, "num_input_tokens_seen": 500, "step": 5},
        {"eval_loss": 6.2, "eval_perplexity": 492.7, "eval_runtime": 0.1, "epoch": 0.5, "step": 5},
        {"train_runtime": 3.0, "train_loss": 6.5, "total_flos": 1.0, "epoch": 0.5, "step": 5},
    ]
    assert log_rows(history) == [
        {"step": 1, "loss": 7.1, "lr": 1e-3, "grad_norm": 2.0, "epoch": 0.1, "tokens_seen": 100},
        {"step": 5, "loss": 6.0, "lr": 5e-4, "grad_norm": 1.0, "epoch": 0.5, "tokens_seen": 500, "eval_loss": 6.2,
         "eval_perplexity": 492.7},
    ]


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
    return write_tokenized(tmp_path / "tok", tokenizer, {"train": copy_task_rows(tokenizer, 6, seed=1),
                                                         "validation": copy_task_rows(tokenizer, 2, seed=2)})


def test_load_tokenized_reads_the_manifest(synthetic: Path) -> None:
    data = load_tokenized(synthetic)
    assert data.task == "causal" and data.eval_split == "validation" and data.tokenizer_len == 1500
    assert data.max_length() == max([*data.splits["train"]["length"], *data.splits["validation"]["length"]])


def test_load_tokenized_refuses_what_training_cannot_use(synthetic: Path, tmp_path: Path) -> None:
    manifest = json.loads((synthetic / "dataprep.json").read_text())
    with pytest.raises(DataprepError, match="no such dataset folder"):
        load_tokenized(tmp_path / "absent")
    (synthetic / "dataprep.json").write_text(json.dumps({**manifest, "task": "ranking"}))
    with pytest.raises(DataprepError, match="task 'ranking' is unknown"):
        load_tokenized(synthetic)
    (synthetic / "dataprep.json").write_text(json.dumps({**manifest, "tokenizer": {}}))
    with pytest.raises(DataprepError, match="no tokenizer.len"):
        load_tokenized(synthetic)
    (synthetic / "dataprep.json").write_text(json.dumps({**manifest, "task": "classification"}))
    with pytest.raises(DataprepError, match="a classification dataset needs labels.names"):
        load_tokenized(synthetic)
    (synthetic / "dataprep.json").unlink()
    with pytest.raises(DataprepError, match="no dataprep.json here"):
        load_tokenized(synthetic)


def test_build_tiny_classifier_from_a_classification_manifest(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_WORDPIECE)
    rows = [{**tokenizer("a b", "c d").data, "labels": i % 2} for i in range(4)]
    path = write_tokenized(tmp_path / "cls", tokenizer, {"train": rows}, task="classification",
                           label_names=["different", "paraphrase"])
    data = load_tokenized(path)
    model = build_model("tiny", data, tokenizer)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "different", 1: "paraphrase"}
    assert model.config.vocab_size == len(tokenizer)
