"""Shared by the interop tests: a real ``dataprep tokenize`` folder in each layout, a tiny model for it, and an
independent check of a whole epoch of batches (not the guard's code, so the guard is tested against it).
The fixtures built from these are in ``tests/interop_fixtures.py``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES, invoke

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"


def tokenize_folder(out: Path, source: Path, tokenizer: Path, *extra: object) -> Path:
    """normalize → split (10% validation, seed 0) → tokenize, through the CLI, as a user would."""
    normalized = invoke("normalize", source, "-q")
    assert normalized.exit_code == 0, normalized.stderr
    split = invoke("split", "-", "--val-size", "0.1", "--seed", "0", "-q", input=normalized.stdout)
    assert split.exit_code == 0, split.stderr
    result = invoke("tokenize", "-", "-o", out, "--tokenizer", tokenizer, "-q", *extra, input=split.stdout)
    assert result.exit_code == 0, result.stderr
    return out


def tiny_model_dir(folder: Path, out: Path) -> Path:
    """A random tiny Llama sized to the folder's tokenizer, saved with that tokenizer, as a 'model' to load."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from dataprep.train.model import tiny_causal_config

    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_causal_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                        bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def layout_of(folder: Path, target: str) -> Path:
    from dataprep.emit import convert_folder

    out = folder.parent / target
    return out if out.exists() else convert_folder(folder, out, target)


def split_rows(folder: Path, split: str = "train") -> list[dict[str, Any]]:
    import datasets

    return list(datasets.load_from_disk(str(folder))[split])


def sequences(batch: dict[str, Any]) -> list[tuple[tuple[int, ...], list[int]]]:
    """(input_ids, labels) of each sequence of a batch: by attention mask when there is one, else by restarts of
    position_ids (padding-free and packed batches)."""
    ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    mask = batch.get("attention_mask")
    pos = batch.get("position_ids")
    out = []
    for b, row in enumerate(ids):
        if mask is not None and mask.dim() == 2:
            keep = [i for i, m in enumerate(mask[b].tolist()) if m]
            out.append((tuple(row[i] for i in keep), [labels[b][i] for i in keep]))
            continue
        starts = [i for i, p in enumerate(pos[b].tolist()) if p == 0] + [len(row)]
        out += [(tuple(row[s:e]), labels[b][s:e]) for s, e in zip(starts[:-1], starts[1:], strict=True)]
    return out


def epoch_report(folder: Path, batches: Any, split: str = "train") -> dict[str, int]:
    """Hold every batch of an epoch against the split, row by row: which rows came whole, once, with the same
    targets (labels[1:]), and how many supervised targets the batches carry against the dataset's."""
    rows = split_rows(folder, split)
    expected = {tuple(r["input_ids"]): r["labels"] for r in rows}
    counts = Counter(tuple(r["input_ids"]) for r in rows)  # a dataset may hold the same row twice
    seen: Counter[tuple[int, ...]] = Counter()
    report = {"rows": len(rows), "targets": sum(sum(x != -100 for x in r["labels"][1:]) for r in rows),
              "trained": 0, "whole": 0, "equal": 0, "other": 0}
    for batch in batches:
        for ids, labels in sequences(batch):
            supervised = sum(x != -100 for x in labels[1:])
            report["trained"] += supervised
            if ids in expected:
                seen[ids] += 1
                report["whole"] += 1
                report["equal"] += labels[1:] == expected[ids][1:]
            elif supervised:
                report["other"] += 1
    report["as_often"] = sum(min(seen[ids], n) for ids, n in counts.items())  # rows seen as often as they exist
    return report


def assert_exact(report: dict[str, int]) -> None:
    assert report["whole"] == report["as_often"] == report["equal"] == report["rows"], report
    assert report["trained"] == report["targets"] and report["other"] == 0, report
