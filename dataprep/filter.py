"""Rule-based filtering of canonical records, one polars pass per batch.

Rules run in a fixed order and the first one a record fails is its reject reason, so the same record always
gets the same reason whatever other rules are switched on:

1. ``empty_response``      the response is empty after stripping whitespace (always on)
2. ``response_too_short``  stripped response shorter than ``min_response_chars``
3. ``response_too_long``   stripped response longer than ``max_response_chars``
4. ``prompt_too_short``    stripped user text (prompt, newline, query; :func:`records.user_text`) shorter than
                           ``min_prompt_chars``
5. ``too_long``            all text (prefix + prompt + query + response + every history turn, characters summed,
                           nothing stripped, no separators counted) longer than ``max_chars``
6. ``banned_word``         a banned word or phrase occurs as a whole word (not touching a letter, digit or
                           underscore on either side), in any case
7. ``regex_match``         a ``drop_regex`` pattern matches
8. ``duplicate``           same normalized content as a record kept earlier (only with ``dedup="exact"``)

Lengths are counted in Unicode code points; "whitespace" is Unicode White_Space. Banned words and patterns
look at the record's text joined with newlines in conversation order: prefix, history turns, prompt, query,
response. Patterns use Rust ``regex`` syntax (polars' engine): Python syntax without look-around or
back-references.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from dataprep.errors import InputError, UsageProblem
from dataprep.io import Batch
from dataprep.records import Record
from dataprep.stage import Rejected, canonical_part, remap, survivors

STAGE = "filter"
REASONS = (
    "empty_response",
    "response_too_short",
    "response_too_long",
    "prompt_too_short",
    "too_long",
    "banned_word",
    "regex_match",
    "duplicate",
)
DEDUP_MODES = ("exact",)
TEXT_COLUMNS = ("prefix", "prompt", "query", "response")


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds are inclusive bounds; ``None`` switches a rule off."""

    min_response_chars: int | None = None
    max_response_chars: int | None = None
    min_prompt_chars: int | None = None
    max_chars: int | None = None
    banned_words: tuple[str, ...] = ()
    drop_regex: tuple[str, ...] = ()
    dedup: str | None = None

    def __post_init__(self) -> None:
        for name in ("min_response_chars", "max_response_chars", "min_prompt_chars", "max_chars"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageProblem(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        if self.dedup is not None and self.dedup not in DEDUP_MODES:
            raise UsageProblem(f"unknown dedup mode {self.dedup!r}; use one of {', '.join(DEDUP_MODES)}")
        for pattern in self.drop_regex:
            try:
                pl.select(pl.lit("").str.contains(pattern))
            except pl.exceptions.ComputeError as exc:
                raise UsageProblem(f"--drop-regex {pattern!r} is not a valid regex: {_regex_error(str(exc))}") from None


def _regex_error(message: str) -> str:
    for line in message.splitlines():
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    return message.splitlines()[0]


def load_banned_words(path: str) -> tuple[str, ...]:
    """One word or phrase per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"invalid UTF-8 at byte {exc.start}") from None
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    words = [line.strip() for line in text.splitlines()]
    return tuple(w for w in words if w and not w.startswith("#"))


@dataclass
class DedupState:
    """Content digests of the records kept so far, mapped to their ids.

    Exact dedup keeps the *first* occurrence, which is the one place where filter depends on input order:
    the same rows in another order keep other ids (the kept content is the same).
    About 150 bytes of memory per distinct record kept.
    """

    seen: dict[bytes, str] = field(default_factory=dict)


def content_key(record: Record) -> bytes:
    """Digest of prefix/prompt/query/response/history, casefolded with whitespace runs collapsed to one space.

    Fields are joined with U+001F, which ``str.split()`` treats as whitespace, so no field can contain the
    separator after normalization and two different records never share a key text.
    """
    parts = [record.get("prefix") or "", record.get("prompt") or "", record.get("query") or "",
             record.get("response") or ""]
    for pair in record.get("history") or []:
        parts.extend(pair)
    key = "\x1f".join(" ".join(str(p).casefold().split()) for p in parts)
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()


RUST_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def _literal(text: str) -> str:
    return "".join("\\" + ch if ch in RUST_REGEX_META else ch for ch in text)


def _banned_pattern(words: tuple[str, ...]) -> str:
    """Whole word: the match is neither preceded nor followed by a word character (Unicode ``\\w``).

    Longer phrases come first so that a phrase wins over a word it starts with.
    """
    alternatives = "|".join(_literal(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))
    return rf"(?i)(?:^|[^\w])({alternatives})(?:$|[^\w])"


def _frame(records: list[Record]) -> pl.DataFrame:
    history_text, history_chars = [], []
    for r in records:
        turns = [t for pair in (r.get("history") or []) for t in pair]
        history_text.append("\n".join(turns))
        history_chars.append(sum(len(t) for t in turns))
    columns: dict[str, list] = {c: [r.get(c) or "" for r in records] for c in TEXT_COLUMNS}
    columns["history"] = history_text
    columns["history_chars"] = history_chars
    schema = {**dict.fromkeys(TEXT_COLUMNS, pl.String), "history": pl.String, "history_chars": pl.Int64}
    return pl.DataFrame(columns, schema=schema)


def _measure(df: pl.DataFrame, options: FilterOptions) -> pl.DataFrame:
    """The quantities the rules test, and ``reason``: the first rule failed, or null when all pass."""
    prompt, query = pl.col("prompt"), pl.col("query")
    user = pl.when((prompt != "") & (query != "")).then(pl.concat_str([prompt, query], separator="\n")) \
        .otherwise(pl.concat_str([prompt, query]))
    exprs: list[pl.Expr] = [
        pl.col("response").str.strip_chars().str.len_chars().cast(pl.Int64).alias("response_chars"),
        user.str.strip_chars().str.len_chars().cast(pl.Int64).alias("prompt_chars"),
        (pl.sum_horizontal(pl.col(c).str.len_chars().cast(pl.Int64) for c in TEXT_COLUMNS)
         + pl.col("history_chars")).alias("total_chars"),
    ]
    text = pl.concat_str([pl.col(c) for c in ("prefix", "history", "prompt", "query", "response")], separator="\n")
    if options.banned_words:
        exprs.append(text.str.extract(_banned_pattern(options.banned_words), 1).alias("banned"))
    for i, pattern in enumerate(options.drop_regex):
        exprs.append(text.str.contains(pattern).alias(f"regex_{i}"))
    measured = df.select(exprs)

    rules: list[tuple[str, pl.Expr]] = [("empty_response", pl.col("response_chars") == 0)]
    if options.min_response_chars is not None:
        rules.append(("response_too_short", pl.col("response_chars") < options.min_response_chars))
    if options.max_response_chars is not None:
        rules.append(("response_too_long", pl.col("response_chars") > options.max_response_chars))
    if options.min_prompt_chars is not None:
        rules.append(("prompt_too_short", pl.col("prompt_chars") < options.min_prompt_chars))
    if options.max_chars is not None:
        rules.append(("too_long", pl.col("total_chars") > options.max_chars))
    if options.banned_words:
        rules.append(("banned_word", pl.col("banned").is_not_null()))
    rules.extend(("regex_match", pl.col(f"regex_{i}")) for i in range(len(options.drop_regex)))
    reason: pl.Expr = pl.when(rules[0][1]).then(pl.lit(rules[0][0]))
    for name, failed in rules[1:]:
        reason = reason.when(failed).then(pl.lit(name))
    return measured.with_columns(reason.otherwise(pl.lit(None, dtype=pl.String)).alias("reason"))


def filter_batch(
    records: list[Record], options: FilterOptions, seen: DedupState | None = None
) -> tuple[list[Record], list[Rejected]]:
    """Split ``records`` into kept (in input order) and rejected, each reject with its rule's reason.

    Every rule but dedup looks at one record alone. Dedup (``options.dedup == "exact"``) needs ``seen``,
    shared across the batches of one run, and sees only records that passed every other rule.
    """
    if not records:
        return [], []
    if options.dedup and seen is None:
        raise ValueError("dedup needs a DedupState shared across batches")
    measured = _measure(_frame(records), options)
    reasons = measured["reason"].to_list()
    kept: list[Record] = []
    rejected: list[Rejected] = []
    failing = [i for i, r in enumerate(reasons) if r is not None]
    rows = dict(zip(failing, measured.filter(pl.col("reason").is_not_null()).to_dicts(), strict=True))
    for i, record in enumerate(records):
        if i in rows:
            rejected.append(Rejected(record, reasons[i], _detail(reasons[i], rows[i], options), index=i))
        elif options.dedup and seen is not None:
            key = content_key(record)
            first = seen.seen.get(key)
            if first is not None:
                rejected.append(Rejected(record, "duplicate", f"same content as kept id {first}", index=i))
            else:
                seen.seen[key] = str(record.get("id", ""))
                kept.append(record)
        else:
            kept.append(record)
    return kept, rejected


def _detail(reason: str, row: dict, options: FilterOptions) -> str:
    if reason == "empty_response":
        return "response is empty after stripping whitespace"
    if reason == "response_too_short":
        return f"response has {row['response_chars']} chars, minimum is {options.min_response_chars}"
    if reason == "response_too_long":
        return f"response has {row['response_chars']} chars, maximum is {options.max_response_chars}"
    if reason == "prompt_too_short":
        return f"prompt has {row['prompt_chars']} chars, minimum is {options.min_prompt_chars}"
    if reason == "too_long":
        return f"record has {row['total_chars']} chars of text, maximum is {options.max_chars}"
    if reason == "banned_word":
        word = {w.casefold(): w for w in options.banned_words}.get(row["banned"].casefold(), row["banned"])
        return f"contains banned word {word!r}"
    pattern = next(p for i, p in enumerate(options.drop_regex) if row[f"regex_{i}"])
    return f"matches --drop-regex {pattern!r}"


class FilterStage:
    """``filter`` as a stage: the rules of ``options``, with one dedup memory shared by all batches of a run."""

    name = STAGE

    def __init__(self, options: FilterOptions) -> None:
        self.options = options
        self.seen = DedupState() if options.dedup else None

    def process(self, batch: Batch) -> tuple[Batch, list[Rejected]]:
        part, positions, malformed = canonical_part(batch)
        kept, rejected = filter_batch(part.records, self.options, self.seen)
        rejected = malformed + remap(rejected, positions)
        return survivors(batch, kept, rejected), rejected

    def finish(self) -> tuple[()]:
        return ()

    def facts(self) -> dict[str, Any]:
        return {}
