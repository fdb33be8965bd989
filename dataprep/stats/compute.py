"""``compute_stats``: read a dataset once (twice for leakage in a records file) and return the report as a
JSON-able dict, the one source of the text report, the JSON output, the HTML page and the PNG plots."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dataprep.decontam import DEFAULT_NGRAM
from dataprep.dedup import DEFAULT_THRESHOLD
from dataprep.errors import DataprepError
from dataprep.manifest import MANIFEST, TOKENIZER_DIR, split_order
from dataprep.stats.collect import (
    NO_SPLIT,
    TOKEN_BUCKETS,
    RecordStats,
    SplitMeasures,
    TokenStats,
    arrow_batches,
    arrow_splits,
    canonical_batches,
    histogram_edges,
    read_manifest,
    segments,
    summarize,
)
from dataprep.stats.leakage import HeldOut

TRAIN = "train"
SIDES = (("prompt", "prompt"), ("response", "response"), ("whole", "total"))
Progress = Callable[[int], None]


def compute_stats(
    source: str,
    *,
    tokenizer: str | None = None,
    input_format: str | None = None,
    leakage: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    ngram: int = DEFAULT_NGRAM,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Everything ``dataprep stats`` reports about ``source`` (a records file, ``-``, or a dataset folder)."""
    folder = Path(source)
    if source != "-" and folder.is_dir() and (folder / MANIFEST).is_file():
        return _folder_stats(folder, leakage=leakage, threshold=threshold, ngram=ngram, progress=progress)
    if source == "-":
        with tempfile.TemporaryDirectory(prefix="dataprep-stats-") as tmp:
            spool = Path(tmp) / "stdin"
            with open(spool, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out)
            return _records_stats(str(spool), "<stdin>", tokenizer=tokenizer, input_format=input_format,
                                  leakage=leakage, threshold=threshold, ngram=ngram, progress=progress)
    return _records_stats(source, source, tokenizer=tokenizer, input_format=input_format, leakage=leakage,
                          threshold=threshold, ngram=ngram, progress=progress)


def record_segments(record: dict[str, Any]) -> list[str]:
    """A record's text as leakage sees it: the system prompt, then each turn, oldest first."""
    from dataprep.records import user_text

    turns = [str(t) for pair in record.get("history") or [] for t in pair]
    return [record.get("prefix") or "", *turns, user_text(record), record.get("response") or ""]


def _records_stats(path: str, name: str, *, tokenizer: str | None, input_format: str | None, leakage: bool,
                   threshold: float, ngram: int, progress: Progress | None) -> dict[str, Any]:
    tok = None
    if tokenizer is not None:
        from dataprep.tokenizer_io import open_tokenizer

        tok = open_tokenizer(tokenizer)
    stats = RecordStats(tok)
    rejected: Counter[str] = Counter()
    held = HeldOut(threshold, ngram) if leakage else None
    for records in canonical_batches(path, input_format, rejected):
        stats.add(records)
        if held is not None:
            out = [r for r in records if str(r.get("split") or NO_SPLIT) not in (TRAIN, NO_SPLIT)]
            for split in sorted({str(r["split"]) for r in out}):
                rows = [r for r in out if str(r["split"]) == split]
                held.add(split, [str(r.get("id", "")) for r in rows], [record_segments(r) for r in rows])
        if progress:
            progress(len(records))
    leak: dict[str, Any] | None = None
    if held is not None:
        leak = _leak_skip(stats.splits)
        if leak is None:
            for records in canonical_batches(path, input_format, Counter()):
                train = [r for r in records if str(r.get("split") or NO_SPLIT) == TRAIN]
                held.check([str(r.get("id", "")) for r in train], [record_segments(r) for r in train])
            leak = held.summary()
    report = _summary(stats.splits, units=("chars", "tokens") if tok is not None else ("chars",))
    report["input"] = {"path": name, "kind": "records", "task": "causal",
                       "tokenizer": tokenizer}
    report["buckets"] = _buckets(stats.splits, "len_bucket" if stats.has_bucket_field else "len_bucket (computed)",
                                 sorted({b for s in stats.splits.values() for b in s.buckets}))
    report["supervised"] = _supervised(stats.splits, "tokens" if tok is not None else "chars")
    report["truncated"] = None
    report["rejected"] = {"source": "normalize", "reasons": dict(sorted(rejected.items()))} if rejected else None
    report["duplicates"] = _duplicates(stats.splits, stats.across_splits)
    report["mixture"] = None
    report["packing"] = None
    report["leakage"] = leak
    return _ordered(report)


def _folder_stats(folder: Path, *, leakage: bool, threshold: float, ngram: int,
                  progress: Progress | None) -> dict[str, Any]:
    from dataprep.tokenize import IGNORE_INDEX

    manifest = read_manifest(folder)
    files = arrow_splits(folder)
    stats = TokenStats(IGNORE_INDEX)
    for name, paths in files.items():
        stats.add_split(name, paths)
        if progress:
            progress(stats.splits[name].rows)
    report = _summary(stats.splits, units=("tokens",))
    packed = stats.packing is not None
    report["input"] = {"path": str(folder), "kind": "packed" if packed else "tokenized",
                       "task": manifest.get("task", stats.task), "tokenizer": str(folder / TOKENIZER_DIR)}
    report["buckets"] = _buckets(stats.splits, "tokens", [_label(i) for i in range(len(TOKEN_BUCKETS))])
    report["supervised"] = _supervised(stats.splits, "tokens") if stats.task != "classification" else None
    report["truncated"] = {name: int(s.get("truncated", 0)) for name, s in (manifest.get("splits") or {}).items()}
    reasons = manifest.get("rejected") or {}
    report["rejected"] = {"source": "manifest", "reasons": dict(reasons)} if reasons else None
    report["duplicates"] = _duplicates(stats.splits, stats.across_splits)
    report["mixture"] = manifest.get("mixture")
    report["packing"] = _packing(stats.packing, manifest) if packed else None
    report["leakage"] = None
    if leakage:
        report["leakage"] = _leak_skip(stats.splits) or _folder_leakage(folder, files, threshold, ngram)
    return _ordered(report)


def _label(i: int) -> str:
    low = TOKEN_BUCKETS[i]
    return f"{low}-{TOKEN_BUCKETS[i + 1] - 1}" if i + 1 < len(TOKEN_BUCKETS) else f"{low}+"


def _leak_skip(splits: dict[str, SplitMeasures]) -> dict[str, Any] | None:
    if TRAIN not in splits:
        return {"skipped": "no train split"}
    if not any(name not in (TRAIN, NO_SPLIT) for name in splits):
        return {"skipped": "no held-out split"}
    return None


def _decoded(folder: Path, files: list[Path]) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(ids, segments) of a tokenized split's rows (packed rows cut into their originals): each row's text
    between special tokens, decoded, so that template markers neither count as text nor join two turns."""
    from tokenizers import Tokenizer

    from dataprep.stats.collect import _flat

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_DIR / "tokenizer.json"))
    special = np.array([i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special], dtype=np.int64)
    index = 0
    for batch in arrow_batches(files, ["id", "input_ids", "seq_lengths"]):
        ids, offsets = _flat(batch.column("input_ids"))
        seq = seq_offsets = None
        if "seq_lengths" in batch.schema.names:
            seq, seq_offsets = _flat(batch.column("seq_lengths"))
        starts, ends = segments(offsets, seq, seq_offsets)
        cuts = np.flatnonzero(np.isin(ids, special))
        pieces: list[list[int]] = []
        owner: list[int] = []
        for row, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            inner = cuts[(cuts >= a) & (cuts < b)].tolist()
            for lo, hi in zip([a, *(c + 1 for c in inner)], [*inner, b], strict=True):
                if hi > lo:
                    pieces.append(ids[lo:hi].tolist())
                    owner.append(row)
        texts = tokenizer.decode_batch(pieces, skip_special_tokens=True) if pieces else []
        rows: list[list[str]] = [[] for _ in range(len(starts))]
        for row, text in zip(owner, texts, strict=True):
            rows[row].append(text)
        if "id" in batch.schema.names and seq is None:
            names = [str(i) for i in batch.column("id").to_pylist()]
        else:
            names = [f"#{index + i}" for i in range(len(rows))]
        index += len(rows)
        yield names, rows


def _folder_leakage(folder: Path, files: dict[str, list[Path]], threshold: float, ngram: int) -> dict[str, Any]:
    if not (folder / TOKENIZER_DIR / "tokenizer.json").is_file():
        return {"skipped": f"no {TOKENIZER_DIR}/tokenizer.json to decode the rows"}
    held = HeldOut(threshold, ngram)
    for name, paths in files.items():
        if name != TRAIN:
            for ids, texts in _decoded(folder, paths):
                held.add(name, ids, texts)
    for ids, texts in _decoded(folder, files[TRAIN]):
        held.check(ids, texts)
    return held.summary()


def _summary(splits: dict[str, SplitMeasures], units: tuple[str, ...]) -> dict[str, Any]:
    order = split_order(list(splits))
    total = sum(splits[s].rows for s in order)
    report: dict[str, Any] = {
        "rows": total,
        "splits": {s: {"rows": splits[s].rows, "share": round(splits[s].rows / total, 4) if total else 0.0}
                   for s in order},
        "length": {},
    }
    for unit in units:
        per_side: dict[str, Any] = {}
        for side, column in SIDES:
            values = {s: splits[s].column(f"{column}_{unit}") for s in order}
            present = [v for v in values.values() if v is not None and len(v)]
            if not present:
                continue
            edges = histogram_edges(int(max(v.max() for v in present)))
            per_side[side] = {"edges": edges,
                              "splits": {s: summarize(v, edges) for s, v in values.items() if v is not None}}
        if per_side:
            report["length"][unit] = per_side
    report["turns"] = {}
    for s in order:
        counts = splits[s].turns
        if counts:
            n = sum(counts.values())
            report["turns"][s] = {"counts": {str(k): counts[k] for k in sorted(counts)},
                                  "mean": round(sum(k * v for k, v in counts.items()) / n, 3)}
    return report


def _buckets(splits: dict[str, SplitMeasures], by: str, labels: list[Any]) -> dict[str, Any]:
    """Rows per bucket and split; token buckets past the last one used are left out."""
    used = [i for i, b in enumerate(labels) if any(s.buckets.get(b) for s in splits.values())]
    labels = labels[: used[-1] + 1] if used else labels[:1]
    return {"by": by, "labels": [str(b) for b in labels],
            "counts": {s: [splits[s].buckets.get(b, 0) for b in labels] for s in split_order(list(splits))}}


def _supervised(splits: dict[str, SplitMeasures], unit: str) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": unit}
    for s in split_order(list(splits)):
        response, whole = splits[s].column(f"response_{unit}"), splits[s].column(f"total_{unit}")
        if response is None or whole is None:
            continue
        part, total = int(response.sum()), int(whole.sum())
        out[s] = {"supervised": part, "total": total, "share": round(part / total, 4) if total else 0.0}
    return out


def _duplicates(splits: dict[str, SplitMeasures], across: int) -> dict[str, Any]:
    return {"within": {s: splits[s].duplicates for s in split_order(list(splits))}, "across_splits": across}


def _packing(packing: dict[str, Any] | None, manifest: dict[str, Any]) -> dict[str, Any]:
    assert packing is not None
    declared = manifest.get("packing") if isinstance(manifest.get("packing"), dict) else {}
    options = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
    max_length = declared.get("max_length") or options.get("max_length") or packing["longest"]
    capacity = packing["rows"] * max_length
    per_pack = packing["per_pack"]
    return {"rows": packing["rows"], "sequences": packing["sequences"], "max_length": max_length,
            "real_tokens": packing["real_tokens"],
            "efficiency": round(packing["real_tokens"] / capacity, 4) if capacity else 0.0,
            "manifest_efficiency": declared.get("efficiency"),
            "sequences_per_row": {str(k): per_pack[k] for k in sorted(per_pack)},
            "mean_sequences_per_row": round(packing["sequences"] / packing["rows"], 3) if packing["rows"] else 0.0}


KEY_ORDER = ("input", "rows", "splits", "buckets", "length", "turns", "supervised", "truncated", "rejected",
             "duplicates", "mixture", "packing", "leakage")


def _ordered(report: dict[str, Any]) -> dict[str, Any]:
    if not report["rows"] and not report.get("rejected"):
        raise DataprepError(f"{report['input']['path']}: no rows to describe")
    return {k: report[k] for k in KEY_ORDER if k in report}

