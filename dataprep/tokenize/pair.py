"""Sequence(-pair) classification: rows with one or two text fields and a label → ``input_ids``,
``attention_mask``, ``token_type_ids`` (when the tokenizer has them), ``labels`` (int class ids), ``length``.

Unlike the causal task, the tokenizer's own special tokens are added here (``[CLS] a [SEP] b [SEP]``): the ids
equal ``tokenizer(text, text_pair, truncation=..., max_length=...)``. Label ids come from the sorted set of label
values seen in all splits (numerically when every value is an integer), so ``"0"``/``"1"`` map to 0/1 and the
same data always gives the same mapping; the manifest stores it. As labels are only known at the end, rows are
written with the label text and the split files are rewritten batch by batch once the mapping is fixed.

``max_length``: the default (``truncation="history"`` on the command line, which for pairs means the
tokenizer's ``longest_first``) cuts the longer text first; ``drop`` rejects the row (``too_long``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.encoders import flat_from_lists
from dataprep.records import Record
from dataprep.stage import Rejected
from dataprep.tokenize.layout import BatchResult, TokenizedBatch
from dataprep.tokenize.options import ClassifyOptions


def label_key(value: Any) -> str:
    """A label value as text: strings as they are, numbers and booleans as JSON writes them."""
    return value if isinstance(value, str) else json.dumps(value)


def sorted_labels(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


@dataclass
class _Prepared:
    indexes: list[int]
    ids: list[str]
    splits: list[str]
    texts: list[Any]
    labels: list[str | None]
    records: list[Record]
    rejected: list[tuple[int, Rejected]]


class PairClassifier:
    """Tokenizes rows for sequence classification; the Encoder protocol of dataprep.tokenize.layout."""

    task = "classification"
    created = 0

    def __init__(self, tokenizer: Any, options: ClassifyOptions) -> None:
        from dataprep.encoders import plain_copy

        self.tokenizer = tokenizer
        self.settings = options
        self.has_token_types = "token_type_ids" in tokenizer.model_input_names
        # private copies: truncation/padding are settings of a Rust tokenizer, and the encode thread must not see
        # them change under it
        self.backend = plain_copy(tokenizer._tokenizer)
        self.cutter = None
        if options.max_length is not None and options.truncation == "history":
            self.cutter = plain_copy(self.backend)
            self.cutter.enable_truncation(options.max_length, strategy="longest_first")
        self.seen_labels: set[str] = set()
        fields = [("id", pa.string()), ("input_ids", pa.list_(pa.int32())), ("attention_mask", pa.list_(pa.int8()))]
        if self.has_token_types:
            fields.append(("token_type_ids", pa.list_(pa.int8())))
        if options.label is not None:
            fields.append(("label_text", pa.string()))
        fields.append(("length", pa.int32()))
        self.schema = pa.schema(fields)

    def describe(self) -> dict[str, Any]:
        return {"encoder": {"name": "tokenizers", "requested": "hf"}}

    def expect(self, input_bytes: int) -> None:
        """Nothing to prepare: the reference encoder is already loaded."""

    def options(self) -> dict[str, Any]:
        o = self.settings
        return {"text": o.text, "text_pair": o.text_pair, "label": o.label, "max_length": o.max_length,
                "truncation": o.truncation}

    @property
    def label_names(self) -> list[str] | None:
        return sorted_labels(self.seen_labels) if self.settings.label is not None else None

    def prepare(self, records: Sequence[Record], splits: Sequence[str | None]) -> _Prepared:
        o = self.settings
        p = _Prepared([], [], [], [], [], [], [])
        for i, record in enumerate(records):
            if splits[i] is None:
                continue
            problem = _missing(record, [f for f in (o.text, o.text_pair) if f])
            if problem:
                p.rejected.append((i, Rejected(record, "missing_field", problem)))
                continue
            label = record.get(o.label) if o.label else None
            if o.label and (label is None or label == ""):
                p.rejected.append((i, Rejected(record, "missing_label", f"no value in label field {o.label!r}")))
                continue
            text = record[o.text]
            pair = record[o.text_pair] if o.text_pair else None
            p.indexes.append(i)
            p.splits.append(splits[i])  # type: ignore[arg-type]
            p.texts.append((text, pair) if pair is not None else text)
            p.labels.append(label_key(label) if o.label else None)
            p.records.append(record)
            rid = record.get("id")
            p.ids.append(str(rid) if rid not in (None, "") else _content_id(text, pair))
        return p

    def encode(self, prepared: _Prepared) -> list[Any]:
        return self.backend.encode_batch(prepared.texts, add_special_tokens=True) if prepared.texts else []

    def finish(self, prepared: _Prepared, encodings: list[Any]) -> BatchResult:
        rejected = list(prepared.rejected)
        max_length = self.settings.max_length
        long = [k for k, e in enumerate(encodings) if max_length is not None and len(e.ids) > max_length]
        truncated = np.zeros(len(encodings), dtype=bool)
        if long and self.cutter is not None:
            cut = self.cutter.encode_batch([prepared.texts[k] for k in long], add_special_tokens=True)
            for k, e in zip(long, cut, strict=True):
                encodings[k] = e
            truncated[long] = True
        keep = np.ones(len(encodings), dtype=bool)
        if long and self.cutter is None:
            for k in long:
                detail = f"{len(encodings[k].ids)} tokens, over --max-length {max_length}"
                rejected.append((prepared.indexes[k], Rejected(prepared.records[k], "too_long", detail)))
            keep[long] = False
        rows = np.flatnonzero(keep)
        kept = [encodings[k] for k in rows]
        flat, offsets = flat_from_lists([e.ids for e in kept])
        columns = {"input_ids": flat, "attention_mask": np.ones(len(flat), dtype=np.int8)}
        if self.has_token_types:
            columns["token_type_ids"] = flat_from_lists([e.type_ids for e in kept])[0].astype(np.int8)
        scalars: dict[str, Any] = {}
        if self.settings.label is not None:
            labels = [prepared.labels[k] for k in rows]
            self.seen_labels.update(labels)  # type: ignore[arg-type]
            scalars["label_text"] = labels
        tokens = TokenizedBatch(
            ids=[prepared.ids[k] for k in rows], splits=[prepared.splits[k] for k in rows], offsets=offsets,
            columns=columns, scalars=scalars, truncated=truncated[rows],
        )
        rejected.sort(key=lambda item: item[0])
        return BatchResult(tokens, rejected)

    def rewrite_split(self, path: Path) -> Path:
        """Replace the ``label_text`` column by int64 ``labels`` (ids in the final sorted mapping)."""
        names = self.label_names
        if names is None:
            return path
        import pyarrow.compute as pc

        value_set = pa.array(names, pa.string())
        target = path.with_name(path.stem + ".labelled.arrow")
        fields = [f for f in self.schema if f.name != "label_text"]
        schema = pa.schema([*fields[:-1], pa.field("labels", pa.int64()), fields[-1]])
        with pa.memory_map(str(path)) as source, pa.ipc.new_stream(str(target), schema) as sink:
            for batch in pa.ipc.open_stream(source):
                ids = pc.index_in(batch.column("label_text"), value_set=value_set).cast(pa.int64())
                arrays = [batch.column(f.name) for f in fields[:-1]] + [ids, batch.column("length")]
                sink.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
        path.unlink()
        return target


def _missing(record: Record, fields: list[str]) -> str | None:
    for f in fields:
        value = record.get(f)
        if value is None:
            return f"no field {f!r} (fields: {', '.join(sorted(map(str, record)))})"
        if not isinstance(value, str):
            return f"field {f!r} is {type(value).__name__}, not text"
    return None


def _content_id(text: str, pair: str | None) -> str:
    blob = json.dumps([text, pair], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=8).hexdigest()
