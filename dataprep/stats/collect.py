"""Per-row measures of a dataset, gathered split by split, and the summary that every report is drawn from.

Three kinds of input, told apart by what is there:

- **records**: any file dataprep reads (or ``-``). Canonical records are measured as they are; rows in
  another format (alpaca, ShareGPT, messages) are normalized first, and rows that cannot be are counted as
  rejected. Characters are counted per side: the *prompt* is the system prompt and every user-side turn, the
  *response* every assistant-side turn. With ``tokenizer``, the same two texts are also counted in tokens
  (plain text, without chat-template markup).
- **tokenized**: a ``dataprep tokenize`` folder (``dataprep.json`` + Arrow splits). Tokens come from
  ``input_ids``; the response is the supervised tokens (``labels != -100``), the prompt the rest (template
  markup included). Truncations and rejects come from the manifest.
- **packed**: a folder whose rows carry ``seq_lengths`` (``dataprep pack``). Each packed row is cut back into
  its original rows for the length figures, and the packing efficiency is real tokens / (rows x max length).

Everything is read in batches; per split, a few ``int32`` arrays (one value per row) are kept for exact
percentiles and histograms.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.errors import DataprepError
from dataprep.manifest import MANIFEST, split_order
from dataprep.records import Record

NO_SPLIT = "all"
TOKEN_BUCKETS = (0, 128, 256, 512, 1024, 2048, 4096, 8192)
HIST_STEPS = 4  # histogram bins per doubling of length


@dataclass
class SplitMeasures:
    """Per-row measures of one split, appended batch by batch."""

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    buckets: Counter[Any] = field(default_factory=Counter)
    turns: Counter[int] = field(default_factory=Counter)
    duplicates: int = 0

    def add(self, name: str, values: Any) -> None:
        self.columns.setdefault(name, []).append(np.asarray(values, dtype=np.int64))

    def column(self, name: str) -> np.ndarray | None:
        parts = self.columns.get(name)
        return np.concatenate(parts) if parts else None

    @property
    def rows(self) -> int:
        for name in ("total_tokens", "total_chars"):
            if name in self.columns:
                return sum(len(p) for p in self.columns[name])
        return 0


def histogram_edges(high: int) -> list[int]:
    """Bin edges 0, 1, then ``HIST_STEPS`` per doubling, up to past ``high``: even bars on a log axis."""
    edges = [0, 1]
    k = 1
    while edges[-1] <= high:
        edge = round(2 ** (k / HIST_STEPS))
        if edge > edges[-1]:
            edges.append(edge)
        k += 1
    return edges


def summarize(values: np.ndarray, edges: list[int]) -> dict[str, Any]:
    """Exact count, total, mean, percentiles and histogram counts on shared ``edges`` (bin i: edges[i] up to,
    not including, edges[i + 1]; the last bin includes its upper edge)."""
    if not len(values):
        return {"rows": 0}
    counts, _ = np.histogram(values, bins=edges)
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99], method="lower"))
    return {"rows": int(len(values)), "total": int(values.sum()), "mean": round(float(values.mean()), 2),
            "min": int(values.min()), "p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(values.max()),
            "hist": counts.tolist()}


# ---------------------------------------------------------------- records ---

def _sides(record: Record) -> tuple[int, int, int]:
    """Characters of the prompt side and of the response side, and the number of exchanges."""
    from dataprep.records import user_text

    history = record.get("history") or []
    prompt = len(record.get("prefix") or "") + len(user_text(record))
    response = len(record.get("response") or "")
    for pair in history:
        prompt += len(pair[0]) if pair else 0
        response += len(pair[1]) if len(pair) > 1 else 0
    return prompt, response, len(history) + 1


def _side_texts(record: Record) -> tuple[str, str]:
    from dataprep.records import user_text

    history = record.get("history") or []
    prompt = "\n".join([record.get("prefix") or "", *(p[0] for p in history if p), user_text(record)])
    response = "\n".join([*(p[1] for p in history if len(p) > 1), record.get("response") or ""])
    return prompt, response


def is_canonical(record: Record) -> bool:
    return "response" in record and "prompt" in record


def canonical_batches(path: str, input_format: str | None, rejected: Counter[str]) -> Iterator[list[Record]]:
    """Batches of canonical records; other formats are normalized (auto-detected), failures counted."""
    from dataprep.io import read_batches
    from dataprep.normalize import NormalizeOptions, normalize_batch

    options: NormalizeOptions | None = None
    for batch in read_batches(path, fmt=input_format):
        records = batch.records
        if options is None and records and not is_canonical(records[0]):
            options = NormalizeOptions().resolved(records[0])
        if options is not None:
            records, bad = normalize_batch(records, options)
            rejected.update(r.reason for r in bad)
        yield records


class _Copies:
    """Counts rows whose content was seen before: within the same split (``duplicates``) or in another one."""

    def __init__(self) -> None:
        self._seen: dict[bytes, str] = {}
        self.across_splits = 0

    def _count_copy(self, key: bytes, name: str, split: SplitMeasures) -> None:
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = name
        elif first == name:
            split.duplicates += 1
        else:
            self.across_splits += 1


class RecordStats(_Copies):
    """Measures canonical records; ``tokenizer`` (a fast tokenizer) adds token counts."""

    def __init__(self, tokenizer: Any = None) -> None:
        super().__init__()
        self.splits: dict[str, SplitMeasures] = {}
        self.tokenizer = tokenizer
        self.has_bucket_field = False

    def add(self, records: list[Record]) -> None:
        from dataprep.filter import content_key
        from dataprep.split import len_bucket

        groups: dict[str, list[Record]] = {}
        for record in records:
            groups.setdefault(str(record.get("split") or NO_SPLIT), []).append(record)
        for name, rows in groups.items():
            split = self.splits.setdefault(name, SplitMeasures())
            sides = np.array([_sides(r) for r in rows], dtype=np.int64).reshape(-1, 3)
            split.add("prompt_chars", sides[:, 0])
            split.add("response_chars", sides[:, 1])
            split.add("total_chars", sides[:, 0] + sides[:, 1])
            split.turns.update(sides[:, 2].tolist())
            for r in rows:
                bucket = r.get("len_bucket")
                if isinstance(bucket, int):
                    self.has_bucket_field = True
                else:
                    bucket = len_bucket(r)
                split.buckets[bucket] += 1
                self._count_copy(content_key(r), name, split)
            if self.tokenizer is not None:
                texts = [_side_texts(r) for r in rows]
                backend = self.tokenizer._tokenizer  # the Rust tokenizer (transformers and the light loader alike)
                prompt = [len(e.ids) for e in backend.encode_batch([t[0] for t in texts], add_special_tokens=False)]
                response = [len(e.ids) for e in backend.encode_batch([t[1] for t in texts], add_special_tokens=False)]
                split.add("prompt_tokens", prompt)
                split.add("response_tokens", response)
                split.add("total_tokens", np.add(prompt, response))


# ------------------------------------------------------ tokenized / packed ---

def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        value = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataprepError(f"{folder / MANIFEST}: cannot read the manifest: {exc}") from None
    if not isinstance(value, dict):
        raise DataprepError(f"{folder / MANIFEST}: not a JSON object")
    return value


def arrow_splits(folder: Path) -> dict[str, list[Path]]:
    """The Arrow files of each split of a ``save_to_disk`` folder, splits in the usual order."""
    listing = folder / "dataset_dict.json"
    if listing.is_file():
        names = json.loads(listing.read_text(encoding="utf-8"))["splits"]
        parts = {name: folder / name for name in names}
    elif (folder / "state.json").is_file():
        parts = {NO_SPLIT: folder}
    else:
        raise DataprepError(f"{folder}: no dataset_dict.json or state.json; not a dataset folder")
    out = {}
    for name in split_order(list(parts)):
        state = json.loads((parts[name] / "state.json").read_text(encoding="utf-8"))
        out[name] = [parts[name] / f["filename"] for f in state["_data_files"]]
    return out


def arrow_batches(files: list[Path], columns: list[str]) -> Iterator[Any]:
    import pyarrow as pa

    for path in files:
        with pa.memory_map(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                yield batch.select([c for c in columns if c in batch.schema.names])


def _flat(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (flat values, offsets into them)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False)
    return values[offsets[0]:offsets[-1]], offsets - offsets[0]


def _segment_sums(flags: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of ``flags`` over each [start, end)."""
    totals = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    return totals[ends] - totals[starts]


def segments(offsets: np.ndarray, seq: np.ndarray | None, seq_offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of each original row in the flat token array: the rows themselves, or, for packed rows,
    the ``seq_lengths`` runs laid one after another from each packed row's start (padding left out)."""
    if seq is None or seq_offsets is None:
        return offsets[:-1], offsets[1:]
    seq = seq.astype(np.int64)
    pack_of = np.repeat(np.arange(len(seq_offsets) - 1), np.diff(seq_offsets))
    before = np.cumsum(seq) - seq
    starts = offsets[pack_of] + before - before[seq_offsets[pack_of]]
    return starts, starts + seq


def supervised_runs(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many separate supervised runs (assistant turns, as trained) each row has."""
    first = mask.copy()
    first[1:] &= ~mask[:-1]
    inside = starts[starts < ends]
    first[inside] = mask[inside]
    return _segment_sums(first, starts, ends)


def _token_bucket(length: int) -> str:
    for low, high in zip(TOKEN_BUCKETS, TOKEN_BUCKETS[1:], strict=False):
        if length < high:
            return f"{low}-{high - 1}"
    return f"{TOKEN_BUCKETS[-1]}+"


class TokenStats(_Copies):
    """Measures the Arrow splits of a tokenized or packed folder, column by column."""

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.splits: dict[str, SplitMeasures] = {}
        self.ignore_index = ignore_index
        self.packing: dict[str, Any] | None = None
        self.task = "causal"

    def add_split(self, name: str, files: list[Path]) -> None:
        import hashlib

        split = self.splits.setdefault(name, SplitMeasures())
        for batch in arrow_batches(files, ["input_ids", "labels", "seq_lengths"]):
            names = batch.schema.names
            ids, offsets = _flat(batch.column("input_ids"))
            seq = seq_offsets = None
            if "seq_lengths" in names:
                seq, seq_offsets = _flat(batch.column("seq_lengths"))
                self._add_packs(seq.astype(np.int64), seq_offsets, offsets)
            starts, ends = segments(offsets, seq, seq_offsets)
            lengths = ends - starts
            split.add("total_tokens", lengths)
            labels = batch.column("labels") if "labels" in names else None
            if labels is not None and hasattr(labels.type, "value_type"):
                mask = _flat(labels)[0] != self.ignore_index
                supervised = _segment_sums(mask, starts, ends)
                split.add("response_tokens", supervised)
                split.add("prompt_tokens", lengths - supervised)
                split.turns.update(supervised_runs(mask, starts, ends).tolist())
            else:
                self.task = "classification"
            split.buckets.update(_token_bucket(n) for n in lengths.tolist())
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                self._count_copy(hashlib.blake2b(ids[a:b].tobytes(), digest_size=16).digest(), name, split)

    def _add_packs(self, seq: np.ndarray, seq_offsets: np.ndarray, offsets: np.ndarray) -> None:
        packs = self.packing or {"rows": 0, "sequences": 0, "real_tokens": 0, "longest": 0, "per_pack": Counter()}
        per_pack = np.diff(seq_offsets)
        packs["rows"] += len(per_pack)
        packs["sequences"] += int(per_pack.sum())
        packs["real_tokens"] += int(seq.sum())
        packs["longest"] = max(packs["longest"], int(np.diff(offsets).max(initial=0)))
        packs["per_pack"].update(per_pack.tolist())
        self.packing = packs
