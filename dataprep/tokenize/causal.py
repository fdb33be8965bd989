"""Causal-LM tokenization: canonical records → ``input_ids`` / ``attention_mask`` / ``labels`` / ``length``.

Exactness. A record is rendered once by its chat template (:mod:`dataprep.template`, which also locates every
assistant turn's span in that one text) and the whole text is encoded with ``add_special_tokens=False``, which is
what ``tokenizer.apply_chat_template(messages, tokenize=True)`` does; so ``input_ids`` equal the model's own
chat-template ids, with no doubled BOS and no merges lost at turn boundaries. Every run proves it on a sample:
rows are rendered again by transformers' own renderer (``render_jinja_template``) and encoded by the reference
``tokenizers`` encoder, and a difference stops the run (the count is in the summary and the manifest).

Labels. **A token is supervised iff the character at its start lies inside a supervised span.** A token that
straddles a boundary belongs to the side where it begins: one that starts in the header and runs into the reply
(``"\\n\\n"`` when a reply starts with a newline) is not trained on, one that starts in the reply and runs past it
is. Token starts come from the encoder (:mod:`dataprep.encoders`: the vocabulary's byte lengths, proven per row,
or the reference's offsets). Modes: ``all`` supervises every assistant-side turn, ``last`` only the final one
(``--mask-history``), ``prompt`` every token (``--train-on-prompt``). Text a template writes inside a turn on its
own, from no data (Qwen3's empty ``<think>\\n\\n</think>\\n\\n``), is not supervised unless ``inserted="train"``:
it is part of the prompt the model is given, not something the data shows it answering. A row with no supervised
token is rejected (``no_supervised_tokens``): it would contribute a zero or NaN loss silently.

Reasoning. ``template`` (default) trains what the template renders for the whole conversation (Qwen3 keeps
reasoning only after the last user turn; R1 drops it everywhere). ``expand`` writes one row per assistant turn,
each rendered as the final turn so its reasoning is kept (LLaMA-Factory v1 does this); tokens grow with the square
of the turns. An expanded record counts once in and once per row out: the summary says how many rows it added.

Truncation (``max_length``), linear in the conversation. ``history``: the oldest history pairs are dropped (only
where the rest still starts on a user turn). How many is estimated from the one encode (the token where each
assistant turn ends), then the shorter conversation is rendered and encoded once to check it fits, and the
estimate is corrected from that exact length until it does (one or two renders, not one per pair). If even the last
exchange alone is too long, its first ``max_length`` tokens are kept, so the reply is cut and its end-of-turn
token is not trained on. ``drop``: reject the row (``too_long``).

Special tokens in data. Text such as ``<|im_start|>assistant`` inside a message (or in a function name, a
JSON-decoded argument, a ``tools`` description) would be encoded as real control tokens and forge a turn.
``reject`` (default) rejects the row (``special_token_in_content``). ``text`` encodes those occurrences as plain
text in the unchanged render, as ``apply_chat_template(..., sanitize_control_tokens=True)`` does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataprep.errors import DataprepError, UsageProblem
from dataprep.records import (
    NOT_CANONICAL,
    Record,
    RecordError,
    check_canonical,
    content_id,
    expand_turns,
    looks_raw,
)
from dataprep.stage import Rejected
from dataprep.tokenize.by_shape import ShapeRows
from dataprep.tokenize.layout import CAUSAL_SCHEMA, IGNORE_INDEX, BatchResult, TokenizedBatch
from dataprep.tokenize.options import CausalOptions

SELF_CHECK_EVERY = 499  # about 0.2% of rows, picked by id, plus the first row of every batch

def supervised_mask(starts: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """The labelling rule on token start offsets: token i is supervised iff ``starts[i]`` is in a span.

    Spans must be sorted and disjoint; an empty span supervises nothing.
    """
    if not len(spans):
        return np.zeros(len(starts), dtype=bool)
    bounds = np.asarray(spans, dtype=np.int64).ravel()
    return np.searchsorted(bounds, np.asarray(starts, dtype=np.int64), side="right") % 2 == 1


def _minus(spans: Sequence[tuple[int, int]], holes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` with the ``holes`` cut out (both sorted, disjoint)."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        at = start
        for h_start, h_end in holes:
            if h_end <= at or h_start >= end:
                continue
            if h_start > at:
                out.append((at, h_start))
            at = max(at, h_end)
        if at < end:
            out.append((at, end))
    return out


@dataclass
class _Row:
    index: int  # the row of the input batch it came from
    record: Record
    id: str
    split: str
    text: str  # the render
    bounds: list[int]  # the supervised character spans, flat: start, end, start, end... (sorted)
    rendered: Any = None  # dataprep.template.Rendered; None for a row filled by shape (rendered again if needed)
    plain: list[tuple[int, int]] = field(default_factory=list)  # ranges to encode as text (--special-tokens text)
    ids: np.ndarray | None = None
    starts: np.ndarray | None = None
    cut: int | None = None  # keep only the first ``cut`` tokens (the reply was cut)
    truncated: bool = False


@dataclass
class Prepared:
    """A batch after rendering (Python side), waiting for the encoder."""

    rows: list[_Row]
    rejected: list[tuple[int, Rejected]]
    encoded: Any = None  # dataprep.encoders.IdsBatch of the rows without plain ranges, from the encode thread


class CausalTokenizer:
    """Tokenizes canonical records for causal-LM SFT; one instance per run."""

    schema = CAUSAL_SCHEMA
    task = "causal"
    label_names = None

    def __init__(self, tokenizer: Any, template: Any, options: CausalOptions | None = None,
                 preload: Any = None) -> None:
        """``preload``: a :class:`dataprep.encoders.FastLoad` of the file ``tokenizer`` was loaded from."""
        from dataprep.encoders import AutoEncoder

        self.tokenizer = tokenizer
        self.template = template
        self.settings = options or CausalOptions()
        self.encoder = AutoEncoder(tokenizer._tokenizer, self.settings.encoder, background=True, preload=preload)
        self.backend = self.encoder.reference.backend  # without truncation or padding, as apply_chat_template
        self.turns = "last" if self.settings.mask == "last" or self.settings.reasoning == "expand" else "all"
        self.created = 0  # rows added by the expand policy, beyond one per record
        self.check = SelfCheck(template, self.backend)
        self.shapes = ShapeRows(template, self.turns, self._label_bounds, list(tokenizer.added_tokens_encoder))

    def options(self) -> dict[str, Any]:
        return self.settings.key()

    @staticmethod
    def rewrite_split(path: Any) -> Any:
        return path

    def describe(self) -> dict[str, Any]:
        return {"encoder": self.encoder.describe(), "self_check": self.check.describe()}

    def expect(self, input_bytes: int) -> None:
        self.encoder.prefetch(input_bytes)

    # -- Python side -------------------------------------------------------------------------------------------

    def prepare(self, records: Sequence[Record], splits: Sequence[str | None]) -> Prepared:
        if looks_raw(records):
            raise UsageProblem(NOT_CANONICAL)
        rows: list[_Row] = []
        rejected: list[tuple[int, Rejected]] = []
        expand = self.settings.reasoning == "expand"
        valid: list[int] = []
        for i, record in enumerate(records):
            if splits[i] is None:
                continue
            try:
                check_canonical(record)
            except RecordError as exc:
                rejected.append((i, Rejected(record, exc.reason, exc.detail)))
                continue
            valid.append(i)
        shaped = [None] * len(valid) if expand else self.shapes.render([records[i] for i in valid])
        for i, done in zip(valid, shaped, strict=True):
            record, split = records[i], splits[i]
            assert split is not None
            if done is not None:
                rid = str(record["id"]) if record.get("id") not in (None, "") else content_id(record)
                rows.append(_Row(i, record, rid, split, *done))
                continue
            parts = expand_turns(record) if expand else [record]
            self.created += len(parts) - 1
            for part in parts:
                try:
                    rows.append(self._prepare_one(i, part, split))
                except RecordError as exc:
                    rejected.append((i, Rejected(part, exc.reason, exc.detail)))
        return Prepared(rows, rejected)

    def _prepare_one(self, index: int, record: Record, split: str) -> _Row:
        from dataprep.template import special_tokens_in_data

        rendered = self.template.render(record, self.turns)
        found = special_tokens_in_data(rendered, self.tokenizer)
        if found and self.settings.special_tokens == "reject":
            names = list(dict.fromkeys(token for _, _, token in found))
            listed = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise RecordError(
                "special_token_in_content",
                f"data contains the special token{'s' if len(names) > 1 else ''} {listed} (at character "
                f"{found[0][0]} of the render); use --special-tokens text to encode {'them' if len(names) > 1 else 'it'} "
                "as plain text",
            )
        rid = str(record["id"]) if record.get("id") not in (None, "") else content_id(record)
        return _Row(index, record, rid, split, rendered.text, self._label_bounds(rendered), rendered,
                    [(s, e) for s, e, _ in found])

    def _rendered(self, row: _Row) -> Any:
        """The row's Rendered; a row filled by shape is rendered again (the same text and spans, by the shape's
        own arithmetic) only when truncation or a reject message needs it."""
        if row.rendered is None:
            row.rendered = self.template.render(row.record, self.turns)
        return row.rendered

    # -- the encoder (runs in a worker thread) -----------------------------------------------------------------

    def encode(self, prepared: Prepared) -> list[tuple[int, str]]:
        """Fill each row's ids and token starts; returns rows that cannot be encoded exactly, with why."""
        from dataprep.encoders import PlainTextError

        normal = [r for r in prepared.rows if not r.plain]
        if normal:
            prepared.encoded = self.encoder.encode_ids([r.text for r in normal])
        failed: list[tuple[int, str]] = []
        for n, row in enumerate(prepared.rows):
            if row.plain:
                try:
                    row.ids, row.starts = self.encoder.encode_with_plain_ranges(row.text, row.plain)
                except PlainTextError as exc:
                    failed.append((n, str(exc)))
        return failed

    # -- back in Python: truncation, the self-check and labels -------------------------------------------------

    def finish(self, prepared: Prepared, failed: list[tuple[int, str]]) -> BatchResult:
        batch = None
        if prepared.encoded is not None:
            batch = self.encoder.with_starts(prepared.encoded)
            cuts = batch.offsets.tolist()
            for k, row in enumerate(r for r in prepared.rows if not r.plain):
                row.ids, row.starts = batch.ids[cuts[k]:cuts[k + 1]], batch.starts[cuts[k]:cuts[k + 1]]
        rejected = list(prepared.rejected)
        bad = {n for n, _ in failed}
        rejected += [(prepared.rows[n].index, Rejected(prepared.rows[n].record, "special_token_in_content", why))
                     for n, why in failed]
        rows = [r for n, r in enumerate(prepared.rows) if n not in bad]
        self.check.sample(rows)
        max_length = self.settings.max_length
        kept: list[_Row] = []
        for row in rows:
            assert row.ids is not None
            if max_length is not None and len(row.ids) > max_length:
                if self.settings.truncation == "drop":
                    detail = f"{len(row.ids)} tokens, over --max-length {max_length}"
                    rejected.append((row.index, Rejected(row.record, "too_long", detail)))
                    continue
                try:
                    row = self._shorten(row, max_length)
                except RecordError as exc:
                    rejected.append((row.index, Rejected(row.record, exc.reason, exc.detail)))
                    continue
            kept.append(row)
        # every row as encoded, in the batch's order: its arrays as they are, no per-row copy
        whole = batch is not None and len(kept) == len(prepared.rows) == len(batch.offsets) - 1 and all(
            a is b and a.cut is None for a, b in zip(kept, prepared.rows, strict=True))
        tokens, empty = self._labelled(kept, (batch.ids, batch.starts, batch.offsets) if whole else None)
        rejected += [(row.index, Rejected(row.record, "no_supervised_tokens", self._why_unsupervised(row)))
                     for row in empty]
        rejected.sort(key=lambda item: item[0])
        return BatchResult(tokens, rejected)

    def _label_bounds(self, rendered: Any) -> list[int]:
        """The supervised character spans of a render, flat (start, end, ...): every assistant-side turn, the
        last, or the whole text, less what the template inserted on its own unless that is trained too."""
        if self.settings.mask == "prompt":
            return [0, len(rendered.text)]
        spans = list(rendered.spans[-1:] if self.settings.mask == "last" else rendered.spans)
        if self.settings.inserted == "mask" and rendered.inserted:
            spans = _minus(spans, rendered.inserted)
        return [b for span in spans for b in span]

    def _labelled(self, rows: list[_Row], flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> tuple[TokenizedBatch, list[_Row]]:
        """Labels for every row at once: token starts and span bounds are shifted by each row's place in the
        concatenated texts, so one ``searchsorted`` decides every token of the batch. ``flat``: the rows' ids,
        starts and offsets already concatenated (the encoded batch, when every row is kept whole)."""
        if flat is not None:
            ids, starts, offsets = flat
            lengths = np.diff(offsets)
        else:
            lengths = np.fromiter((len(r.ids) if r.cut is None else r.cut for r in rows), np.int64, len(rows))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            ids = np.concatenate([r.ids[:n] for r, n in zip(rows, lengths, strict=True)]) if rows \
                else np.zeros(0, np.int32)
            starts = np.concatenate([r.starts[:n] for r, n in zip(rows, lengths, strict=True)]).astype(np.int64) \
                if rows else np.zeros(0, np.int64)
        text_base = np.zeros(len(rows), dtype=np.int64)
        if rows:
            np.cumsum([len(r.text) + 1 for r in rows[:-1]], out=text_base[1:])
        bounds = [b + base for r, base in zip(rows, text_base.tolist(), strict=True) for b in r.bounds]
        global_starts = starts + np.repeat(text_base, lengths)
        inside = np.searchsorted(np.asarray(bounds, np.int64), global_starts, side="right") % 2 == 1 \
            if bounds else np.zeros(len(ids), dtype=bool)
        per_row = np.add.reduceat(inside, offsets[:-1]) if len(ids) else np.zeros(len(rows), np.int64)
        per_row = np.where(lengths > 0, per_row, 0)
        keep = per_row > 0
        empty = [r for r, k in zip(rows, keep.tolist(), strict=True) if not k]
        if empty:
            token_keep = np.repeat(keep, lengths)
            ids, inside = ids[token_keep], inside[token_keep]
            rows = [r for r, k in zip(rows, keep.tolist(), strict=True) if k]
            lengths = lengths[keep]
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
        labels = np.where(inside, ids, IGNORE_INDEX).astype(np.int32, copy=False)
        tokens = TokenizedBatch(
            ids=[r.id for r in rows],
            splits=[r.split for r in rows],
            offsets=offsets,
            columns={"input_ids": ids.astype(np.int32, copy=False), "attention_mask": np.ones(len(ids), dtype=np.int8),
                     "labels": labels},
            truncated=np.asarray([r.truncated for r in rows], dtype=bool),
        )
        return tokens, empty

    def _why_unsupervised(self, row: _Row) -> str:
        if not self._rendered(row).spans:
            return "the template marks no assistant turn to train on"
        if row.cut is not None:
            return f"the prompt alone fills --max-length {self.settings.max_length}; nothing of the reply fits"
        return "no token starts inside an assistant turn"

    # -- truncation ----------------------------------------------------------------------------------------------

    def _shorten(self, row: _Row, max_length: int) -> _Row:
        """Drop the fewest oldest history pairs that make the row fit; else cut the last exchange.

        Shorter conversations are rendered and encoded for real (the text must be the template's own), but few
        of them: the first guess comes from where each turn ends in the full encode, and a binary search over
        the pairs that may be dropped corrects it, so a conversation of n turns costs O(log n) renders at most.
        """
        choices = _droppable(row.record)
        if not choices:
            row.cut, row.truncated = max_length, True
            return row
        tried: dict[int, _Row] = {}

        def attempt(i: int) -> _Row:
            if i not in tried:
                tried[i] = self._render_encode(row, choices[i])
            return tried[i]

        def fits(i: int) -> bool:
            return len(attempt(i).ids) <= max_length  # type: ignore[arg-type]

        first = _first_fit(len(choices), fits, self._guess(row, choices, attempt, max_length))
        if first is None:
            last = attempt(len(choices) - 1)
            last.cut = max_length
            return last
        return attempt(first)

    def _guess(self, row: _Row, choices: list[int], attempt: Any, max_length: int) -> int | None:
        """Where to look first: from the exact length with the fewest pairs dropped, take away, pair by pair,
        the tokens those turns took in the full encode (None when not every turn's span is known)."""
        rendered = self._rendered(row)
        if len(rendered.spans) != len(row.record["history"]) + 1 or len(choices) == 1:
            return None
        assert row.starts is not None
        ends = np.searchsorted(row.starts, [end for _, end in rendered.spans]).tolist()
        length = len(attempt(0).ids)
        base = ends[choices[0] - 1]
        return next((i for i, c in enumerate(choices) if length - (ends[c - 1] - base) <= max_length),
                    len(choices) - 1)

    def _render_encode(self, row: _Row, pairs: int) -> _Row:
        from dataprep.template import special_tokens_in_data

        shorter = _drop_history(row.record, pairs)
        rendered = self.template.render(shorter, self.turns)
        plain = [(s, e) for s, e, _ in special_tokens_in_data(rendered, self.tokenizer)]
        if plain:
            ids, starts = self.encoder.encode_with_plain_ranges(rendered.text, plain)
        else:
            batch = self.encoder.encode_with_starts([rendered.text])
            ids, starts = batch.ids, batch.starts
        return _Row(row.index, row.record, row.id, row.split, rendered.text, self._label_bounds(rendered),
                    rendered, plain, ids, starts, truncated=True)


def _first_fit(n: int, fits: Any, guess: int | None) -> int | None:
    """The smallest i in [0, n) with ``fits(i)`` (monotone: once true, true after), or None; checks ``guess`` and
    its neighbour first, so a good guess costs two calls."""
    lo, hi = 0, n
    if guess is not None:
        if fits(guess):
            hi = guess
            if guess == 0 or not fits(guess - 1):
                return guess
        else:
            lo = guess + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo if lo < n and fits(lo) else None


def _droppable(record: Record) -> list[int]:
    """How many leading history pairs can be dropped, fewest first, each leaving a conversation that starts
    on a user turn (a tool result with no call before it would not make sense)."""
    history = record.get("history") or []
    roles = record.get("roles")
    return [k for k in range(1, len(history) + 1) if not roles or roles[2 * k] == "user"]


def _drop_history(record: Record, pairs: int) -> Record:
    out = dict(record)
    out["history"] = list(record.get("history") or [])[pairs:]
    if record.get("roles"):
        out["roles"] = list(record["roles"])[2 * pairs:]
    if record.get("reasoning"):
        out["reasoning"] = list(record["reasoning"])[pairs:]
    return out  # type: ignore[return-value]


class SelfCheck:
    """The run's proof of exactness on a sample: transformers' own renderer plus the reference encoder.

    The first row of every batch and about 0.2% of the others (chosen by id, so the sample is the same on every
    run) are rendered by ``transformers.utils.chat_template_utils.render_jinja_template`` (what
    ``apply_chat_template`` calls; importing it does not import torch, and it loads in a thread meanwhile) and
    encoded by the ``tokenizers`` reference. A row that differs stops the run: it is a bug, and the rows not
    sampled cannot be trusted either. Rows with special tokens encoded as text are not sampled (the reference
    for them needs the full transformers tokenizer; tests cover them).
    """

    def __init__(self, template: Any, backend: Any) -> None:
        self.template = template
        self.backend = backend
        self.checked = 0
        self.passed = 0
        self._render: Any = None
        self._loader = threading.Thread(target=self._load, name="dataprep-selfcheck-import", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            from transformers.utils.chat_template_utils import render_jinja_template
        except Exception:  # noqa: BLE001 - reported as "not available" in the manifest
            return
        self._render = render_jinja_template

    def describe(self) -> dict[str, Any]:
        return {"checked": self.checked, "passed": self.passed,
                "reference": "transformers render_jinja_template + tokenizers encode"}

    def sample(self, rows: Sequence[_Row]) -> None:
        picks = [r for n, r in enumerate(rows) if not r.plain and (
            n == 0 or int.from_bytes(hashlib.blake2b(r.id.encode(), digest_size=4).digest(), "big") % SELF_CHECK_EVERY == 0)]
        if not picks:
            return
        self._loader.join()
        if self._render is None:
            return
        for row in picks:
            messages, tools = self.template.messages_of(row.record)
            text = self._render([messages], tools=tools, chat_template=self.template.source,
                                **self.template.variables)[0][0]
            # encode, not encode_batch: the batch call would queue behind the encode thread's on Rust's pool
            expected = self.backend.encode(text, add_special_tokens=False).ids
            self.checked += 1
            if text != row.text or list(row.ids) != expected:
                raise DataprepError(
                    f"row {row.id}: dataprep's ids differ from apply_chat_template's (self-check); nothing was "
                    "written", hint="this is a bug in dataprep for this template: please report it with the row")
            self.passed += 1
