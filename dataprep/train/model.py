"""The models the trainer can start from: a tiny random one built from a config in code, or a saved one.

``tiny`` exists so that the whole path (data → Trainer → checkpoint → reload) can run in seconds on a CPU, in CI
and in the benchmark; it is sized to the dataset's tokenizer, so it can never disagree with the data about ids.
A saved model is checked against the dataset's tokenizer *before* its weights load: a model whose embedding is
smaller than the tokenizer would index out of range, and one whose own tokenizer maps text to other ids would
train happily on nonsense.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError
from dataprep.train.data import TokenizedData

TINY = "tiny"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")


def tiny_causal_config(vocab_size: int, *, pad_token_id: int | None, bos_token_id: int | None,
                       eos_token_id: int | None, max_positions: int = 2048, **overrides: Any) -> Any:
    """A Llama-style decoder small enough to train a few dozen steps on a CPU in seconds."""
    from transformers import LlamaConfig

    sizes: dict[str, Any] = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                             "num_key_value_heads": 4, "intermediate_size": 128, "tie_word_embeddings": False}
    sizes.update(overrides)
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max(max_positions, 128),
                       pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **sizes)


def tiny_classifier_config(vocab_size: int, label_names: list[str], *, pad_token_id: int | None,
                           max_positions: int = 512) -> Any:
    """A BERT-style encoder with a sequence-classification head, one output per label in the manifest."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=max(max_positions, 128), type_vocab_size=2,
                      pad_token_id=pad_token_id or 0, num_labels=len(label_names),
                      id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)})


def check_compatible(spec: str, data: TokenizedData, dataset_tokenizer: Any) -> None:
    """Refuse a model whose vocabulary cannot index the dataset's ids or whose own tokenizer differs."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise DataprepError(f"--model {spec}: cannot read a model config: {str(exc).splitlines()[0]}") from None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = getattr(text_config, "vocab_size", None)
    if vocab is not None and vocab < data.tokenizer_len:
        raise DataprepError(
            f"--model {spec}: its vocabulary has {vocab} entries but the dataset's tokenizer has "
            f"{data.tokenizer_len}; this dataset was tokenized for another model",
            hint="tokenize again with --tokenizer pointing at this model")
    model_dir = Path(spec)
    if model_dir.is_dir() and any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        from transformers import AutoTokenizer

        own = AutoTokenizer.from_pretrained(str(model_dir)).get_vocab()
        theirs = dataset_tokenizer.get_vocab()
        if own != theirs:
            differing = len(set(own.items()) ^ set(theirs.items()))
            raise DataprepError(
                f"--model {spec}: its tokenizer differs from the dataset's ({len(own)} vs {len(theirs)} entries, "
                f"{differing} (token, id) pairs not shared); this dataset was tokenized for another model",
                hint="tokenize again with --tokenizer pointing at this model")


def build_model(spec: str, data: TokenizedData, tokenizer: Any) -> Any:
    """``tiny`` → a fresh model from a config (seed it first); anything else → ``from_pretrained``, checked first."""
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        BertForSequenceClassification,
        LlamaForCausalLM,
    )

    facts = data.manifest.tokenizer
    if spec == TINY:
        if data.task == "classification":
            return BertForSequenceClassification(tiny_classifier_config(
                data.tokenizer_len, data.label_names, pad_token_id=facts.pad_token_id,
                max_positions=data.max_length()))
        return LlamaForCausalLM(tiny_causal_config(
            data.tokenizer_len, pad_token_id=facts.pad_token_id, bos_token_id=facts.bos_token_id,
            eos_token_id=facts.eos_token_id, max_positions=data.max_length()))
    check_compatible(spec, data, tokenizer)
    if data.task == "classification":
        names = data.label_names
        model = AutoModelForSequenceClassification.from_pretrained(
            spec, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)})
    else:
        model = AutoModelForCausalLM.from_pretrained(spec)
    if model.config.pad_token_id is None and facts.pad_token_id is not None:
        model.config.pad_token_id = facts["pad_token_id"]
    return model


def apply_lora(model: Any, task: str, r: int, alpha: int | None = None, targets: list[str] | None = None) -> Any:
    """Wrap ``model`` in LoRA adapters; by default on every linear layer but the output head (peft's all-linear)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM,
        r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=0.0,
        target_modules=targets or "all-linear")
    with warnings.catch_warnings():  # peft reads transformers' renamed is_gradient_checkpointing: not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            raise DataprepError(f"--lora-target: {str(exc).splitlines()[0]}") from None
