"""Show tokenized rows as text with the supervised tokens marked, so a wrong mask is seen, not trained.

Each row is cut into runs of tokens that are all supervised or all not, and each run is decoded on its own
(special tokens kept): supervised runs are wrapped in ``[[...]]``, or coloured on a terminal. A character whose
bytes fall on both sides of a boundary shows as U+FFFD in both runs; the ids themselves are exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.errors import InputError, UsageProblem
from dataprep.manifest import TOKENIZER_DIR, Manifest, load_manifest
from dataprep.tokenize.layout import IGNORE_INDEX

OPEN, CLOSE = "[[", "]]"
GREEN, RESET = "\x1b[1;32m", "\x1b[0m"


@dataclass
class Tokenized:
    """A folder written by ``dataprep tokenize``: the datasets, its tokenizer and its manifest."""

    datasets: Any
    tokenizer: Any
    manifest: Manifest


def load_tokenized(outdir: str) -> Tokenized:
    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(outdir, "no such folder")
    manifest = load_manifest(folder)
    from datasets import load_from_disk

    from dataprep.tokenizer_io import open_tokenizer

    return Tokenized(load_from_disk(str(folder)), open_tokenizer(str(folder / TOKENIZER_DIR)), manifest)


def pick_rows(n_rows: int, *, index: int | None = None, sample: int | None = None, seed: int = 0,
              head: int = 3) -> list[int]:
    """Which rows to show: one index, a seeded sample (sorted), or the first ``head``."""
    if index is not None:
        if not -n_rows <= index < n_rows:
            raise UsageProblem(f"--index {index} is out of range: the split has {n_rows} rows")
        return [index % n_rows]
    if sample is not None:
        return sorted(random.Random(seed).sample(range(n_rows), min(sample, n_rows)))
    return list(range(min(head, n_rows)))


def runs(flags: np.ndarray) -> list[tuple[int, int, bool]]:
    """Maximal [start, end) runs of equal flags."""
    if not len(flags):
        return []
    edges = np.flatnonzero(np.diff(flags.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(flags)]
    return [(a, b, bool(flags[a])) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def show_row(row: dict[str, Any], tokenizer: Any, *, color: bool, label_names: list[str] | None = None) -> str:
    """A row as marked text; for classification rows, the decoded input and the label name."""
    ids = np.asarray(row["input_ids"])
    labels = row.get("labels")
    if labels is None or np.ndim(labels) == 0:
        text = tokenizer.decode(ids.tolist(), skip_special_tokens=False)
        if labels is not None:
            name = label_names[int(labels)] if label_names else str(labels)
            return f"label: {labels} ({name})\n{text}"
        return text
    flags = np.asarray(labels) != IGNORE_INDEX
    parts = []
    for a, b, supervised in runs(flags):
        piece = tokenizer.decode(ids[a:b].tolist(), skip_special_tokens=False)
        if supervised:
            piece = f"{GREEN}{piece}{RESET}" if color else f"{OPEN}{piece}{CLOSE}"
        parts.append(piece)
    return "".join(parts)


def header(split: str, index: int, row: dict[str, Any]) -> str:
    n = len(row["input_ids"])
    parts = [f"=== {split}[{index}]", f"id={row.get('id', '')}", f"length={n}"]
    labels = row.get("labels")
    if labels is not None and np.ndim(labels) == 1:
        k = int((np.asarray(labels) != IGNORE_INDEX).sum())
        parts.append(f"supervised={k} ({100 * k / n if n else 0:.1f}%)")
    return " ".join(parts)


def inspect_rows(tokenized: Tokenized, *, split: str | None = None, index: int | None = None,
                 sample: int | None = None, seed: int = 0, color: bool = False) -> Iterator[str]:
    """Blocks of text, one per chosen row: a header line, then the marked row."""
    splits = list(tokenized.datasets)
    name = split or ("train" if "train" in splits else splits[0])
    if name not in splits:
        raise UsageProblem(f"no split {name!r}; this folder has {', '.join(splits)}")
    data = tokenized.datasets[name]
    label_names = tokenized.manifest.label_names or None
    for i in pick_rows(len(data), index=index, sample=sample, seed=seed):
        row = data[i]
        yield header(name, i, row) + "\n" + show_row(row, tokenized.tokenizer, color=color,
                                                     label_names=label_names)
