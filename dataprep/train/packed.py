"""Training on ``dataprep pack`` output: batches that keep the packed examples apart, and the model set-up for it.

A packed row has no attention mask; its ``position_ids`` restart at 0 for each original row. transformers (5.x)
uses them in two ways, and both are what we want:

* **flash-attention 2** (``flat`` batches): with one row per batch, ``position_ids`` that restart mark packed
  sequences and attention runs varlen, so each example attends only to itself and no padding is computed. A
  batch is therefore all of its packs concatenated into one row.
* **SDPA / eager** (``rows`` batches): with no 2D ``attention_mask`` and no cache, ``create_causal_mask`` finds
  where positions restart and builds a block-diagonal causal mask. Packs are padded to the longest in the
  batch; each padding token gets position 0, so it is its own one-token sequence that nothing real attends to.

Two traps are closed here. ``LlamaConfig.use_cache`` defaults to True, and a model that builds a cache during
the forward pass skips the packed-sequence detection: every example would silently attend to the ones before it
in its pack; :func:`prepare_model` turns the cache off. And the loss shifts labels along the whole row, so the
last token of one example would be trained to predict the first token of the next; the collator sets the label
of each example's first token to -100 (a first token is never predicted when the examples are not packed
either), so a packed batch's loss is exactly the token-weighted loss of its examples unpacked.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dataprep.tokenize.layout import IGNORE_INDEX

PACKED_COLUMNS = ("input_ids", "labels", "position_ids")
FLASH = "flash_attention_2"


def flash_attention_available() -> bool:
    """flash-attention varlen needs CUDA with bf16 (the trainer then runs in bf16; flash-attention has no fp32) and
    the ``flash_attn`` package, which must import, not just be found."""
    if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
        return False
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_model(model: Any) -> str:
    """Make ``model`` keep packed examples apart; returns the attention implementation it will use.

    Flash-attention 2 when it is available, else the model's own (SDPA by default), and the cache off. A peft
    model is set up through its base model.
    """
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if flash_attention_available():
        # a model class without flash support keeps its own attention, masked from the positions
        with contextlib.suppress(ImportError, ValueError):
            model.set_attn_implementation(FLASH)
    model.config.use_cache = False
    return str(model.config._attn_implementation)


def packed_collator(model: Any, pad_token_id: int, pad_to_multiple_of: int | None = None) -> PackedCollator:
    """Set ``model`` up for packed rows (:func:`prepare_model`) and the collator that matches its attention."""
    flat = prepare_model(model) == FLASH
    return PackedCollator(pad_token_id, flat=flat, pad_to_multiple_of=None if flat else pad_to_multiple_of)


class PackedCollator:
    """Batches packed rows as ``input_ids``, ``labels`` and ``position_ids`` (no attention mask; see the module).

    ``flat``: all packs in one row (flash-attention varlen); otherwise one row per pack, padded on the right to the
    longest (rounded up to ``pad_to_multiple_of``) with ``pad_token_id``, label -100 and position 0.
    """

    def __init__(self, pad_token_id: int, *, flat: bool = False, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.flat = flat
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        columns = {key: [np.asarray(f[key], dtype=np.int64) for f in features] for key in PACKED_COLUMNS}
        for labels, positions in zip(columns["labels"], columns["position_ids"], strict=True):
            labels[positions == 0] = IGNORE_INDEX  # nothing predicts an example's first token
        if self.flat:
            return {key: torch.from_numpy(np.concatenate(rows)[None, :]) for key, rows in columns.items()}
        lengths = np.array([len(row) for row in columns["input_ids"]], dtype=np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        keep = np.arange(width)[None, :] < lengths[:, None]
        batch = {}
        for key, fill in (("input_ids", self.pad_token_id), ("labels", IGNORE_INDEX), ("position_ids", 0)):
            out = np.full((len(features), width), fill, dtype=np.int64)
            out[keep] = np.concatenate(columns[key])
            batch[key] = torch.from_numpy(out)
        return batch
