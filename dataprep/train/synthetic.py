"""Small tokenized datasets in exactly the layout ``dataprep tokenize`` writes, made without it.

The benchmark needs data of a chosen size and length, and the trainer's tests need data whose content they
control (a pattern a tiny model can learn, a tokenizer that deliberately does not match). Rows are
prompt/response pairs: the prompt's tokens unsupervised (-100), the response's and the EOS supervised.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from dataprep.manifest import Manifest, SplitStats, TokenizerFacts, write_manifest

WORDS = ("red", "green", "blue", "black", "white", "small", "large", "quick", "slow", "bright", "dark", "warm",
         "cold", "old", "new", "happy", "quiet", "loud", "river", "mountain", "forest", "city", "garden", "window",
         "table", "letter", "number", "system", "market", "island", "bridge")


def causal_row(tokenizer: Any, prompt: str, response: str, row_id: str) -> dict[str, Any]:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt_ids + response_ids
    return {"id": row_id, "input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [-100] * len(prompt_ids) + response_ids, "length": len(ids)}


def copy_task_rows(tokenizer: Any, n: int, seed: int, min_words: int = 3, max_words: int = 12) -> list[dict]:
    """'repeat: w1 w2 ... =>' then the words again: learnable by a tiny model within a few dozen steps."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))
        rows.append(causal_row(tokenizer, f"repeat: {words} =>", f" {words}", f"{seed}-{i}"))
    return rows


def random_rows(n: int, length: int, vocab_size: int, eos_token_id: int, seed: int) -> list[dict[str, Any]]:
    """Rows of uniformly random ids ending in EOS, all supervised: for throughput, where content is irrelevant."""
    import numpy as np

    ids = np.random.default_rng(seed).integers(0, vocab_size, size=(n, length), dtype=np.int64)
    ids[:, -1] = eos_token_id
    return [{"id": str(i), "input_ids": row.tolist(), "attention_mask": [1] * length, "labels": row.tolist(),
             "length": length} for i, row in enumerate(ids)]


def write_tokenized(out: str | Path, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], *,
                    task: str = "causal", label_names: list[str] | None = None) -> Path:
    """Save ``splits`` with save_to_disk, the tokenizer in ``tokenizer/`` and a ``dataprep.json`` manifest."""
    import datasets

    root = Path(out)
    datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(
        str(root))
    tokenizer.save_pretrained(str(root / "tokenizer"))
    stats = {}
    for name, rows in splits.items():
        tokens = sum(len(r["input_ids"]) for r in rows)
        supervised = (sum(sum(1 for x in r["labels"] if x != -100) for r in rows) if task == "causal"
                      else None)
        stats[name] = SplitStats(rows=len(rows), tokens=tokens, supervised_tokens=supervised)
    manifest = Manifest(
        task=task,
        tokenizer=TokenizerFacts(len=len(tokenizer), vocab_size=tokenizer.vocab_size,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                 bos_token_id=tokenizer.bos_token_id, class_name=type(tokenizer).__name__),
        splits=stats,
        labels={"names": list(label_names or [])} if task == "classification" else None,
    )
    write_manifest(root, manifest)
    return root
