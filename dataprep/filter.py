"""Rule-based filtering of canonical records: one rule table, measured a batch at a time, then the stateful rules.

Rules run in a fixed order and the first one a record fails is its reject reason, so the same record always
gets the same reason whatever other rules are switched on. :data:`RULES` is the one place a rule is defined
(its reason, what it measures, when it fails, its detail text); ``REASONS``, the measures and the
details all derive from it:

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
8. ``contaminated``        shares ``ngram`` consecutive normalized words with a row of an evaluation file
                           (``decontaminate``; :mod:`dataprep.decontam`)
9. ``duplicate``           same normalized content as a record kept earlier (``dedup="exact"`` or ``"near"``)
10. ``near_duplicate``     estimated Jaccard similarity of 5-character shingles at least ``threshold`` with a
                           record kept earlier (``dedup="near"``; :mod:`dataprep.dedup`)

Lengths are counted in Unicode code points; "whitespace" is Unicode White_Space. Banned words and patterns
look at the record's text joined with newlines in conversation order: prefix, history turns, prompt, query,
response. Patterns use Rust ``regex`` syntax (polars' engine): Python syntax without look-around or
back-references. Rules 1-8 look at one record alone; 9 and 10 keep the first of each group in input order
and so need state shared by the batches of a run (:class:`FilterState`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataprep.decontam import DEFAULT_NGRAM, EvalIndex
from dataprep.dedup import DEFAULT_THRESHOLD, NearDedup
from dataprep.errors import InputError, UsageProblem
from dataprep.io import Batch
from dataprep.records import Record, user_text
from dataprep.stage import Rejected, canonical_part, remap, survivors

STAGE = "filter"
DEDUP_MODES = ("exact", "near")
TEXT_COLUMNS = ("prefix", "prompt", "query", "response")


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds are inclusive bounds; ``None`` switches a rule off.

    ``dedup="near"`` drops exact duplicates first (reason ``duplicate``), then near duplicates at
    ``threshold``. ``decontaminate`` names evaluation files; ``ngram`` is the overlap length in words.
    """

    min_response_chars: int | None = None
    max_response_chars: int | None = None
    min_prompt_chars: int | None = None
    max_chars: int | None = None
    banned_words: tuple[str, ...] = ()
    drop_regex: tuple[str, ...] = ()
    dedup: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    decontaminate: tuple[str, ...] = ()
    ngram: int = DEFAULT_NGRAM

    def __post_init__(self) -> None:
        for name in ("min_response_chars", "max_response_chars", "min_prompt_chars", "max_chars"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageProblem(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        if self.dedup is not None and self.dedup not in DEDUP_MODES:
            raise UsageProblem(f"unknown dedup mode {self.dedup!r}; use one of {', '.join(DEDUP_MODES)}")
        if not 0 < self.threshold <= 1:
            raise UsageProblem(f"--threshold must be above 0 and at most 1, got {self.threshold}")
        if self.ngram < 1:
            raise UsageProblem(f"--ngram must be at least 1, got {self.ngram}")
        for pattern in self.drop_regex:
            import polars as pl

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


# --- measures: the per-row quantities the row rules test ---
#
# Lengths are plain Python over the records (a batch of lengths costs less than building a frame); the text rules
# run polars' Rust regex engine over a frame of the joined text, imported only when one of them is on.

# Unicode White_Space, the set polars' strip_chars removes: str.strip() alone also strips U+001C..U+001F.
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
               "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _response_chars(records: list[Record], options: FilterOptions) -> list[int]:
    return [len((r.get("response") or "").strip(WHITE_SPACE)) for r in records]


def _prompt_chars(records: list[Record], options: FilterOptions) -> list[int]:
    return [len(user_text(r).strip(WHITE_SPACE)) for r in records]


def _total_chars(records: list[Record], options: FilterOptions) -> list[int]:
    return [sum(len(r.get(c) or "") for c in TEXT_COLUMNS) + sum(len(t) for pair in r.get("history") or []
                                                                  for t in pair) for r in records]


def _text_frame(records: list[Record]) -> Any:
    """Each record's text joined with newlines in conversation order (prefix, history, prompt, query, response)."""
    import polars as pl

    texts = ["\n".join([r.get("prefix") or "", "\n".join(t for pair in r.get("history") or [] for t in pair),
                        r.get("prompt") or "", r.get("query") or "", r.get("response") or ""]) for r in records]
    return pl.DataFrame({"text": texts}, schema={"text": pl.String})


def _banned(records: list[Record], options: FilterOptions) -> list[str | None]:
    import polars as pl

    pattern = _banned_pattern(options.banned_words)
    return _text_frame(records).select(pl.col("text").str.extract(pattern, 1))["text"].to_list()


def _first_regex(records: list[Record], options: FilterOptions) -> list[int | None]:
    """The index of the first ``drop_regex`` pattern that matches, or None."""
    import polars as pl

    expr = pl.lit(None, dtype=pl.Int64)
    for i in reversed(range(len(options.drop_regex))):
        expr = pl.when(pl.col("text").str.contains(options.drop_regex[i])).then(pl.lit(i, dtype=pl.Int64)) \
            .otherwise(expr)
    return _text_frame(records).select(expr.alias("regex"))["regex"].to_list()


MEASURES: dict[str, Callable[[list[Record], FilterOptions], list[Any]]] = {
    "response_chars": _response_chars,
    "prompt_chars": _prompt_chars,
    "total_chars": _total_chars,
    "banned": _banned,
    "regex": _first_regex,
}


def _banned_detail(word: str, options: FilterOptions) -> str:
    spelled = {w.casefold(): w for w in options.banned_words}.get(word.casefold(), word)
    return f"contains banned word {spelled!r}"


@dataclass(frozen=True)
class Rule:
    """One filter rule. A row rule names a measure and fails where ``fails(measure)`` is true; a stateful
    rule (no measure) is decided by :class:`FilterState` over the rows every rule before it kept.
    ``detail(value, options)`` explains a reject from the measured value or the state's finding."""

    reason: str
    help: str
    active: Callable[[FilterOptions], bool]
    detail: Callable[[Any, FilterOptions], str]
    measure: str | None = None
    fails: Callable[[Any, FilterOptions], bool] | None = None


def _always(options: FilterOptions) -> bool:
    return True


RULES: tuple[Rule, ...] = (
    Rule("empty_response", "the response is empty after stripping whitespace (always on)", _always,
         lambda v, o: "response is empty after stripping whitespace",
         "response_chars", lambda m, o: m == 0),
    Rule("response_too_short", "stripped response shorter than --min-response-chars",
         lambda o: o.min_response_chars is not None,
         lambda v, o: f"response has {v} chars, minimum is {o.min_response_chars}",
         "response_chars", lambda m, o: m < o.min_response_chars),
    Rule("response_too_long", "stripped response longer than --max-response-chars",
         lambda o: o.max_response_chars is not None,
         lambda v, o: f"response has {v} chars, maximum is {o.max_response_chars}",
         "response_chars", lambda m, o: m > o.max_response_chars),
    Rule("prompt_too_short", "stripped user turn shorter than --min-prompt-chars",
         lambda o: o.min_prompt_chars is not None,
         lambda v, o: f"prompt has {v} chars, minimum is {o.min_prompt_chars}",
         "prompt_chars", lambda m, o: m < o.min_prompt_chars),
    Rule("too_long", "all text longer than --max-chars", lambda o: o.max_chars is not None,
         lambda v, o: f"record has {v} chars of text, maximum is {o.max_chars}",
         "total_chars", lambda m, o: m > o.max_chars),
    Rule("banned_word", "a --banned-words word or phrase, whole word, any case", lambda o: bool(o.banned_words),
         _banned_detail, "banned", lambda m, o: m is not None),
    Rule("regex_match", "a --drop-regex pattern matches", lambda o: bool(o.drop_regex),
         lambda v, o: f"matches --drop-regex {o.drop_regex[v]!r}", "regex", lambda m, o: m is not None),
    Rule("contaminated", "shares --ngram words in a row with an evaluation row (--decontaminate)",
         lambda o: bool(o.decontaminate),
         lambda v, o: f"shares {o.ngram} words with {v.location}: \"{v.words}\""),
    Rule("duplicate", "same casefolded, whitespace-collapsed text as a kept record (--dedup exact|near)",
         lambda o: o.dedup is not None, lambda v, o: f"same content as kept id {v}"),
    Rule("near_duplicate", "estimated Jaccard similarity >= --threshold with a kept record (--dedup near)",
         lambda o: o.dedup == "near",
         lambda v, o: f"near duplicate of kept id {v.kept_id} (similarity {v.similarity:.2f})"),
)
REASONS = tuple(rule.reason for rule in RULES)
RULE = {rule.reason: rule for rule in RULES}
ROW_RULES = tuple(rule for rule in RULES if rule.measure is not None)


@dataclass
class FilterState:
    """What the stateful rules remember across the batches of one run: the evaluation n-grams, the exact
    digests and the near-duplicate index of the records kept so far."""

    exact: DedupState | None = None
    near: NearDedup | None = None
    evals: EvalIndex | None = None

    @classmethod
    def for_options(cls, options: FilterOptions) -> FilterState:
        """Fresh state for a run; reads the evaluation files now, so a bad one fails before any row is read."""
        exact = DedupState() if options.dedup else None
        near = NearDedup(options.threshold) if options.dedup == "near" else None
        evals = EvalIndex.from_files(options.decontaminate, options.ngram) \
            if options.decontaminate else None
        return cls(exact, near, evals)

    def facts(self) -> dict[str, str]:
        """For the summary line."""
        return {"eval": self.evals.describe()} if self.evals is not None else {}


def _findings(records: list[Record], options: FilterOptions) -> dict[int, tuple[str, Any]]:
    """Row index -> (the first active row rule it fails, the measured value) for every row failing one."""
    rules = [rule for rule in ROW_RULES if rule.active(options)]
    names = list(dict.fromkeys(rule.measure for rule in rules if rule.measure))
    measured = {name: MEASURES[name](records, options) for name in names}
    checks = [(rule.reason, measured[rule.measure], rule.fails) for rule in rules]  # type: ignore[index]
    findings: dict[int, tuple[str, Any]] = {}
    for i in range(len(records)):
        for reason, values, fails in checks:
            if fails(values[i], options):  # type: ignore[misc]
                findings[i] = (reason, values[i])
                break
    return findings


def filter_batch(
    records: list[Record], options: FilterOptions, state: FilterState | None = None
) -> tuple[list[Record], list[Rejected]]:
    """Split ``records`` into kept (in input order) and rejected, each reject with its rule's reason.

    Row rules look at one record alone. The stateful rules (``contaminated``, ``duplicate``,
    ``near_duplicate``) need ``state`` (:meth:`FilterState.for_options`), shared across the batches of one
    run, and see only records that passed every rule before them.
    """
    if not records:
        return [], []
    if state is None:
        if options.dedup or options.decontaminate:
            raise ValueError("dedup and decontaminate need a FilterState shared across batches")
        state = FilterState()
    findings = _findings(records, options)
    remaining = [i for i in range(len(records)) if i not in findings]
    _stateful(records, remaining, options, state, findings)
    kept: list[Record] = []
    rejected: list[Rejected] = []
    for i, record in enumerate(records):
        if i in findings:
            reason, value = findings[i]
            rejected.append(Rejected(record, reason, RULE[reason].detail(value, options), index=i))
        else:
            kept.append(record)
    return kept, rejected


def _stateful(records: list[Record], remaining: list[int], options: FilterOptions, state: FilterState,
              findings: dict[int, tuple[str, Any]]) -> None:
    """Run contaminated, duplicate and near_duplicate, in that order, adding to ``findings``.

    Only rows that end up kept are remembered, so a later copy of a rejected row is judged against the kept
    rows: with ``near``, the copy of a row dropped as a near duplicate of K is itself a near duplicate of K.
    """
    if state.evals is not None and remaining:
        overlaps = state.evals.check([records[i] for i in remaining])
        for i, overlap in zip(remaining, overlaps, strict=True):
            if overlap is not None:
                findings[i] = ("contaminated", overlap)
        remaining = [i for i in remaining if i not in findings]
    if state.exact is None or not remaining:
        return
    seen = state.exact.seen
    digests: dict[int, bytes] = {}
    first_in_batch: dict[bytes, int] = {}
    repeats: dict[int, int] = {}  # row -> the earlier row of this batch with the same content
    for i in remaining:
        key = content_key(records[i])
        digests[i] = key
        if key in seen:
            findings[i] = ("duplicate", seen[key])
        elif key in first_in_batch:
            repeats[i] = first_in_batch[key]
        else:
            first_in_batch[key] = i
    firsts = list(first_in_batch.values())
    if options.dedup == "near" and state.near is not None and firsts:
        for i, match in zip(firsts, state.near.check([records[i] for i in firsts]), strict=True):
            if match is not None:
                findings[i] = ("near_duplicate", match)
    for i in firsts:
        if i not in findings:
            seen[digests[i]] = str(records[i].get("id", ""))
    for i, first in repeats.items():
        findings[i] = findings[first] if first in findings else ("duplicate", seen[digests[first]])


class FilterStage:
    """``filter`` as a stage: the rules of ``options``, with one state (dedup memory, eval index) for the run."""

    name = STAGE

    def __init__(self, options: FilterOptions) -> None:
        self.options = options
        self.state = FilterState.for_options(options)

    def process(self, batch: Batch) -> tuple[Batch, list[Rejected]]:
        part, positions, malformed = canonical_part(batch)
        kept, rejected = filter_batch(part.records, self.options, self.state)
        rejected = malformed + remap(rejected, positions)
        return survivors(batch, kept, rejected), rejected

    def finish(self) -> tuple[()]:
        return ()

    def facts(self) -> dict[str, Any]:
        return self.state.facts()
