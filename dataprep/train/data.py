"""Loading what ``dataprep tokenize`` wrote, exactly as it is: the Arrow splits, the manifest and the tokenizer.

The trainer redoes nothing of the data path. Everything it must know about the data (task, tokenizer size and
special ids, label names) comes from ``dataprep.json``; a dataset without one is refused rather than guessed at,
because a guess about the tokenizer is how a model silently trains on the wrong ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError, InputError
from dataprep.manifest import MANIFEST, Manifest, load_manifest

REQUIRED_COLUMNS = ("input_ids", "attention_mask", "labels")
PACKED_COLUMNS = ("input_ids", "labels", "position_ids")  # dataprep pack: no attention_mask (dataprep.pack)
EVAL_SPLITS = ("validation", "dev", "eval")


@dataclass
class TokenizedData:
    """A tokenized dataset folder: its splits (``datasets.DatasetDict``), manifest and tokenizer location."""

    path: Path
    manifest: Manifest
    splits: Any
    task: str
    tokenizer_dir: Path
    label_names: list[str] = field(default_factory=list)

    @property
    def tokenizer_len(self) -> int:
        return self.manifest.tokenizer.len

    @property
    def pad_token_id(self) -> int | None:
        return self.manifest.tokenizer.pad_token_id

    @property
    def packed(self) -> bool:
        return self.manifest.packing is not None

    @property
    def eval_split(self) -> str | None:
        return next((name for name in EVAL_SPLITS if name in self.splits), None)

    def max_length(self) -> int:
        """The longest row of any split, so a model built from a config has room for every row."""
        longest = 0
        for name in self.splits:
            ds = self.splits[name]
            if len(ds) == 0:
                continue
            if "length" in ds.column_names:
                longest = max(longest, max(ds["length"]))
            else:
                import pyarrow.compute as pc

                longest = max(longest, pc.max(pc.list_value_length(ds.data.column("input_ids"))).as_py())
        return longest


def load_tokenized(path: str | Path) -> TokenizedData:
    """Open ``path`` memory-mapped and check it has what training needs; refuse with one line otherwise."""
    import datasets

    root = Path(path)
    if not root.is_dir():
        raise InputError(str(root), "no such dataset folder")
    manifest = load_manifest(root)
    task = manifest.task
    tokenizer_dir = root / "tokenizer"
    if not tokenizer_dir.is_dir():
        raise DataprepError(f"{root}: no tokenizer/ folder beside the manifest; re-run dataprep tokenize")
    try:
        splits = datasets.load_from_disk(str(root))
    except (FileNotFoundError, ValueError) as exc:
        raise DataprepError(f"{root}: cannot load the saved dataset: {exc}") from None
    if not isinstance(splits, datasets.DatasetDict):
        splits = datasets.DatasetDict({"train": splits})
    if "train" not in splits or len(splits["train"]) == 0:
        raise DataprepError(f"{root}: no rows in a 'train' split (splits: {', '.join(splits) or 'none'})")
    required = PACKED_COLUMNS if manifest.packing is not None else REQUIRED_COLUMNS
    for name in splits:
        missing = [c for c in required if c not in splits[name].column_names]
        if missing:
            raise DataprepError(f"{root}: split {name!r} lacks column(s) {', '.join(missing)} for task {task}")
    names = manifest.label_names
    if task == "classification" and not names:
        raise DataprepError(f"{root / MANIFEST}: a classification dataset needs labels.names in its manifest")
    return TokenizedData(root, manifest, splits, task, tokenizer_dir, names)
