"""Encoders: rendered texts → token ids (one Rust call per batch) and where each token starts in its text.

Why an interface. HF ``tokenizers`` is the reference: ``apply_chat_template(..., tokenize=True)`` is its
``encode`` with ``add_special_tokens=False`` and no truncation or padding. It is also, since tokenize renders
and labels with numpy, the slowest part of a run. ``fastokens`` (an optional extra, ``dataprep[fast]``)
encodes the same texts into the same ids one to two orders of magnitude faster (``bin/bench_encoders.py``) and
hands them back as one flat buffer, the layout of an Arrow list column. The fast backend is used only where it is shown to agree with the reference: before
the first batch on a built-in multilingual sample plus that batch's texts, and then on a few rows of every batch
(a disagreement anywhere switches the run back to the reference, and that batch is encoded again by it).

Where tokens start. Labels follow one rule: a token is supervised iff its first character lies inside a
supervised character span. HF gives character offsets, but turning them into arrays costs ~40% on top of its
encode; fastokens gives none. :class:`TokenStarts` derives them from the vocabulary instead: the number of text bytes each token
stands for (byte-level BPE maps each character of a token to one byte; SentencePiece's ``▁`` is a space and
``<0xNN>`` one byte; an added token is its content), cumulative sums per row, then bytes to characters through
the UTF-8 widths of the batch's characters — all in numpy, no per-token Python. A row is checked before its
starts are used: the byte lengths must add up to the text's UTF-8 length (less the dummy-prefix space a
SentencePiece tokenizer inserts), the text must already be in the normalizer's form (NFC and friends change
bytes), and it must hold no token whose span is not fixed by its bytes (unknown tokens, added tokens that eat
neighbouring whitespace). A row that fails takes its offsets from the reference ``encode_batch`` instead:
starts are never guessed. A tokenizer whose pipeline the derivation does not model (a normalizer that lowercases
or strips, a pre-tokenizer that drops whitespace, Metaspace ``always``) gets reference offsets for every row.

Special tokens as text. :meth:`Encoder.encode_with_plain_ranges` encodes one rendered row whose given character
ranges must not become control tokens, piece by piece exactly as transformers'
``apply_chat_template(..., sanitize_control_tokens=True)`` does (rare rows, so per-row Python).
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENCODER_CHOICES = ("auto", "hf", "fast")
FAST_PACKAGE = "fastokens"

# Text the start-up check encodes with both backends before trusting the fast one: scripts, emoji (4-byte UTF-8
# and ZWJ sequences), combining marks, fullwidth forms, digit runs, code, whitespace runs, and chat markup.
SELF_CHECK_SAMPLE: tuple[str, ...] = (
    "Hello, world! It's 2024-06-01 and the price is $1,234.56 (that's 12% off).",
    "中文字符测试：你好，世界！我们今天学习自然语言处理。",
    "日本語のテキスト、カタカナ・ひらがな混じり。ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
    "한국어 문장도 넣어 봅니다. Ελληνικά και русский текст, עברית, العربية.",
    "Emoji 😀👍🏽👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√ ≤ ≥ ≠.",
    "Combining: e\u0301 a\u0308 n\u0303 (decomposed) vs é ä ñ; ligature ﬁ; zero\u200bwidth; nbsp\u00a0here.",
    "def f(x):\n    return x ** 2  # square\n\n\tindented\ttabs\r\nwindows line\n\n\n   trailing   \n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n",
    "<s>[INST] Explain recursion. [/INST] A function that calls itself.</s>",
    "numbers 1234567890 0.000001 1e-9 -42 +7 ١٢٣ 一二三",
    "   leading spaces and a very long token: antidisestablishmentarianism supercalifragilisticexpialidocious",
    "",
)

_NORMALIZATION_FORMS = {"NFC": "NFC", "NFKC": "NFKC", "NFD": "NFD", "NFKD": "NFKD"}
_KEEPING_PRE_TOKENIZERS = {"ByteLevel", "Split", "Digits", "Punctuation", "UnicodeScripts", "Metaspace", "Sequence"}
_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_METASPACE = "\u2581"


class PlainTextError(ValueError):
    """A range meant as plain text encodes to the very control token it spells (transformers refuses too)."""


@dataclass
class EncodedBatch:
    """A batch in Arrow list layout: row i is ``ids[offsets[i]:offsets[i+1]]``.

    ``starts[k]`` is the index, in its own text, of the character where token k begins (a token that starts in
    the middle of a multi-byte character starts at that character, as HF's offsets say). ``reference_rows``
    counts the rows whose starts came from the reference ``encode_batch`` because the vocabulary check failed;
    ``replaced_rows`` those among them whose ids also differed (the fast backend disagreed: the reference's won).
    """

    ids: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    reference_rows: int = 0
    replaced_rows: int = 0


@dataclass
class IdsBatch:
    """A batch as the encode thread hands it over (:meth:`AutoEncoder.encode_ids`): flat ids and row offsets,
    the fast backend that made them (None: the reference did), or ``done`` when the starts came with them."""

    texts: Sequence[str]
    ids: np.ndarray | None
    offsets: np.ndarray | None
    fast: FastEncoder | None
    done: EncodedBatch | None = None


def flat_from_lists(id_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """int32 ids and int64 row offsets from per-row id lists (one C-level copy per row)."""
    lengths = np.fromiter((len(x) for x in id_lists), dtype=np.int64, count=len(id_lists))
    offsets = np.zeros(len(id_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    for i, ids in enumerate(id_lists):
        flat[offsets[i]:offsets[i + 1]] = ids
    return flat, offsets


def plain_copy(backend: Any) -> Any:
    """A private copy of a ``tokenizers.Tokenizer`` without truncation or padding (apply_chat_template uses
    neither), so a setting saved in tokenizer.json cannot change ids and no shared instance is mutated."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


# -- token start positions from the vocabulary -----------------------------------------------------------------


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's reversible byte ↔ printable-character table, inverted: character → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def _components(state: Any) -> list[dict[str, Any]]:
    """A normalizer/pre-tokenizer JSON as a flat list (a ``Sequence`` unrolled)."""
    if state is None:
        return []
    node = json.loads(state.__getstate__()) if not isinstance(state, dict) else state
    if node.get("type") == "Sequence":
        children = node.get("normalizers") or node.get("pretokenizers") or []
        return [c for child in children for c in _components(child)]
    return [node]


@dataclass
class _Pipeline:
    """What the byte-length derivation needs to know about a tokenizer's normalizer and pre-tokenizer."""

    supported: bool
    reason: str
    byte_level: bool = False
    normal_form: str | None = None
    prefix: str | None = None  # None, "first" (only at text start, unless the text starts with a space) or "every"


def _pipeline(backend: Any) -> _Pipeline:
    model = type(backend.model).__name__
    if model not in ("BPE", "Unigram", "WordLevel"):
        return _Pipeline(False, f"{model} models drop or mark text (continuing-subword prefixes)")
    normalizers = _components(backend.normalizer)
    pre_tokenizers = _components(backend.pre_tokenizer)
    normal_form = None
    prefix = None
    for n in normalizers:
        kind = n.get("type")
        if kind in _NORMALIZATION_FORMS:
            if normal_form is not None:
                return _Pipeline(False, "several Unicode normalization forms")
            normal_form = _NORMALIZATION_FORMS[kind]
        elif kind == "Prepend" and n.get("prepend") == _METASPACE:
            prefix = "every"
        elif kind == "Replace" and n.get("pattern") == {"String": " "} and n.get("content") == _METASPACE:
            continue  # a space becomes ▁, which the vocabulary table maps back to one space byte
        else:
            return _Pipeline(False, f"normalizer {kind} changes text in ways the vocabulary does not show")
    byte_level = False
    for p in pre_tokenizers:
        kind = p.get("type")
        if kind not in _KEEPING_PRE_TOKENIZERS:
            return _Pipeline(False, f"pre-tokenizer {kind} drops characters")
        if kind == "Split" and p.get("behavior") == "Removed":
            return _Pipeline(False, "a Split pre-tokenizer removes its matches")
        if kind == "ByteLevel":
            if p.get("add_prefix_space"):
                return _Pipeline(False, "ByteLevel adds a prefix space")
            byte_level = True
        if kind == "Metaspace":
            if p.get("replacement", _METASPACE) != _METASPACE:
                return _Pipeline(False, "Metaspace with an unusual replacement character")
            scheme = p.get("prepend_scheme") or ("always" if p.get("add_prefix_space", True) else "never")
            if scheme == "always":
                return _Pipeline(False, "Metaspace prepends a space to every piece of text")
            if scheme == "first":
                prefix = prefix or "first"
    if prefix == "every" and pre_tokenizers and any(p.get("type") == "Metaspace" for p in pre_tokenizers):
        return _Pipeline(False, "both a Prepend normalizer and a Metaspace pre-tokenizer")
    return _Pipeline(True, "", byte_level=byte_level, normal_form=normal_form, prefix=prefix)


def _model_facts(backend: Any, vocab: dict[str, int]) -> tuple[bool, int | None]:
    """``(byte_fallback, unk id)`` of the model; Unigram exposes neither as an attribute, only in its state."""
    model = backend.model
    if type(model).__name__ == "Unigram":
        state = json.loads(model.__getstate__())
        return bool(state.get("byte_fallback")), state.get("unk_id")
    unk = getattr(model, "unk_token", None)
    return bool(getattr(model, "byte_fallback", False)), vocab.get(unk) if unk is not None else None


class TokenStarts:
    """Token start positions for a batch from per-token byte lengths: one lookup table per tokenizer.

    ``table[id]`` is the number of text bytes the token stands for; ``uncertain[id]`` marks tokens whose span
    the bytes do not fix (rows holding one take reference offsets). Built with :meth:`for_backend`, which
    returns ``None`` (with :attr:`why_not` set on the class call) when the pipeline is not one it models.
    """

    def __init__(self, table: np.ndarray, uncertain: np.ndarray, added: np.ndarray, pipeline: _Pipeline) -> None:
        self.table = table
        self.uncertain = uncertain
        self.added = added
        self.pipeline = pipeline

    @classmethod
    def for_backend(cls, backend: Any) -> TokenStarts | _Pipeline:
        """The table for a ``tokenizers.Tokenizer``, or the unsupported :class:`_Pipeline` saying why not."""
        pipeline = _pipeline(backend)
        if not pipeline.supported:
            return pipeline
        vocab = backend.get_vocab(with_added_tokens=True)
        added = backend.get_added_tokens_decoder()
        size = max(max(vocab.values(), default=-1), max(added, default=-1)) + 1
        table = np.zeros(size, dtype=np.int64)
        uncertain = np.zeros(size, dtype=bool)
        is_added = np.zeros(size, dtype=bool)
        byte_fallback, unk_id = _model_facts(backend, vocab)
        tokens = list(vocab)
        ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(tokens))
        # per character of all tokens at once, then summed per token (cumulative sums; tokens may be empty)
        cps = np.frombuffer("".join(tokens).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        ends = np.cumsum(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)))
        starts = ends - np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))

        def per_token(values: np.ndarray) -> np.ndarray:
            total = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
            return total[ends] - total[starts]

        if pipeline.byte_level:
            table[ids] = ends - starts  # each character of a byte-level token is one byte
            codes = np.zeros(0x200, dtype=bool)
            codes[[ord(c) for c in _byte_level_alphabet()]] = True
            foreign = (cps >= len(codes)) | ~codes[np.minimum(cps, len(codes) - 1)]
            uncertain[ids[per_token(foreign) > 0]] = True  # not a byte-level string: never produced
        else:
            utf8 = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
            table[ids] = per_token(utf8 - 2 * (cps == ord(_METASPACE)))  # ▁ (3 bytes) stands for a space
            if byte_fallback:
                table[[i for t, i in vocab.items() if len(t) == 6 and _BYTE_FALLBACK.fullmatch(t)]] = 1
        for i, tok in added.items():
            table[i] = len(tok.content.encode("utf-8"))
            is_added[i] = True
            # lstrip/rstrip swallow neighbouring whitespace; a normalized added token is matched after
            # normalization, so its span in the original text is not its content
            if tok.lstrip or tok.rstrip or (tok.normalized and (pipeline.normal_form or pipeline.prefix)):
                uncertain[i] = True
        if unk_id is not None and 0 <= unk_id < size:
            uncertain[unk_id] = True  # stands for any text the vocabulary lacks
        if pipeline.prefix is not None and any(tok.normalized for tok in added.values()):
            return _Pipeline(False, "normalized added tokens with a dummy-prefix space")
        return cls(table, uncertain, is_added, pipeline)

    def compute(self, texts: Sequence[str], ids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ok)``: each token's start character, and per row whether the derivation is proven.

        Starts of rows with ``ok[i] == False`` are meaningless and must be replaced by reference offsets.
        """
        n = len(texts)
        ids64 = ids.astype(np.int64, copy=False)
        if not len(ids64) or (ids64.min() >= 0 and ids64.max() < len(self.table)):  # as every encoder gives
            safe, lengths, bad_token = ids64, self.table[ids64], self.uncertain[ids64]
        else:
            in_range = (ids64 >= 0) & (ids64 < len(self.table))
            safe = np.where(in_range, ids64, 0)
            lengths = np.where(in_range, self.table[safe], 0)
            bad_token = ~in_range | self.uncertain[safe]
        row_len = np.diff(offsets)
        row_of = np.repeat(np.arange(n), row_len)
        if self.pipeline.prefix is not None and len(ids64):
            lengths = lengths - self._prefix_spaces(texts, safe, offsets, row_len)
        incl = np.cumsum(lengths)
        excl = incl - lengths
        total = np.concatenate(([0], incl))
        row_bytes = total[offsets[1:]] - total[offsets[:-1]]
        bad_rows = np.concatenate(([0], np.cumsum(bad_token)))
        ok = (bad_rows[offsets[1:]] - bad_rows[offsets[:-1]]) == 0
        local = excl - (total[offsets[:-1]])[row_of]  # each token's byte offset in its own text
        # an ASCII text has one byte per character (and is in every normal form): byte offsets are the starts
        ascii_rows = np.fromiter((t.isascii() for t in texts), dtype=bool, count=n)
        text_chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
        ok &= ~ascii_rows | (row_bytes == text_chars)
        if ascii_rows.all():
            return local, ok
        # bytes → characters for the other rows at once, through their non-ASCII characters only: a byte offset
        # is its character's index plus the extra bytes of the wide characters before it
        other = np.flatnonzero(~ascii_rows)
        cps = np.frombuffer("".join([texts[i] for i in other]).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        wide = np.flatnonzero(cps >= 0x80)  # character indexes, in the joined text of the other rows
        width = 2 + (cps[wide] >= 0x800).astype(np.int64) + (cps[wide] >= 0x10000)
        extra = np.zeros(len(wide) + 1, dtype=np.int64)  # extra bytes of the first j wide characters
        np.cumsum(width - 1, out=extra[1:])
        wide_byte = wide + extra[:-1]  # where each wide character starts, in bytes
        char_base = np.zeros(len(other) + 1, dtype=np.int64)
        np.cumsum(text_chars[other], out=char_base[1:])
        byte_base = char_base + extra[np.searchsorted(wide, char_base)]
        ok[other] &= row_bytes[other] == np.diff(byte_base)
        form = self.pipeline.normal_form
        if form is not None:
            ok[other] &= np.fromiter((unicodedata.is_normalized(form, texts[i]) for i in other.tolist()),
                                     dtype=bool, count=len(other))
        tokens = np.flatnonzero(~ascii_rows[row_of])
        rank = np.cumsum(~ascii_rows) - 1  # a row's place among the other rows
        sub_row = rank[row_of[tokens]]
        at = byte_base[:-1][sub_row] + local[tokens]  # the token's first byte, in the joined text
        before = np.searchsorted(wide_byte, at, side="right")  # wide characters starting at or before it
        chars = at - extra[before]  # right when every one of them ends before it (or there is none)
        last = np.maximum(before - 1, 0)
        inside = (before > 0) & (at < wide_byte[last] + width[last]) if len(wide) else np.zeros(len(at), bool)
        chars[inside] = wide[last[inside]]  # a token starting within a wide character starts at that character
        starts = local.copy()
        starts[tokens] = chars - char_base[:-1][sub_row]
        return starts, ok

    def _prefix_spaces(self, texts: Sequence[str], ids: np.ndarray, offsets: np.ndarray,
                       row_len: np.ndarray) -> np.ndarray:
        """1 for each token that carries a dummy-prefix ``▁`` the text does not have, else 0."""
        out = np.zeros(len(ids), dtype=np.int64)
        added = self.added[ids]
        if self.pipeline.prefix == "first":
            # Metaspace "first": the piece at offset 0 gets ▁ unless it starts with a space (or ▁) already
            firsts = offsets[:-1][row_len > 0]
            rows = np.flatnonzero(row_len > 0)
            needs = np.fromiter((not texts[r].startswith((" ", _METASPACE)) for r in rows), dtype=bool,
                                count=len(rows))
            out[firsts[needs & ~added[firsts]]] = 1
            return out
        # Prepend normalizer: every stretch of text between added tokens starts with an extra ▁
        previous_added = np.concatenate(([True], added[:-1]))
        row_start = np.zeros(len(ids), dtype=bool)
        row_start[offsets[:-1][row_len > 0]] = True
        out[~added & (previous_added | row_start)] = 1
        return out


# -- encoders --------------------------------------------------------------------------------------------------


class HFEncoder:
    """The reference: HF ``tokenizers`` (always installed). ``encode_batch`` ids with vocabulary-derived starts
    (turning its offsets into arrays costs more than the derivation), and its offsets for the rows the
    derivation cannot prove."""

    name = "tokenizers"

    def __init__(self, backend: Any) -> None:
        import tokenizers

        # apply_chat_template neither truncates nor pads: a tokenizer.json that sets either gets a private copy
        self.backend = plain_copy(backend) if backend.truncation or backend.padding else backend
        self.version = tokenizers.__version__
        self._starts: TokenStarts | _Pipeline | None = None  # built on first use, in the encode thread
        self._plain: Any = None
        self._newline: list[int] | None = None

    @property
    def token_starts(self) -> TokenStarts | None:
        """The vocabulary table, or None when the tokenizer's pipeline is not one it models."""
        if self._starts is None:
            self._starts = TokenStarts.for_backend(self.backend)
        return self._starts if isinstance(self._starts, TokenStarts) else None

    @property
    def starts_unsupported(self) -> str:
        return "" if self.token_starts is not None else self._starts.reason  # type: ignore[union-attr]

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Flat int32 ids and int64 offsets of ``texts``, encoded as apply_chat_template encodes."""
        if not texts:
            return np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        # encode_batch_fast: the same ids without tracking offsets (starts come from the vocabulary); with
        # tokenizers 0.23.3 on the 52,002 bench texts, ids included, 5.2-6.0 s wall / 9.7-11.2 s CPU against
        # encode_batch's 6.3-7.3 s / 11.4-13.3 s (2 threads, alternated runs on a shared machine)
        return flat_from_lists([e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)])

    def reference_rows(self, texts: Sequence[str]) -> list[tuple[list[int], np.ndarray]]:
        """Ids and character start offsets from ``encode_batch`` (offset-tracking), per row."""
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False) if texts else []
        return [(e.ids, np.fromiter((s for s, _ in e.offsets), dtype=np.int64, count=len(e.ids))) for e in encs]

    def encode_with_starts(self, texts: Sequence[str]) -> EncodedBatch:
        """Ids, offsets and each token's start character (see the module doc for how starts are proven)."""
        if self.token_starts is None:
            return _assemble(self.reference_rows(texts), 0)
        ids, offsets = self.encode(texts)
        return self._with_starts(texts, ids, offsets)

    def _with_starts(self, texts: Sequence[str], ids: np.ndarray, offsets: np.ndarray) -> EncodedBatch:
        assert self.token_starts is not None
        starts, ok = self.token_starts.compute(texts, ids, offsets)
        if ok.all():
            return EncodedBatch(ids, offsets, starts, 0)
        bad = np.flatnonzero(~ok)
        fixed = self.reference_rows([texts[i] for i in bad])
        rows: list[tuple[Any, np.ndarray]] = []
        it = iter(fixed)
        bad_set = set(bad.tolist())
        replaced = 0
        for i in range(len(texts)):
            a, b = offsets[i], offsets[i + 1]
            if i in bad_set:
                rows.append(next(it))
                replaced += not np.array_equal(ids[a:b], rows[-1][0])
            else:
                rows.append((ids[a:b], starts[a:b]))
        out = _assemble(rows, len(bad))
        out.replaced_rows = replaced
        return out

    # -- rows with ranges that must stay plain text -----------------------------------------------------------

    def encode_with_plain_ranges(self, text: str, ranges: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Encode ``text`` with each ``[start, end)`` range as plain text, as sanitize_control_tokens does.

        Returns ``(ids, starts)``. ``ranges`` are sorted, disjoint character ranges of ``text``; each is the
        text transformers wraps in markers (one control token as it appears in content). An empty range
        ``(p, p)`` is a lone marker: nothing is encoded there, but the text on its two sides is encoded
        separately (a template that splits a marked token leaves such markers). The reference splits the
        rendered chat at the markers and encodes the pieces one by one: the first as it is, every later one
        behind a newline that is then dropped (so a SentencePiece tokenizer adds no prefix space mid-text),
        and the ranges with no added token matched at all (normalizer, pre-tokenizer and model only). Raises
        :class:`PlainTextError` when a range still encodes to the control token it spells.
        """
        pieces: list[tuple[int, int, bool]] = []
        pos = 0
        for start, end in ranges:
            if start < pos or end < start or end > len(text):
                raise ValueError(f"ranges must be sorted, disjoint and inside the text: {(start, end)!r}")
            pieces.append((pos, start, False))
            if end > start:
                pieces.append((start, end, True))
            pos = end
        pieces.append((pos, len(text), False))
        ids: list[int] = []
        starts: list[int] = []
        for k, (a, b, plain) in enumerate(pieces):
            piece = text[a:b]
            if k == 0:
                enc = self.backend.encode(piece, add_special_tokens=False)
                ids.extend(enc.ids)
                starts.extend(a + s for s, _ in enc.offsets)
                continue
            if not piece:
                continue
            piece_ids, piece_starts = self._encode_piece(piece, plain)
            if plain:
                own = self.backend.token_to_id(piece)
                if own is not None and own in piece_ids:
                    raise PlainTextError(f"cannot encode {piece!r} as text: the tokenizer produces it from plain text")
            ids.extend(piece_ids)
            starts.extend(a + s for s in piece_starts)
        return np.asarray(ids, dtype=np.int32), np.asarray(starts, dtype=np.int64)

    def _encode_piece(self, piece: str, plain: bool) -> tuple[list[int], list[int]]:
        tokenizer = self._plain_backend() if plain else self.backend
        if self._newline is None:
            self._newline = self.backend.encode("\n", add_special_tokens=False).ids
        newline = self._newline
        behind = tokenizer.encode("\n" + piece, add_special_tokens=False)
        if behind.ids[:len(newline)] == newline:
            return behind.ids[len(newline):], [max(s - 1, 0) for s, _ in behind.offsets[len(newline):]]
        enc = tokenizer.encode(piece, add_special_tokens=False)
        return enc.ids, [s for s, _ in enc.offsets]

    def _plain_backend(self) -> Any:
        """A copy with no added tokens: transformers' ``_encode_without_added_tokens`` matches none, special or
        not (``encode_special_tokens`` would still match non-special ones such as Qwen3's ``<think>``)."""
        if self._plain is None:
            from tokenizers import Tokenizer

            data = json.loads(self.backend.to_str())
            data["added_tokens"] = []
            self._plain = Tokenizer.from_str(json.dumps(data))
            self._plain.no_truncation()
            self._plain.no_padding()
        return self._plain

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version,
                "starts": "vocabulary" if self.token_starts is not None else "offsets",
                **({"starts_reason": self.starts_unsupported} if self.starts_unsupported else {})}


def _assemble(rows: Sequence[tuple[Any, np.ndarray]], reference_rows: int) -> EncodedBatch:
    ids, offsets = flat_from_lists([r[0] for r in rows])
    starts = np.concatenate([r[1] for r in rows]).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)
    return EncodedBatch(ids, offsets, starts, reference_rows)


class FastEncoder:
    """``fastokens``: the same ids as the reference, as one flat buffer per batch.

    Chosen over ``gigatoken`` after measuring both on the 52,002 bench texts (``bin/bench_encoders.py``): at
    least as fast to flat arrays (0.4-0.6 s against 0.45-1.0 s, both ~50-80x HF on a shared 2-core machine),
    no dependencies (gigatoken needs awkward and typer), the Arrow list layout straight out of Rust, and
    special-token matching that can be switched off. Against it: it loads a 150k vocabulary in ~3 s
    (gigatoken ~1.5 s, HF ~1 s), hence :class:`AutoEncoder`'s lazy load, and it refuses Metaspace
    pre-tokenizers and Unigram models (those stay on the reference). Starts come from :class:`TokenStarts`;
    rows it cannot prove, and every row when the tokenizer's pipeline is not modelled, take ids and offsets
    from the reference.
    """

    name = FAST_PACKAGE

    def __init__(self, backend: Any, reference: HFEncoder | None = None, loaded: Any = None) -> None:
        """``loaded``: a fastokens tokenizer already read from the file ``backend`` was loaded from."""
        from importlib.metadata import version

        import fastokens

        self.version = version(FAST_PACKAGE)
        self.reference = reference or HFEncoder(backend)
        self.fast = loaded if loaded is not None else fastokens.Tokenizer.from_json_str(self.reference.backend.to_str())
        self.fast.no_truncation()
        self.fast.no_padding()

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            return np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
        raw_ids, raw_offsets = self.fast.encode_batch_flat(list(texts), add_special_tokens=False)
        ids = np.frombuffer(raw_ids, dtype=np.uint32).astype(np.int32)
        offsets = np.frombuffer(raw_offsets, dtype=np.uint64).astype(np.int64)
        return ids, offsets

    def encode_with_starts(self, texts: Sequence[str]) -> EncodedBatch:
        if self.reference.token_starts is None:
            return self.reference.encode_with_starts(texts)
        ids, offsets = self.encode(texts)
        return self.reference._with_starts(texts, ids, offsets)

    def encode_with_plain_ranges(self, text: str, ranges: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        return self.reference.encode_with_plain_ranges(text, ranges)

    def describe(self) -> dict[str, Any]:
        ref = self.reference.describe()
        return {"name": self.name, "version": self.version, "starts": ref["starts"],
                **({"starts_reason": ref["starts_reason"]} if "starts_reason" in ref else {})}


class FastLoad:
    """fastokens reading a ``tokenizer.json`` in a thread (it does not hold the GIL meanwhile), begun by a run
    before anything else so the load overlaps opening the tokenizer, the template and the input. Use it only for
    a reference loaded from that same file, unchanged; :class:`AutoEncoder` checks the ids as for any load."""

    def __init__(self, path: str | Any) -> None:
        self.path = str(path)
        self._result: list[Any] = []
        # not a daemon: a daemon thread still inside fastokens when the interpreter exits (a run that failed
        # early) is torn down mid-Rust and aborts the process; exit waits for the load instead
        self._thread = threading.Thread(target=self._load, name="dataprep-fast-read")
        self._thread.start()

    def _load(self) -> None:
        try:
            import fastokens

            self._result.append(fastokens.Tokenizer.from_file(self.path))
        except BaseException as exc:  # noqa: BLE001 - raised again by tokenizer(), in the thread that uses it
            self._result.append(exc)

    def tokenizer(self) -> Any:
        """The loaded tokenizer (waiting for it); raises what loading raised (ValueError: fastokens refuses it)."""
        self._thread.join()
        if isinstance(self._result[0], BaseException):
            raise self._result[0]
        return self._result[0]


def fast_available() -> bool:
    """Whether the optional fast backend is installed (``pip install "dataprep[fast]"``)."""
    from importlib.util import find_spec

    return find_spec(FAST_PACKAGE) is not None


def mismatched_rows(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Indexes of rows whose ids differ between two flat encodings of the same texts."""
    (ids_a, off_a), (ids_b, off_b) = a, b
    if np.array_equal(off_a, off_b) and np.array_equal(ids_a, ids_b):
        return []
    n = len(off_a) - 1
    return [i for i in range(n)
            if not np.array_equal(ids_a[off_a[i]:off_a[i + 1]], ids_b[off_b[i]:off_b[i + 1]])]


@dataclass
class AutoEncoder:
    """The encoder a run uses: the fast backend once it has agreed with the reference, else the reference.

    ``choice`` is ``auto`` (fast when installed and identical on the check), ``hf`` (reference only) or
    ``fast`` (fast required: an error when it is not installed or cannot load the tokenizer; a disagreement is
    still never written, it switches to the reference like ``auto``).

    Loading costs: fastokens needs 2-3 s to load a 150k-token vocabulary (HF: 0.5-1 s), as long as HF takes to
    encode some 15 MB of text. So ``auto`` starts on the reference and loads the fast backend only once
    ``fast_after_chars`` characters have been encoded (a small run never pays the load; pass 0 when the input is
    known to be large). The batch at which it loads is the check: the fast backend must give the reference's
    ids on :data:`SELF_CHECK_SAMPLE` plus every text of that batch. Every later batch re-checks ``spot_rows``
    rows spread over it, and any row whose fast ids fail the byte-length proof is compared with the
    reference's. On any disagreement the batch at hand is encoded by the reference, and so is the rest of the
    run. The spot check is a sample: rows of earlier batches that were not sampled are not re-checked.
    :meth:`describe` says what ran, for the manifest (``batches`` counts batches per encoder).

    ``background=True`` (what ``dataprep tokenize`` uses) loads in a thread instead: fastokens builds its
    vocabulary without holding the GIL, so the load runs on the other core while the run starts and the first
    batch is read and rendered. ``fast`` then starts loading at once, and ``auto`` when :meth:`prefetch` says
    the input is large; the first batch encoded waits for the load. With ``fast``, a tokenizer fastokens cannot
    load is reported (UsageProblem, as without a thread) at that batch or at :meth:`describe`, so such a run
    still fails before anything is written.
    """

    backend: Any
    choice: str = "auto"
    fast_after_chars: int = 2_000_000
    spot_rows: int = 8
    background: bool = False
    preload: FastLoad | None = None  # the fast backend, already being read from the reference's own file
    reference: HFEncoder = field(init=False)
    fast: FastEncoder | None = field(init=False, default=None)
    # off | waiting (to load) | loading (in a thread) | loaded (not checked yet) | on
    state: str = field(init=False, default="off")
    chars_seen: int = field(init=False, default=0)
    checked_texts: int = field(init=False, default=0)
    reference_rows: int = field(init=False, default=0)
    reason: str = field(init=False, default="")
    batches: dict[str, int] = field(init=False, default_factory=dict)
    _loader: threading.Thread | None = field(init=False, default=None, repr=False)
    _loaded: list[Any] = field(init=False, default_factory=list, repr=False)  # the thread's FastEncoder or error

    def __post_init__(self) -> None:
        from dataprep.errors import MissingExtra, UsageProblem

        if self.choice not in ENCODER_CHOICES:
            raise UsageProblem(f"unknown encoder {self.choice!r}", hint=f"one of {', '.join(ENCODER_CHOICES)}")
        self.reference = HFEncoder(self.backend)
        if self.choice == "hf":
            self.reason = "the reference was asked for"
        elif not fast_available():
            if self.choice == "fast":
                raise MissingExtra(FAST_PACKAGE, "fast")
            self.reason = f"{FAST_PACKAGE} is not installed"
        elif self.choice == "fast":
            if self.background:
                self._start_loading()
            elif not self._load():
                raise UsageProblem(self.reason, hint="use --encoder auto or hf")
        else:
            self.state = "waiting"
            self.reason = f"fewer than {self.fast_after_chars:,} characters to encode"

    def prefetch(self, input_bytes: int) -> None:
        """The input's size, known before the first batch: ``auto`` with ``background`` starts loading the fast
        backend now when the input is large enough for it to pay (its bytes are at least ``fast_after_chars``)."""
        if self.background and self.state == "waiting" and input_bytes >= self.fast_after_chars:
            self._start_loading()

    def _start_loading(self) -> None:
        def load() -> None:
            try:
                self._loaded.append(self._fast_encoder())
            except BaseException as exc:  # noqa: BLE001 - handed to the encode thread, which decides
                self._loaded.append(exc)

        self.state = "loading"
        self._loader = threading.Thread(target=load, name="dataprep-fast-load")  # not a daemon: see FastLoad
        self._loader.start()

    def _finish_loading(self) -> None:
        """Wait for the loading thread; then it is as if :meth:`_load` had run here."""
        from dataprep.errors import UsageProblem

        assert self._loader is not None
        self._loader.join()
        result = self._loaded.pop()
        if isinstance(result, FastEncoder):
            self.fast, self.state = result, "loaded"
            return
        if not isinstance(result, ValueError):
            raise result
        self.state, self.reason = "off", f"{FAST_PACKAGE} cannot load this tokenizer: {result}"
        if self.choice == "fast":
            raise UsageProblem(self.reason, hint="use --encoder auto or hf")

    @property
    def active(self) -> HFEncoder | FastEncoder:
        return self.fast if self.state == "on" and self.fast is not None else self.reference

    def encode_with_starts(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode one batch: :meth:`encode_ids` then :meth:`with_starts`, in this thread."""
        return self.with_starts(self.encode_ids(texts))

    def encode_ids(self, texts: Sequence[str]) -> IdsBatch:
        """The encode thread's part of a batch: ids from the Rust encoders (and the checks against the reference,
        also Rust calls). Token starts are many small numpy steps that need the GIL; done here they would wait
        for it behind the thread rendering the next batch at every step, so :meth:`with_starts` does them in
        that thread instead. One batch at a time."""
        if self.state == "loading":
            self._finish_loading()
        if self.state == "waiting" and self.chars_seen >= self.fast_after_chars:
            self._load()
        self.chars_seen += sum(map(len, texts))
        checked_whole = False
        if self.state == "loaded":
            if not self._agrees([*SELF_CHECK_SAMPLE, *texts]):
                return self._reference_ids(texts)
            self.state, checked_whole = "on", True
            self.reason = "identical to the reference on the start-up check"
        fast = self.fast
        if self.state != "on" or fast is None:
            return self._reference_ids(texts)
        if self.reference.token_starts is None:  # starts from reference offsets: the fast ids add nothing
            return IdsBatch(texts, None, None, fast, self.reference.encode_with_starts(texts))
        ids, offsets = fast.encode(texts)
        spot = 0 if checked_whole else min(self.spot_rows, len(texts))
        picks = np.unique(np.linspace(0, len(texts) - 1, num=spot).astype(int))
        if not self._agrees([texts[i] for i in picks], (ids, offsets), picks):
            # a sampled row differed from the reference: nothing else the fast backend encoded in this batch is
            # trusted either
            return self._reference_ids(texts)
        return IdsBatch(texts, ids, offsets, fast)

    def _reference_ids(self, texts: Sequence[str]) -> IdsBatch:
        if self.reference.token_starts is None:
            return IdsBatch(texts, None, None, None, self.reference.encode_with_starts(texts))
        return IdsBatch(texts, *self.reference.encode(texts), None)

    def with_starts(self, batch: IdsBatch) -> EncodedBatch:
        """The rest of a batch, in the thread that uses it: each token's start from the vocabulary, and reference
        offsets for the rows that derivation cannot prove. A fast row whose ids differ from the reference's
        there stops the fast backend for the rest of the run, and the batch is encoded again by the reference;
        so is a batch the fast backend encoded after it was stopped (the encode thread had already begun it)."""
        if batch.done is not None:
            return self._count(batch.done, batch.fast)
        if batch.fast is not None and batch.fast is not self.fast:
            return self._count(self.reference.encode_with_starts(batch.texts), None)
        assert batch.ids is not None and batch.offsets is not None
        out = self.reference._with_starts(batch.texts, batch.ids, batch.offsets)
        if batch.fast is not None and out.replaced_rows:
            # a row whose fast ids failed the byte check differed from the reference
            self._give_up(f"on {out.replaced_rows} row(s) of a batch")
            return self._count(self.reference.encode_with_starts(batch.texts), None)
        return self._count(out, batch.fast)

    def encode_with_plain_ranges(self, text: str, ranges: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        return self.reference.encode_with_plain_ranges(text, ranges)

    def _fast_encoder(self) -> FastEncoder:
        return FastEncoder(self.backend, self.reference, self.preload.tokenizer() if self.preload else None)

    def _load(self) -> bool:
        try:
            self.fast = self._fast_encoder()
        except ValueError as exc:  # fastokens refuses pipelines it does not implement (Metaspace, Unigram, ...)
            self.state, self.reason = "off", f"{FAST_PACKAGE} cannot load this tokenizer: {exc}"
            return False
        self.state = "loaded"
        return True

    def _agrees(self, texts: list[str], flat: tuple[np.ndarray, np.ndarray] | None = None,
                picks: np.ndarray | None = None) -> bool:
        """Whether the fast backend's ids (``flat`` at rows ``picks``, or encoded now) equal the reference's."""
        assert self.fast is not None
        if not texts:
            return True
        self.checked_texts += len(texts)
        theirs = self.reference.encode(texts)
        if flat is None:
            ours = self.fast.encode(texts)
        else:
            assert picks is not None
            ids, offsets = flat
            ours = flat_from_lists([ids[offsets[i]:offsets[i + 1]] for i in picks])
        bad = mismatched_rows(ours, theirs)
        if bad:
            self._give_up(f"on a checked text ({texts[bad[0]][:40]!r})")
            return False
        return True

    def _give_up(self, where: str) -> None:
        self.reason = f"{FAST_PACKAGE} disagreed with the reference {where}; the reference encoded from there on"
        self.state = "off"
        self.fast = None

    def _count(self, out: EncodedBatch, fast: FastEncoder | None) -> EncodedBatch:
        self.reference_rows += out.reference_rows
        name = fast.name if fast is not None else self.reference.name
        self.batches[name] = self.batches.get(name, 0) + 1
        return out

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the encoder that ran last (name, version), why, and what was checked."""
        if self.state == "loading":
            self._finish_loading()
        return {**self.active.describe(), "requested": self.choice, "reason": self.reason,
                "checked_texts": self.checked_texts, "reference_offset_rows": self.reference_rows,
                "batches": dict(sorted(self.batches.items()))}
