"""Causal-LM tokenization: canonical records → ``input_ids`` / ``attention_mask`` / ``labels`` / ``length``.

Exactness. A record is rendered once by its chat template (``dataprep.template``) and the whole text is encoded
with ``add_special_tokens=False``, which is what ``tokenizer.apply_chat_template(messages, tokenize=True)`` does;
so ``input_ids`` equal the model's own chat-template ids, with no doubled BOS and no merges lost at turn
boundaries (tokenizing turns separately and concatenating gets those wrong).

Labels. The template gives, per assistant-side turn, the character span ``[start, end)`` of its content and its
end-of-turn marker. **A token is supervised iff the character at its start offset lies inside a supervised
span.** A token that straddles a boundary therefore belongs to the side where it begins: a token that starts in
the header and runs into the response (``"\\n\\n"`` when a response starts with a newline) is not trained on, and a
token that starts in the response and runs past it is. Offsets are the Rust tokenizer's character offsets into the
rendered text (they survive normalizers such as NFC). Modes: ``all`` supervises every assistant-side turn,
``last`` only the final one (``--mask-history``), ``prompt`` every token (``--train-on-prompt``; stored rows are
never padded, so that is all of them). A row with no supervised token is rejected (``no_supervised_tokens``),
never written: it would contribute a zero or NaN loss silently.

Truncation (``max_length``). ``history``: drop the oldest history pairs, one pair (two ``roles``) at a time and
only where the remaining conversation still starts on a user turn, re-render, and keep the first that fits; if
even the last exchange alone is too long, keep its first ``max_length`` tokens, so the response is cut at the end
and its end-of-turn token is not trained on (the model must not learn to stop where the data did not).
``drop``: reject the row (``too_long``).

Special tokens in content. Text such as ``<|im_start|>assistant`` inside a message would be encoded as real
control tokens and forge a turn. ``reject`` (default) rejects the row (``special_token_in_content``, the detail
names the token). ``text`` encodes those occurrences as plain text, as ``apply_chat_template(...,
sanitize_control_tokens=True)`` does: each occurrence is wrapped in private-use markers before rendering, the
rendered text is split at the markers, template pieces are encoded normally and marked pieces with the Rust
tokenizer's ``encode_special_tokens`` (a second tokenizer instance, so the shared one is never mutated).

Speed. The hot path renders a batch in Python, encodes all its texts with one ``encode_batch`` call of the Rust
tokenizer (multi-threaded, releases the GIL) while the next batch renders in this thread, and turns spans into
label masks with numpy: a span becomes a token range with two ``char_to_token`` look-ups, never a loop over tokens.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.records import TEXT_FIELDS, Record, RecordError, content_id
from dataprep.stage import Rejected
from dataprep.tokenize.layout import IGNORE_INDEX, BatchResult, TokenizedBatch, flatten_ids

MASK_MODES = ("all", "last", "prompt")
TRUNCATION_MODES = ("history", "drop")
SPECIAL_TOKEN_MODES = ("reject", "text")

# The markers transformers' sanitize_control_tokens uses, so "text" mode gives the same ids as that reference.
MARK_START = "\U000f0000"
MARK_END = "\U000f0001"

CAUSAL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("attention_mask", pa.list_(pa.int8())),
        ("labels", pa.list_(pa.int32())),
        ("length", pa.int32()),
    ]
)


@dataclass(frozen=True)
class CausalOptions:
    max_length: int | None = None
    mask: str = "all"
    truncation: str = "history"
    special_tokens: str = "reject"

    def __post_init__(self) -> None:
        if self.mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}")
        if self.special_tokens not in SPECIAL_TOKEN_MODES:
            raise ValueError(f"special_tokens must be one of {SPECIAL_TOKEN_MODES}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be at least 1")


def supervised_mask(starts: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """The labelling rule on token start offsets: token i is supervised iff ``starts[i]`` is in a span.

    Spans must be sorted and disjoint; an empty span supervises nothing.
    """
    if not len(spans):
        return np.zeros(len(starts), dtype=bool)
    bounds = np.asarray(spans, dtype=np.int64).ravel()
    return np.searchsorted(bounds, np.asarray(starts, dtype=np.int64), side="right") % 2 == 1


class _PieceEncoding:
    """Ids and start offsets of a row encoded piece by piece, with the look-ups the labeller uses."""

    def __init__(self, ids: list[int], starts: list[int]) -> None:
        self.ids = ids
        self.starts = starts

    def first_token_at(self, pos: int) -> int:
        return bisect.bisect_left(self.starts, pos)


class _RustRow:
    """Adapter over a ``tokenizers.Encoding``: the first token starting at or after ``pos``, in O(1) look-ups."""

    def __init__(self, encoding: Any, text_len: int) -> None:
        self.encoding = encoding
        self.ids = encoding.ids
        self.text_len = text_len
        self._starts: list[int] | None = None

    def first_token_at(self, pos: int) -> int:
        if pos >= self.text_len:
            return len(self.ids)
        enc = self.encoding
        t = enc.char_to_token(pos)
        if t is None:  # a character no token covers (a pre-tokenizer dropped it): search all offsets
            if self._starts is None:
                self._starts = [s for s, _ in enc.offsets]
            return bisect.bisect_left(self._starts, pos)
        # t is the first token containing pos; if it began earlier it straddles pos and is on the earlier side
        return t if enc.token_to_chars(t)[0] >= pos else t + 1


@dataclass
class _Row:
    index: int
    record: Record
    id: str
    split: str
    text: str
    spans: tuple[tuple[int, int], ...]
    marked: bool = False
    piece: _PieceEncoding | None = None
    truncated: bool = False


@dataclass
class Prepared:
    """A batch after rendering (Python side), waiting for the Rust encoder."""

    rows: list[_Row]
    rejected: list[tuple[int, Rejected]]


class CausalTokenizer:
    """Tokenizes canonical records for causal-LM SFT; one instance per run (stateless between batches)."""

    schema = CAUSAL_SCHEMA
    task = "causal"
    label_names = None

    def __init__(self, tokenizer: Any, template: Any, options: CausalOptions | None = None) -> None:
        from dataprep.template import special_tokens_in

        self.tokenizer = tokenizer
        self.template = template
        self.settings = options or CausalOptions()
        self.backend = tokenizer._tokenizer
        if self.backend.truncation is not None or self.backend.padding is not None:
            from tokenizers import Tokenizer

            # apply_chat_template neither pads nor truncates unless asked: use a copy without the file's settings
            self.backend = Tokenizer.from_str(self.backend.to_str())
            self.backend.no_truncation()
            self.backend.no_padding()
        self._special_tokens_in = special_tokens_in
        self._plain_backend: Any = None

    def options(self) -> dict[str, Any]:
        o = self.settings
        return {"max_length": o.max_length, "mask": o.mask, "truncation": o.truncation,
                "special_tokens": o.special_tokens}

    @staticmethod
    def rewrite_split(path: Any) -> Any:
        return path

    # -- Python side -------------------------------------------------------------------------------------------

    def prepare(self, records: Sequence[Record], splits: Sequence[str]) -> Prepared:
        rows: list[_Row] = []
        rejected: list[tuple[int, Rejected]] = []
        for i, record in enumerate(records):
            if splits[i] is None:
                continue
            try:
                row = self._prepare_one(i, record, splits[i])
            except RecordError as exc:
                rejected.append((i, Rejected(record, exc.reason, exc.detail)))
                continue
            rows.append(row)
        return Prepared(rows, rejected)

    def _prepare_one(self, index: int, record: Record, split: str) -> _Row:
        rid = str(record["id"]) if record.get("id") not in (None, "") else content_id(record)
        specials = self._content_specials(record)
        if specials and self.settings.special_tokens == "reject":
            raise RecordError(
                "special_token_in_content",
                f"content contains the special token {specials[0]!r}"
                + (f" (and {len(specials) - 1} more)" if len(specials) > 1 else "")
                + "; use --special-tokens text to encode it as plain text",
            )
        source = _marked(record, specials) if specials else record
        rendered = self.template.render(source)
        row = _Row(index, record, rid, split, rendered.text, tuple(rendered.turns), marked=bool(specials))
        if row.marked:
            row.piece = self._encode_marked(row.text, specials)
        return row

    def _content_specials(self, record: Record) -> list[str]:
        # one scan over all content, joined by NUL: no added token contains it, so none can form across a join
        found = self._special_tokens_in("\0".join(_content_strings(record)), self.tokenizer)
        return sorted(found, key=lambda t: (-len(t), t))

    def _encode_marked(self, text: str, specials: list[str]) -> _PieceEncoding:
        """Encode a rendered text whose content specials are marked: template pieces as usual, marked as text."""
        if self._plain_backend is None:
            from tokenizers import Tokenizer

            self._plain_backend = Tokenizer.from_str(self.backend.to_str())
            self._plain_backend.encode_special_tokens = True
        pattern = "|".join(re.escape(t) for t in specials)
        markers = re.compile(f"{MARK_START}({pattern}){MARK_END}|[{MARK_START}{MARK_END}]")
        newline = self.backend.encode("\n", add_special_tokens=False).ids
        ids: list[int] = []
        starts: list[int] = []
        pos = 0
        first = True
        for m in [*markers.finditer(text), None]:
            end = m.start() if m is not None else len(text)
            self._encode_piece(self.backend, text[pos:end], pos, first, newline, ids, starts)
            first = False
            if m is None:
                break
            if m.group(1):
                self._encode_piece(self._plain_backend, m.group(1), m.start(1), False, newline, ids, starts)
            pos = m.end()
        return _PieceEncoding(ids, starts)

    @staticmethod
    def _encode_piece(backend: Any, piece: str, at: int, first: bool, newline: list[int],
                      ids: list[int], starts: list[int]) -> None:
        # As transformers does: a piece after the first is encoded behind a newline that is then removed, so a
        # SentencePiece tokenizer adds no prefix space mid-text.
        if not piece:
            return
        shift = 0
        enc = backend.encode(piece, add_special_tokens=False)
        if not first:
            behind = backend.encode("\n" + piece, add_special_tokens=False)
            if behind.ids[: len(newline)] == newline:
                enc, shift = behind, 1
        skip = len(newline) if shift else 0
        ids.extend(enc.ids[skip:])
        starts.extend(at + max(s - shift, 0) for s, _ in enc.offsets[skip:])

    # -- Rust side (runs in a worker thread) -------------------------------------------------------------------

    def encode(self, prepared: Prepared) -> list[Any]:
        texts = [r.text for r in prepared.rows if not r.marked]
        return self.backend.encode_batch(texts, add_special_tokens=False) if texts else []

    # -- back in Python: truncation and labels -----------------------------------------------------------------

    def finish(self, prepared: Prepared, encodings: list[Any]) -> BatchResult:
        rejected = list(prepared.rejected)
        it = iter(encodings)
        encoded: list[Any] = [r.piece if r.marked else _RustRow(next(it), len(r.text)) for r in prepared.rows]
        max_length = self.settings.max_length
        keep_rows: list[_Row] = []
        keep_enc: list[Any] = []
        cut: list[int | None] = []
        long_rows = []
        for row, enc in zip(prepared.rows, encoded, strict=True):
            if max_length is not None and len(enc.ids) > max_length:
                if self.settings.truncation == "drop":
                    detail = f"{len(enc.ids)} tokens, over --max-length {max_length}"
                    rejected.append((row.index, Rejected(row.record, "too_long", detail)))
                    continue
                long_rows.append((row, enc))
                continue
            keep_rows.append(row)
            keep_enc.append(enc)
            cut.append(None)
        for row, enc, limit in self._shorten(long_rows) if long_rows else []:
            keep_rows.append(row)
            keep_enc.append(enc)
            cut.append(limit)
        order = sorted(range(len(keep_rows)), key=lambda k: keep_rows[k].index)
        out_rows: list[_Row] = []
        id_lists: list[list[int]] = []
        truncated: list[bool] = []
        token_ranges: list[tuple[int, int, int]] = []  # (row in output, first token, end token)
        for k in order:
            row, enc, limit = keep_rows[k], keep_enc[k], cut[k]
            ids = enc.ids if limit is None else enc.ids[:limit]
            ranges = self._ranges(row, enc, len(ids))
            if not any(b > a for a, b in ranges):
                detail = self._why_unsupervised(row, len(ids))
                rejected.append((row.index, Rejected(row.record, "no_supervised_tokens", detail)))
                continue
            n = len(out_rows)
            token_ranges.extend((n, a, b) for a, b in ranges if b > a)
            out_rows.append(row)
            id_lists.append(ids)
            truncated.append(row.truncated)
        flat, offsets = flatten_ids(id_lists)
        labels = self._labels(flat, offsets, token_ranges)
        tokens = TokenizedBatch(
            ids=[r.id for r in out_rows],
            splits=[r.split for r in out_rows],
            offsets=offsets,
            columns={"input_ids": flat, "attention_mask": np.ones(len(flat), dtype=np.int8), "labels": labels},
            truncated=np.asarray(truncated, dtype=bool),
        )
        rejected.sort(key=lambda item: item[0])
        return BatchResult(tokens, rejected)

    def _ranges(self, row: _Row, enc: Any, n_tokens: int) -> list[tuple[int, int]]:
        if self.settings.mask == "prompt":
            return [(0, n_tokens)]
        spans = row.spans[-1:] if self.settings.mask == "last" else row.spans
        return [(min(enc.first_token_at(s), n_tokens), min(enc.first_token_at(e), n_tokens)) for s, e in spans]

    @staticmethod
    def _labels(flat: np.ndarray, offsets: np.ndarray, token_ranges: list[tuple[int, int, int]]) -> np.ndarray:
        if not token_ranges:
            return np.full(len(flat), IGNORE_INDEX, dtype=np.int32)
        spec = np.asarray(token_ranges, dtype=np.int64)
        base = offsets[spec[:, 0]]
        diff = np.zeros(len(flat) + 1, dtype=np.int32)
        np.add.at(diff, base + spec[:, 1], 1)
        np.add.at(diff, base + spec[:, 2], -1)
        inside = np.cumsum(diff[:-1]) > 0
        return np.where(inside, flat, IGNORE_INDEX).astype(np.int32)

    def _why_unsupervised(self, row: _Row, n_tokens: int) -> str:
        if not row.spans:
            return "the template marks no assistant turn to train on"
        if self.settings.max_length is not None and n_tokens >= self.settings.max_length:
            return f"the prompt alone fills --max-length {self.settings.max_length}; nothing of the response fits"
        return "no token starts inside an assistant turn"

    def _shorten(self, rows: list[tuple[_Row, Any]]) -> list[tuple[_Row, Any, int | None]]:
        """History truncation for rows over max_length: fewest dropped pairs that fit, else cut the last turn."""
        max_length = self.settings.max_length
        assert max_length is not None
        out: list[tuple[_Row, Any, int | None]] = []
        candidates: list[tuple[int, int, _Row]] = []  # (row number, dropped pairs, rendered row)
        for n, (row, _) in enumerate(rows):
            for drop in _droppable(row.record):
                shorter = _drop_history(row.record, drop)
                try:
                    candidates.append((n, drop, self._prepare_one(row.index, shorter, row.split)))
                except RecordError:
                    continue
        plain = [c for c in candidates if not c[2].marked]
        encs = self.backend.encode_batch([c[2].text for c in plain], add_special_tokens=False) if plain else []
        enc_of = {id(c[2]): _RustRow(e, len(c[2].text)) for c, e in zip(plain, encs, strict=True)}
        best: dict[int, tuple[_Row, Any]] = {}
        for n, _drop, cand in candidates:
            enc = cand.piece if cand.marked else enc_of[id(cand)]
            if n in best and len(best[n][1].ids) <= max_length:
                continue
            best[n] = (cand, enc)
        for n, (row, full) in enumerate(rows):
            cand, enc = best.get(n, (row, full))
            limit = None if len(enc.ids) <= max_length else max_length
            kept = _Row(row.index, row.record, row.id, row.split, cand.text, cand.spans, cand.marked, cand.piece,
                        truncated=True)
            out.append((kept, enc, limit))
        return out


def _content_strings(record: Record) -> list[str]:
    texts = [record.get(f) or "" for f in TEXT_FIELDS]
    for pair in record.get("history") or []:
        texts.extend(x for x in pair if isinstance(x, str))
    if isinstance(record.get("tools"), str):
        texts.append(record["tools"])
    return [t for t in texts if isinstance(t, str) and t]


def _marked(record: Record, specials: list[str]) -> Record:
    """A copy whose content has each special token wrapped in markers (markers already there are dropped)."""
    pattern = re.compile("|".join(re.escape(t) for t in specials))

    def mark(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        text = text.replace(MARK_START, "").replace(MARK_END, "")
        return pattern.sub(lambda m: f"{MARK_START}{m.group(0)}{MARK_END}", text)

    out = dict(record)
    for f in (*TEXT_FIELDS, "tools"):
        if f in out:
            out[f] = mark(out[f])
    if out.get("history"):
        out["history"] = [[mark(x) for x in pair] for pair in out["history"]]
    return out


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
    return out
