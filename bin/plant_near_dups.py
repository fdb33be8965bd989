#!/usr/bin/env python
"""Plant near-duplicates of real rows: the test and benchmark data for ``dataprep filter --dedup near``.

Each planted copy of an original canonical record is edited in one of four ways (all seeded, so the same
seed gives the same copies):

- ``format``:  case of some words changed, spaces doubled, line breaks moved (same words);
- ``reorder``: two neighbouring sentences of the longest field swapped;
- ``reword``:  one word in twenty (at least one) replaced by a near-synonym, dropped, or preceded by a filler;
- ``mixed``:   all three, in that order.

Usage: python bin/plant_near_dups.py IN.jsonl OUT.jsonl [--copies-of N] [--seed S]
writes the originals with one planted copy after each of the first N (ids ``<id>~<kind>``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]

SYNONYMS = {
    "the": "this", "a": "one", "is": "was", "and": "plus", "of": "for", "to": "into", "in": "within",
    "you": "one", "can": "could", "will": "would", "use": "employ", "make": "create", "good": "great",
    "large": "big", "small": "little", "number": "value", "list": "array", "function": "method",
    "write": "compose", "give": "provide", "that": "which", "are": "were", "it": "this",
}
FILLERS = ("really", "also", "just", "then", "basically")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
FIELDS = ("prompt", "query", "response")


def reformat(text: str, rng: random.Random) -> str:
    out = []
    for word in text.split(" "):
        roll = rng.random()
        word = word.upper() if roll < 0.1 else word.title() if roll < 0.2 else word
        out.append(word + (" " if rng.random() < 0.1 else ""))
    return " ".join(out).replace("\n", " \n ") + "  "


def reorder(text: str, rng: random.Random) -> str:
    sentences = SENTENCE_END.split(text)
    if len(sentences) < 2:
        return text
    i = rng.randrange(len(sentences) - 1)
    sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
    return " ".join(sentences)


def reword(text: str, rng: random.Random, rate: float = 0.05) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(rate * len(words)))):
        i = rng.randrange(len(words))
        roll = rng.random()
        if words[i].lower() in SYNONYMS and roll < 0.6:
            words[i] = SYNONYMS[words[i].lower()]
        elif roll < 0.8 or len(words) == 1:
            words.insert(i, rng.choice(FILLERS))
        else:
            del words[i]
    return " ".join(words)


EDITS: dict[str, Callable[[str, random.Random], str]] = {
    "format": reformat,
    "reorder": reorder,
    "reword": reword,
    "mixed": lambda text, rng: reformat(reword(reorder(text, rng), rng), rng),
}


def plant(record: Record, kind: str, rng: random.Random) -> Record:
    """A copy of ``record`` with ``kind`` applied: reorder to the longest field, the others to every field."""
    copy = dict(record, id=f"{record['id']}~{kind}")
    longest = max(FIELDS, key=lambda f: len(record.get(f) or ""))
    for name in FIELDS:
        text = record.get(name) or ""
        if not text:
            continue
        if kind == "reorder":
            copy[name] = reorder(text, rng) if name == longest else text
        else:
            copy[name] = EDITS[kind](text, rng)
    return copy


def planted_set(originals: list[Record], copies_of: int, seed: int = 0) -> tuple[list[Record], dict[str, str]]:
    """The originals, each of the first ``copies_of`` followed by one planted copy (kinds in turn), and the
    map copy id -> original id."""
    rng = random.Random(seed)
    kinds = list(EDITS)
    rows: list[Record] = []
    truth: dict[str, str] = {}
    for n, record in enumerate(originals):
        rows.append(record)
        if n < copies_of:
            copy = plant(record, kinds[n % len(kinds)], rng)
            rows.append(copy)
            truth[copy["id"]] = record["id"]
    return rows, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--copies-of", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.input, encoding="utf-8") as f:
        originals = [json.loads(line) for line in f if line.strip()]
    rows, truth = planted_set(originals, args.copies_of, args.seed)
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"wrote {len(rows)} rows ({len(truth)} planted copies) to {args.output}")


if __name__ == "__main__":
    main()
