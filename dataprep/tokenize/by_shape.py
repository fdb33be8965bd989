"""Plain records rendered and labelled a shape at a time, in columns, instead of one ``ChatTemplate.render`` each.

Why. Once the encoder is fast, the Python that runs per row in the main thread sets the pace of ``dataprep
tokenize``: building messages, the shape, a skeleton fill, span arithmetic, a scan for special tokens and a
``Rendered`` per row. Most rows are *plain* (a system prompt, user and assistant turns; no tools, roles or
reasoning), and a batch holds a handful of plain shapes. For those, per batch:

* the shape is read off the record's fields (which turns are empty), without building messages: a plain record's
  messages are fixed by it (:func:`plain_shape`);
* once per shape, its first row is rendered the ordinary way (:meth:`ChatTemplate.render`); when the template
  places that shape by arithmetic (:meth:`ChatTemplate.placed_fill`), the row gives the shape's skeleton and
  where its label bounds lie relative to the template's pieces, and the plan must give back that row's text
  and bounds exactly;
* per row, the text is one ``str.format`` of the skeleton; data lengths, piece starts and label bounds come for
  the whole group from numpy cumulative sums.

Exactness. The text, spans and inserted text are those of ``render`` (the same skeleton, the same anchors), and the
label bounds those the caller's ``label_bounds`` gives for the shape's first row moved by the same arithmetic. That
holds because every data slot holds at least one character, so any two anchored positions compare the same way in
every row of the shape, and removing inserted ranges from spans (or taking the last span) picks the same anchors.
A row is filled here only when ``render`` would fill it too (no surrounding whitespace, no placeholder character
in its strings) and when no special token can overlap its data (:class:`SpecialTokenScreen`). Every other row
is left to the caller (None), which renders it and runs the exact special-token check one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from dataprep.records import Record, RecordError, user_text
from dataprep.skeleton import PLACEHOLDER_CHARS, Anchors, Filled
from dataprep.template import ChatTemplate, Rendered, Turns

# every code point str.strip() removes (str.isspace; none is above U+3000), to test strings' ends in bulk
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.int64)
_IS_SPACE = np.zeros(0x3002, dtype=bool)  # by code point; the last entry stands for every one above
_IS_SPACE[_WHITESPACE] = True
_SHIFT = 21  # code points fit in 21 bits: a pair of characters as one integer
_PLACEHOLDERS = re.compile("[" + "".join(PLACEHOLDER_CHARS) + "]")


def plain_shape(record: Record) -> tuple[tuple[bool, ...], list[str]] | None:
    """``(key, data)`` for a plain record, None for any other.

    Plain: no tools, no tool-call or observation roles, no reasoning. Its messages (``to_messages``) are then a
    system message when ``prefix`` is not empty, and one user or assistant message per turn holding only role
    and content, so the key (which of prefix and the turns are empty) fixes its render shape, and ``data`` (its
    non-empty strings in order) is what ``skeleton.shape_and_data`` takes from the messages.
    """
    if record.get("tools") or any(record.get("reasoning") or ()):
        return None
    roles = record.get("roles")
    if roles and any(r != "user" and r != "assistant" for r in roles):
        return None
    history = record["history"]
    user, response = user_text(record), record["response"]
    if not history:
        prefix = record["prefix"]
        return (bool(prefix), bool(user), bool(response)), [s for s in (prefix, user, response) if s]
    texts = [record["prefix"], *chain.from_iterable(history), user, response]
    return tuple(map(bool, texts)), [s for s in texts if s]


@dataclass(frozen=True)
class _Plan:
    """One shape: its skeleton as a format string, piece lengths, slots, and label bounds as anchors."""

    format: Callable[..., str]
    piece_lengths: np.ndarray
    slots: np.ndarray
    anchor_piece: np.ndarray
    anchor_offset: np.ndarray
    before: tuple[int | None, ...]  # per slot: code point just before it (-1: the previous slot's last, None: none)
    after: tuple[int | None, ...]  # per slot: code point just after it (-1: the next slot's first, None: none)

    @classmethod
    def of(cls, filled: Filled, bounds: Sequence[int]) -> _Plan | None:
        anchors = Anchors.of(filled, bounds)
        if anchors is None:
            return None
        pieces, slots = filled.skeleton.pieces, filled.skeleton.slots
        escaped = [p.replace("{", "{{").replace("}", "}}") for p in pieces]
        template = escaped[0] + "".join(f"{{{slot}}}{piece}" for slot, piece in zip(slots, escaped[1:], strict=True))
        before = tuple(ord(pieces[i][-1]) if pieces[i] else (None if i == 0 else -1) for i in range(len(slots)))
        after = tuple(ord(pieces[i + 1][0]) if pieces[i + 1] else (None if i + 1 == len(slots) else -1)
                      for i in range(len(slots)))
        return cls(template.format, np.array([len(p) for p in pieces], dtype=np.int64),
                   np.array(slots, dtype=np.int64), np.array([p for p, _ in anchors.at], dtype=np.int64),
                   np.array([o for _, o in anchors.at], dtype=np.int64), before, after)

    def bounds(self, lengths: np.ndarray) -> np.ndarray:
        """Label bounds of each row (one per line) from its data lengths (rows x data strings)."""
        n, s = len(lengths), len(self.slots)
        starts = np.zeros((n, s + 1), dtype=np.int64)  # where each piece starts in each row's text
        if s:
            np.cumsum(lengths[:, self.slots] + self.piece_lengths[:s], axis=1, out=starts[:, 1:])
        return starts[:, self.anchor_piece] + self.anchor_offset


class SpecialTokenScreen:
    """Which rows *cannot* have a special token overlapping their data, decided for a batch at once.

    A token occurrence overlaps a data string only if it lies inside the string, or crosses one of its ends; in
    the second case two consecutive characters of the token sit on the two sides of that end. So a row is clear
    when no token occurs in any of its strings (one regex pass over the batch's strings joined by a character no
    token holds) and no pair (character before a string, its first character) or (its last character, character
    after it) is a pair of consecutive characters of a token. Rows not found clear get the exact check.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = [t for t in tokens if t]
        used = set("".join(tokens))
        self.separator = next(chr(c) for c in range(1, 0x110000) if chr(c) not in used)
        self.pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))) \
            if tokens else None
        self.pairs = np.array(sorted({(ord(t[i]) << _SHIFT) | ord(t[i + 1]) for t in tokens
                                      for i in range(len(t) - 1)}), dtype=np.int64)

    def joined(self, strings: Sequence[str]) -> str:
        return self.separator.join(strings)

    def containing(self, joined: str, string_starts: np.ndarray) -> np.ndarray:
        """Indexes of the strings (of ``joined``, starting at ``string_starts``) that hold a token."""
        if self.pattern is None:
            return np.zeros(0, dtype=np.int64)
        hits = [m.start() for m in self.pattern.finditer(joined)]
        return np.searchsorted(string_starts, np.asarray(hits, dtype=np.int64), side="right") - 1

    def crossing(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Whether each pair of code points (left, right) could be two consecutive characters of a token."""
        if not len(self.pairs):
            return np.zeros(len(left), dtype=bool)
        keys = (left << _SHIFT) | right
        at = np.minimum(np.searchsorted(self.pairs, keys), len(self.pairs) - 1)
        return self.pairs[at] == keys


class ShapeRows:
    """Renders and labels the plain records of a batch by shape (see the module docstring); one per run."""

    def __init__(self, template: ChatTemplate, turns: Turns, label_bounds: Callable[[Rendered], list[int]],
                 special_tokens: Sequence[str]) -> None:
        self.template = template
        self.turns = turns
        self.label_bounds = label_bounds
        self.screen = SpecialTokenScreen(special_tokens)
        self.enabled = template.fills_plain_rows
        self._plans: dict[tuple[bool, ...], _Plan | None] = {}

    def render(self, records: Sequence[Record]) -> list[tuple[str, list[int]] | None]:
        """For each record, ``(text, label bounds)``, or None when it must be rendered and checked one by one."""
        out: list[tuple[str, list[int]] | None] = [None] * len(records)
        if not self.enabled:
            return out
        shapes = [plain_shape(r) for r in records]
        groups: dict[tuple[bool, ...], list[int]] = {}
        for i, found in enumerate(shapes):
            if found is not None:
                groups.setdefault(found[0], []).append(i)
        plans = {key: self._plan(key, [records[i] for i in rows]) for key, rows in groups.items()}
        order = [i for key, rows in groups.items() if plans[key] is not None for i in rows]
        if not order:
            return out
        datas = [shapes[i][1] for i in order]  # type: ignore[index]
        flat = list(chain.from_iterable(datas))
        lengths = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat))
        joined = self.screen.joined(flat)
        starts = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=starts[1:])
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        first, last = points[starts[:-1]].astype(np.int64), points[starts[1:] - 2].astype(np.int64)
        space = _IS_SPACE[np.minimum(first, len(_IS_SPACE) - 1)] | _IS_SPACE[np.minimum(last, len(_IS_SPACE) - 1)]
        bad = space  # render locates rows with whitespace around a string one by one
        bad[self.screen.containing(joined, starts[:-1])] = True
        if _PLACEHOLDERS.search(joined):
            bad[[k for k, s in enumerate(flat) if _PLACEHOLDERS.search(s)]] = True
        at = 0
        for key, rows in groups.items():
            plan = plans[key]
            if plan is None:
                continue
            n, m = len(rows), len(shapes[rows[0]][1])  # type: ignore[index]
            index = at + np.arange(n * m, dtype=np.int64).reshape(n, m)
            at += n * m
            ok = ~bad[index].any(axis=1) & ~self._crossing(plan, index, first, last)
            bounds = plan.bounds(lengths[index]).tolist()
            for k in np.flatnonzero(ok).tolist():
                i = rows[k]
                out[i] = (plan.format(*shapes[i][1]), bounds[k])  # type: ignore[index]
        return out

    def _crossing(self, plan: _Plan, index: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Rows where a token could cross an end of one of their strings (see :class:`SpecialTokenScreen`)."""
        hit = np.zeros(len(index), dtype=bool)
        for s, slot in enumerate(plan.slots.tolist()):
            own = index[:, slot]
            if plan.before[s] is not None:
                left = np.full(len(own), plan.before[s]) if plan.before[s] >= 0 else last[index[:, plan.slots[s - 1]]]
                hit |= self.screen.crossing(left, first[own])
            if plan.after[s] is not None:
                right = np.full(len(own), plan.after[s]) if plan.after[s] >= 0 else first[index[:, plan.slots[s + 1]]]
                hit |= self.screen.crossing(last[own], right)
        return hit

    def _plan(self, key: tuple[bool, ...], records: list[Record]) -> _Plan | None:
        """The shape's plan, made from its first row that ``render`` fills from the skeleton; None when the
        template does not place this shape by arithmetic (every row of it is then rendered one by one)."""
        if key in self._plans:
            return self._plans[key]
        for record in records:
            try:
                rendered = self.template.render(record, self.turns)
            except RecordError:
                continue  # this row's reject comes from the one-by-one path; try the next for the plan
            filled = self.template.placed_fill(record, self.turns)
            if filled is None:
                if any(s != s.strip() or _PLACEHOLDERS.search(s) for s in plain_shape(record)[1]):  # type: ignore[index]
                    continue  # rendered one by one because of this row's strings, not its shape
                self._plans[key] = None
                return None
            bounds = self.label_bounds(rendered)
            plan = _Plan.of(filled, bounds)
            data = plain_shape(record)[1]  # type: ignore[index]
            if plan is not None and (list(filled.data) != data or plan.format(*data) != rendered.text
                                     or plan.bounds(np.array([[len(s) for s in data]], dtype=np.int64).reshape(1, len(data))).tolist() != [bounds]):
                plan = None  # not the shape this module assumes: its rows are rendered one by one
            self._plans[key] = plan
            return plan
        return None
