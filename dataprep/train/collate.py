"""Dynamic padding of tokenized rows into a batch.

Rows are padded on the right to the longest row in the batch (optionally rounded up to a multiple, which GPUs
like). Which positions are padding is known from each row's length, never from token ids: when pad == eos, a
real end-of-sequence token keeps its label and attention, and only the added positions get label -100 and
attention 0. Columns the model does not take (``id``, ``length``) are left out here, so the Trainer can keep
them in the dataset for ``--group-by-length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100
SEQUENCE_PAD = {"input_ids": None, "attention_mask": 0, "labels": IGNORE_INDEX, "token_type_ids": 0}


class PadCollator:
    """Pads ``input_ids`` with ``pad_token_id``, ``labels`` with -100, ``attention_mask``/``token_type_ids`` with 0.

    Integer ``labels`` (one class per row) are stacked, not padded.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = np.array([len(f["input_ids"]) for f in features], dtype=np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        keep = np.arange(width)[None, :] < lengths[:, None]
        batch: dict[str, torch.Tensor] = {}
        for key, pad in SEQUENCE_PAD.items():
            if key not in features[0]:
                continue
            if key == "labels" and np.ndim(features[0]["labels"]) == 0:
                batch[key] = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
                continue
            fill = self.pad_token_id if pad is None else pad
            out = np.full((len(features), width), fill, dtype=np.int64)
            out[keep] = np.concatenate([np.asarray(f[key], dtype=np.int64) for f in features])
            batch[key] = torch.from_numpy(out)
        if "attention_mask" not in batch:
            batch["attention_mask"] = torch.from_numpy(keep.astype(np.int64))
        return batch
