"""Dynamic padding of tokenized rows into a batch, for plain rows and for packed ones.

Rows are padded on the right to the longest row in the batch (optionally rounded up to a multiple, which GPUs
like). Which positions are padding is known from each row's length, never from token ids: when pad == eos, a
real end-of-sequence token keeps its label and attention, and only the added positions get label -100 and
attention 0. Columns the model does not take (``id``, ``length``) are left out here, so the Trainer can keep
them in the dataset for ``--group-by-length``.

Packed rows (several original rows in one, marked by ``position_ids`` that restart at 0 or by ``seq_lengths``)
are given to the model as ``position_ids`` and *no* ``attention_mask``: that is the form in which transformers
(>= 5) finds the packed sequences itself and keeps them apart, with a varlen kernel under flash-attention and a
block-diagonal mask under SDPA or eager. An all-ones attention mask would instead let each row attend to the rows
packed before it. Padding after a packed row gets positions 0, 1, ... of its own, so it is a sequence of its own
too. The label at each sequence's first position becomes -100: inside a pack that target would be predicted
from the previous row's last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100
SEQUENCE_PAD = {"input_ids": None, "attention_mask": 0, "labels": IGNORE_INDEX, "token_type_ids": 0}


def packed_positions(feature: dict[str, Any]) -> np.ndarray | None:
    """A row's ``position_ids`` if it is packed (given, or built from ``seq_lengths``); ``None`` if it is not."""
    if "position_ids" in feature:
        return np.asarray(feature["position_ids"], dtype=np.int64)
    if "seq_lengths" in feature:
        lengths = np.asarray(feature["seq_lengths"], dtype=np.int64)
        return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return None


class PadCollator:
    """Pads ``input_ids`` with ``pad_token_id``, ``labels`` with -100, ``attention_mask``/``token_type_ids`` with 0;
    packed rows get ``position_ids`` instead of an attention mask.

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
        positions = [packed_positions(f) for f in features]
        packed = any(p is not None for p in positions)
        batch: dict[str, torch.Tensor] = {}
        for key, pad in SEQUENCE_PAD.items():
            if key not in features[0] or (packed and key == "attention_mask"):
                continue
            if key == "labels" and np.ndim(features[0]["labels"]) == 0:
                batch[key] = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
                continue
            fill = self.pad_token_id if pad is None else pad
            out = np.full((len(features), width), fill, dtype=np.int64)
            out[keep] = np.concatenate([np.asarray(f[key], dtype=np.int64) for f in features])
            batch[key] = torch.from_numpy(out)
        if packed:
            # padding continues as a sequence of its own: 0, 1, ... after each row's end
            pos = np.arange(width)[None, :] - lengths[:, None]
            pos[keep] = np.concatenate([p if p is not None else np.arange(n)
                                        for p, n in zip(positions, lengths, strict=True)])
            batch["position_ids"] = torch.from_numpy(pos)
            if "labels" in batch and batch["labels"].dim() == 2:
                batch["labels"][batch["position_ids"] == 0] = IGNORE_INDEX
        elif "attention_mask" not in batch:
            batch["attention_mask"] = torch.from_numpy(keep.astype(np.int64))
        return batch
