"""Chat templates: load one, render a canonical record with it, and find the text that is supervised.

A template is Jinja text rendered the way ``transformers`` renders ``tokenizer.chat_template`` in
``apply_chat_template`` (:mod:`dataprep.sandbox`: the same sandboxed environment and helpers, plus a budget on
work and size). Rendering the tokenizer's own template here therefore gives the same text as
``apply_chat_template(messages, tools=..., tokenize=False)``, without a tokenizer call per row.

Supervised spans from one render
--------------------------------
A record is rendered **once** as it is (that is the text), and once more with every data string (system
prompt, user and tool content, replies, reasoning, function names, argument keys and values, strings inside
``tools``) wrapped in a pair of private-use marker characters unique to that string. The markers sit *inside*
the string's leading and trailing whitespace, so a template's own ``trim``/``strip('\\n')``/``lstrip`` act on
that whitespace exactly as before. Removing the markers must give the first text back character for
character; then every marker pair is the exact place of one data string in the text (:attr:`Rendered.data`).
If it does not (the template branches on what a string holds, such as Qwen3's ``startswith('<tool_response>')``
on user turns), the tagged render is tried again leaving ``tools``, then every user-side string, then (with
``turns="last"``) every string but the final reply's, untagged; if none agrees the row is rejected
(``template_inspects_data``). Untagged strings are reported as unlocated. A string whose markers the template cut
apart (``content.split('</think>')``) is treated as unlocated, never guessed at.

What the template writes around an assistant turn is learned **once per template**, at load, from probe
conversations: the assistant header as it appears in rendered history (the common start of the generation
prompt and of the text between a user turn and a reply: ``<|im_start|>assistant\\n``, or ``<｜Assistant｜>`` for
DeepSeek-R1, whose generation prompt ``<｜Assistant｜><think>\\n`` never appears in history), the end-of-turn
text after a reply (``<|im_end|>``, ``<|eot_id|>``, ``</s>``, ``<end_of_turn>``; none for GLM-4, whose turns
end where the next role tag starts), and the block a template writes on its own for a final turn that has no
reasoning (Qwen3's ``<think>\\n\\n</think>\\n\\n``).

A turn's span is ``[end of its assistant header, end of its end-of-turn text)``: its content and reasoning as
rendered, tool-call markup, and the end-of-turn marker, never the header or the newline after the marker. The
header is the last one before the turn's first data character (after the data of the message before), the
end-of-turn the first one after its last data character (before the data of the message after). A turn with
no located data (an empty reply) is placed by the single header between its neighbours' data. Anything that
cannot be placed without ambiguity is a reject with one of these reasons (stable, documented):

* ``template_error`` the template raised; ``template_budget`` it ran out of its work or size budget;
* ``template_inspects_data`` the tagged render differs from the real one at every tagging level;
* ``template_shape_unknown`` the probes at load could not show where assistant turns start;
* ``header_not_found`` / ``end_of_turn_not_found`` a supervised turn's header or end-of-turn text is missing;
* ``turn_ambiguous`` a supervised turn's data is rendered twice, mixed with another message's data, or several
  headers could be its own; ``turn_not_rendered`` the template does not write the turn at all;
* ``no_assistant_turn`` the record has no assistant-side turn.

With ``turns="last"`` (``--mask-history``, and the ``expand`` policy) only the final turn is located, so an
earlier turn never causes a reject. Cost: **two renders per row** whatever the number of turns (the earlier
prefix method needed 2n for n assistant turns), plus one more per fallback tagging level, which ordinary rows
never need.
"""

from __future__ import annotations

import bisect
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
import jinja2.nodes

from dataprep import records
from dataprep.errors import UsageProblem
from dataprep.records import Message, Record, RecordError
from dataprep.sandbox import DEFAULT_CHARS, DEFAULT_STEPS, BoundedEnvironment, Budget, BudgetExceeded, bounded
from dataprep.skeleton import Anchors, Filled, Skeletons, analyse, tracking_environment

BUILTIN_TEMPLATES = ("alpaca", "default", "chatml", "llama3", "mistral-v0.1", "plain")
SPECIAL_TOKEN_VARIABLES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)
REJECT_REASONS = (
    "template_error", "template_budget", "template_inspects_data", "template_shape_unknown",
    "header_not_found", "end_of_turn_not_found", "turn_ambiguous", "turn_not_rendered", "no_assistant_turn",
)
Turns = Literal["all", "last"]

_PROBE_SYSTEM = "\ue000system-probe\ue001"
_PROBE_USER = "\ue002user-probe\ue003"
_PROBE_ASSISTANT = "\ue004assistant-probe\ue005"


@dataclass(frozen=True)
class Rendered:
    """One record rendered once, and where its parts lie in the text; all ranges are ``[start, end)`` chars.

    ``spans``: one per located assistant-side turn, sorted and disjoint; ``turn_of_span[i]`` is the index of
    the assistant turn (0 = first) that ``spans[i]`` holds. ``inserted``: ranges inside spans that the template
    wrote on its own, from no data (Qwen3's empty think block on a final turn without reasoning). ``data``:
    ranges of the text that came from the record's strings, sorted. ``unlocated``: data strings the template
    may have written but whose place is unknown (whitespace-only strings, ``tools`` keys, strings it cut
    apart); :func:`special_tokens_in_data` refuses a row when one of them holds a special token.
    """

    text: str
    spans: tuple[tuple[int, int], ...]
    turn_of_span: tuple[int, ...]
    inserted: tuple[tuple[int, int], ...]
    data: tuple[tuple[int, int], ...]
    unlocated: tuple[str, ...] = ()


# --- markers ---------------------------------------------------------------------------------------------------

class _Alphabet:
    """Private-use code points used as markers, two per data string: the supplementary planes 15 and 16 (the
    last two code points of each plane are noncharacters and are left out), minus any a record's text already
    holds (see :func:`_alphabet_for`)."""

    def __init__(self, blocks: tuple[tuple[int, int], ...]) -> None:
        self.blocks = blocks
        self.capacity = sum(end - start for start, end in blocks) // 2
        self.regex = re.compile("[" + "".join(f"{chr(s)}-{chr(e - 1)}" for s, e in blocks) + "]")

    def char(self, k: int) -> str:
        for start, end in self.blocks:
            if k < end - start:
                return chr(start + k)
            k -= end - start
        raise IndexError(k)

    def index(self, char: str) -> int:
        code, base = ord(char), 0
        for start, end in self.blocks:
            if start <= code < end:
                return base + code - start
            base += end - start
        raise ValueError(char)


_PLANES = ((0xF0000, 0xFFFFE), (0x100000, 0x10FFFE))
_DEFAULT_ALPHABET = _Alphabet(_PLANES)


def _alphabet_for(text: str) -> _Alphabet:
    """The default markers, or (rarely) the same planes with the code points ``text`` already uses cut out."""
    if text.isascii() or not _DEFAULT_ALPHABET.regex.search(text):
        return _DEFAULT_ALPHABET
    used = sorted({ord(c) for c in _DEFAULT_ALPHABET.regex.findall(text)})
    blocks = []
    for start, end in _PLANES:
        for code in (c for c in used if start <= c < end):
            if code > start:
                blocks.append((start, code))
            start = code + 1
        if start < end:
            blocks.append((start, end))
    return _Alphabet(tuple(blocks))


class _Marks:
    """Wraps data strings in marker pairs and remembers whose each one is (message index, kind)."""

    __slots__ = ("alphabet", "kinds", "owners", "unmarked")

    def __init__(self, alphabet: _Alphabet = _DEFAULT_ALPHABET) -> None:
        self.alphabet = alphabet
        self.owners: list[int] = []
        self.kinds: list[str] = []
        self.unmarked: list[str] = []

    def wrap(self, text: str, owner: int, kind: str) -> str:
        lead = len(text) - len(text.lstrip())
        end = len(text.rstrip())
        if end <= lead:  # empty or whitespace only: a marker would change its truth value under strip()
            if text:
                self.unmarked.append(text)
            return text
        k = len(self.owners)
        if k >= self.alphabet.capacity:
            raise RecordError("turn_ambiguous", f"more than {self.alphabet.capacity} strings to locate in one record")
        self.owners.append(owner)
        self.kinds.append(kind)
        char = self.alphabet.char
        return text[:lead] + char(2 * k) + text[lead:end] + char(2 * k + 1) + text[end:]

    def value(self, value: Any, owner: int, kind: str, *, keys: bool) -> Any:
        """A JSON-like value with its strings wrapped (dict keys too when ``keys``, else they stay unmarked)."""
        if isinstance(value, str):
            return self.wrap(value, owner, kind)
        if isinstance(value, dict):
            if not keys:
                self.unmarked.extend(k for k in value if isinstance(k, str))
            return {(self.wrap(k, owner, kind) if keys and isinstance(k, str) else k):
                    self.value(v, owner, kind, keys=keys) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, owner, kind, keys=keys) for v in value]
        return value

    def skip(self, value: Any) -> Any:
        """Leave a value untagged, remembering its strings as unlocated data."""
        self.unmarked.extend(_strings(value))
        return value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


# A located string: (start, end, owner message index or -1 for tools, kind, marker field number)
_Range = tuple[int, int, int, str, int]


def _read_marks(marked: str, marks: _Marks, text: str | None) -> tuple[str, list[_Range], set[int]] | None:
    """Remove the markers; give the plain text, the located ranges and the strings whose markers were cut.

    None when ``text`` is given and the plain text differs from it (the tagging changed what was rendered).
    """
    n = len(marks.owners)
    found = _marker_positions(marked, marks.alphabet, n)
    if found is None:
        return None
    cuts = [at for at, _ in found]
    plain = "".join(marked[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(marked)], strict=True))
    if text is not None and plain != text:
        return None
    ranges: list[_Range] = []
    broken: set[int] = set()
    open_field, open_at = -1, 0
    for removed, (position, k) in enumerate(found):
        field, closing = divmod(k, 2)
        at = position - removed
        if not closing:
            if open_field >= 0:
                broken.update((open_field, field))
            open_field, open_at = field, at
        elif open_field == field:
            ranges.append((open_at, at, marks.owners[field], marks.kinds[field], field))
            open_field = -1
        else:
            broken.add(field)
            if open_field >= 0:
                broken.add(open_field)
            open_field = -1
    if open_field >= 0:
        broken.add(open_field)
    if broken:
        ranges = [r for r in ranges if r[4] not in broken]
    return plain, ranges, broken


def _marker_positions(marked: str, alphabet: _Alphabet, n: int) -> list[tuple[int, int]] | None:
    """``(position, marker number)`` of every marker in ``marked``, in order; None if one is not ours.

    A few markers are found with ``str.find`` (a C scan per marker, much faster than a regex over astral
    character classes); many with one regex pass, so long conversations stay linear.
    """
    if n <= 16:
        found = []
        for k in range(2 * n):
            char = alphabet.char(k)
            at = marked.find(char)
            while at >= 0:
                found.append((at, k))
                at = marked.find(char, at + 1)
        found.sort()  # a marker char of the alphabet that is not ours stays in the plain text, which then differs
        return found
    found = [(m.start(), alphabet.index(m.group())) for m in alphabet.regex.finditer(marked)]
    return None if any(k >= 2 * n for _, k in found) else found


def _common_prefix(a: str, b: str) -> str:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return a[:n]


@dataclass(frozen=True)
class _Shape:
    """What a template writes around assistant turns, learned from probe renders (see the module docstring)."""

    headers: tuple[str, ...]
    end_of_turn: str | None
    openers: tuple[str, ...]
    empty_reasoning: str | None


@lru_cache(maxsize=64)
def _compile(source: str) -> tuple[jinja2.Template, frozenset[str], frozenset[str]]:
    """Compile once per template text; also return the variables it reads from outside, and every name used."""
    template, ast = _ENV.compile_bounded(source)
    names = frozenset(node.name for node in ast.find_all(jinja2.nodes.Name))
    return template, frozenset(jinja2.meta.find_undeclared_variables(ast)), names


_ENV = BoundedEnvironment()


def _error_detail(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, jinja2.exceptions.TemplateError) else f"{type(exc).__name__}: {text}"


_UNSEEN = object()


@dataclass(frozen=True)
class _ShapePlaces:
    """Where one conversation shape's spans and inserted text lie, tied to the template's own text (the skeleton's
    pieces), so every row of the shape gets them by arithmetic instead of a tagged render and a search.

    Taken from the first row of the shape, located the long way. That is exact because the template only places
    the words (the skeleton's proof) and these rows have no whitespace around their strings, so nothing the
    locator looks at between the strings depends on the row. A shape whose spans start or end inside a string
    is not anchored (None): its rows are located one by one.
    """

    spans: Anchors
    inserted: Anchors
    turn_of_span: tuple[int, ...]

    @classmethod
    def of(cls, filled: Filled, rendered: Rendered) -> _ShapePlaces | None:
        spans = Anchors.of(filled, [p for span in rendered.spans for p in span])
        inserted = Anchors.of(filled, [p for span in rendered.inserted for p in span])
        if spans is None or inserted is None or rendered.unlocated:
            return None
        return cls(spans, inserted, rendered.turn_of_span)

    def apply(self, filled: Filled) -> Rendered:
        text = filled.skeleton.fill(filled.data)
        bounds = filled.bounds()
        data = tuple((bounds[k], bounds[k + 1]) for k in range(1, len(bounds) - 1, 2) if bounds[k] < bounds[k + 1])
        spans, inserted = self.spans.place(filled), self.inserted.place(filled)
        return Rendered(text, tuple(zip(spans[::2], spans[1::2], strict=True)), self.turn_of_span,
                        tuple(zip(inserted[::2], inserted[1::2], strict=True)), data)


class ChatTemplate:
    """One chat template with the special-token values it renders with.

    ``name`` is ``tokenizer``, a built-in name, or the path it was read from; ``source`` is the exact template
    text (hash it to fingerprint a run); ``default_system`` is the system prompt the template writes by itself
    when a record has no ``prefix`` (found by rendering probe conversations), or None. ``max_steps`` and
    ``max_chars`` bound each render (:mod:`dataprep.sandbox`); a template that exceeds them on the probe
    conversations at load is refused with a UsageProblem.
    """

    def __init__(self, name: str, source: str, variables: Mapping[str, Any] | None = None,
                 *, split_input: bool = False, max_steps: int = DEFAULT_STEPS, max_chars: int = DEFAULT_CHARS) -> None:
        self.name = name
        self.source = source
        self._template, self.reads, self._names = _compile(source)
        self._variables = dict(variables or {})
        self._split_input = split_input
        self.max_steps, self.max_chars = max_steps, max_chars
        self._skeletons = self._build_skeletons()
        self._places: dict[Any, _ShapePlaces | None] = {}
        # A template that knows reasoning_content gets it as a field; any other sees reasoning as a <think> block
        # at the start of the reply, which is how such templates (QwQ, DeepSeek-R1) read and strip it.
        self.reads_reasoning = "reasoning_content" in source
        try:
            self.default_system = self._probe_default_system()
            self._shape, self._shape_problem = self._learn_shape()
        except RecordError as exc:
            if exc.reason == "template_budget":
                raise UsageProblem(f"template {name!r} exceeds its render budget on a two-turn probe "
                                   f"conversation: {exc.detail}",
                                   hint="templates are user code; this one loops or allocates without bound") from None
            raise

    @property
    def variables(self) -> dict[str, Any]:
        """The special-token variables the template renders with (what ``apply_chat_template`` passes)."""
        return dict(self._variables)

    @property
    def uses_clock(self) -> bool:
        """True when the text depends on the date (``strftime_now``) unless SOURCE_DATE_EPOCH is set."""
        return "strftime_now" in self._names

    def render_messages(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None,
                        add_generation_prompt: bool = False) -> str:
        """Render messages as ``apply_chat_template(..., tokenize=False)`` does; RecordError if the template fails."""
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return self._render(chat, tools, add_generation_prompt)

    def _render(self, chat: list[Message], tools: Any, add_generation_prompt: bool) -> str:
        context = self._template.new_context(
            {**self._variables, "messages": chat, "tools": tools, "documents": None,
             "add_generation_prompt": add_generation_prompt}
        )
        budget = Budget(self.max_steps, self.max_chars)
        try:
            with bounded(budget):
                parts, size = [], 0
                for part in self._template.root_render_func(context):
                    size += len(part)
                    if size > budget.chars:
                        raise BudgetExceeded(f"more than {budget.chars:,} characters of output")
                    parts.append(part)
                return "".join(parts)
        except BudgetExceeded as exc:
            raise RecordError("template_budget", f"the template exceeded its render budget: {exc}") from None
        except RecursionError:
            raise RecordError("template_error", "template recursed too deeply") from None
        except Exception as exc:  # a template is user code: any failure is this record's reject reason
            raise RecordError("template_error", _error_detail(exc)) from None

    def _text(self, messages: list[Message], tools: Any) -> str:
        """The render of ``messages``: filled from the shape's skeleton where the template only places the
        words (:mod:`dataprep.skeleton`), rendered by Jinja otherwise. Both give the same text."""
        filled = self._skeletons.text(messages, tools)
        return filled if filled is not None else self._render(messages, tools, False)

    def _build_skeletons(self) -> Skeletons:
        env = tracking_environment(_ENV)
        template, ast = env.compile_bounded(self.source)
        template.globals = dict(self._template.globals)

        def render(messages: list[Message], tools: Any, add_generation_prompt: bool) -> str:
            context = template.new_context({**self._variables, "messages": messages, "tools": tools,
                                            "documents": None, "add_generation_prompt": add_generation_prompt})
            with bounded(Budget(self.max_steps, self.max_chars)):
                return "".join(template.root_render_func(context))

        return Skeletons(render, env, analyse(ast))

    def messages_of(self, record: Record) -> tuple[list[Message], list[dict[str, Any]] | None]:
        """The messages and tools this template renders for a record: pass exactly these to
        ``apply_chat_template`` to check a row (``alpaca`` also sees prompt/query apart)."""
        messages, tools = self._logical_messages(record)
        return self._as_seen(messages), tools

    def _logical_messages(self, record: Record) -> tuple[list[Message], list[dict[str, Any]] | None]:
        messages = records.to_messages(record)
        tools = records.parse_tools(record.get("tools"))
        if self._split_input and record.get("prompt") and record.get("query"):
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            messages[last_user] = {**messages[last_user], "instruction": record["prompt"], "input": record["query"]}
        return messages, tools

    def _as_seen(self, messages: list[Message]) -> list[Message]:
        """Reasoning as this template reads it: a field, or a <think> block in front of the reply."""
        if self.reads_reasoning:
            return messages
        out = []
        for message in messages:
            if "reasoning_content" in message:
                message = dict(message)
                thought = message.pop("reasoning_content")
                message["content"] = records.think_text(thought, message.get("content") or "")
            out.append(message)
        return out

    def _tagged(self, messages: list[Message], tools: list[dict[str, Any]] | None, level: int,
                marks: _Marks) -> tuple[list[Message], Any]:
        """Messages and tools with data strings wrapped in markers. Level 0 tags everything; level 1 leaves
        ``tools`` untagged; level 2 also every user-side and system string; level 3 tags the final assistant
        message only (for ``turns="last"``)."""
        out: list[Message] = []
        final = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        for i, message in enumerate(messages):
            tag = level < 2 or (message["role"] == "assistant" and (level == 2 or i == final))
            new: Message = {}
            for key, value in message.items():
                if key == "role":
                    new[key] = value
                elif key == "tool_calls":
                    new[key] = [self._tagged_call(call, i, marks) for call in value]
                elif isinstance(value, str):
                    new[key] = marks.wrap(value, i, key) if tag else marks.skip(value)
                else:
                    new[key] = value
            if not self.reads_reasoning and "reasoning_content" in new:
                thought = new.pop("reasoning_content")
                new["content"] = records.think_text(thought, new.get("content") or "")
            out.append(new)
        if tools is None:
            return out, None
        return out, (marks.value(tools, -1, "tools", keys=False) if level == 0 else marks.skip(tools))

    @staticmethod
    def _tagged_call(call: dict[str, Any], owner: int, marks: _Marks) -> dict[str, Any]:
        fn = call["function"]
        return {**call, "function": {"name": marks.wrap(fn["name"], owner, "tool_name"),
                                     "arguments": marks.value(fn["arguments"], owner, "tool_args", keys=True)}}

    def render(self, record: Record, turns: Turns = "all") -> Rendered:
        """Render a canonical record once and locate its parts (see the module docstring).

        ``turns="all"`` locates every assistant-side turn; ``"last"`` only the final one, so that a turn that
        will not be supervised can never cause a reject.
        """
        messages, tools = self._logical_messages(record)
        assistant_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not assistant_at:
            raise RecordError("no_assistant_turn", "the record has no assistant turn to supervise")
        seen = self._as_seen(messages)
        filled = self._skeletons.layout(seen, tools)
        if filled is None or any(d != d.strip() for d in filled.data):
            return self._locate(messages, tools, assistant_at, turns, self._text(seen, tools))
        key = (filled.key, turns)
        places = self._places.get(key, _UNSEEN)
        if places is _UNSEEN:  # the first row of this shape is located the long way; the others by arithmetic
            rendered = self._locate(messages, tools, assistant_at, turns, filled.skeleton.fill(filled.data))
            self._places[key] = _ShapePlaces.of(filled, rendered)
            return rendered
        if places is None:
            return self._locate(messages, tools, assistant_at, turns, filled.skeleton.fill(filled.data))
        return places.apply(filled)

    def placed_fill(self, record: Record, turns: Turns = "all") -> Filled | None:
        """The record's skeleton fill when :meth:`render` has placed its shape by arithmetic (after rendering a
        row of that shape); None otherwise. Every row of the shape (with ``turns``) whose strings have no
        surrounding whitespace or placeholder character is then ``places.apply`` of its fill: spans and inserted
        text at the same template-anchored places (``dataprep.tokenize.by_shape`` fills such rows in bulk)."""
        messages, tools = self._logical_messages(record)
        filled = self._skeletons.layout(self._as_seen(messages), tools)
        if filled is None or any(d != d.strip() for d in filled.data):
            return None
        places = self._places.get((filled.key, turns))
        return filled if isinstance(places, _ShapePlaces) else None

    @property
    def fills_plain_rows(self) -> bool:
        """Whether a plain record's messages are what ``to_messages`` gives, unchanged (``alpaca`` adds the
        instruction and input apart), so its shape follows from which of its turns are empty."""
        return not self._split_input

    def _locate(self, messages: list[Message], tools: Any, assistant_at: list[int], turns: Turns,
                text: str) -> Rendered:
        """Find the row's parts in its text ``text`` with the tagged render (see the module docstring)."""
        alphabet = _alphabet_for(text)
        if self._shape is None:
            raise RecordError("template_shape_unknown", self._shape_problem)
        has_user_data = any(m["role"] != "assistant" and m.get("content") for m in messages)
        levels = [0] + ([1] if tools else []) + ([2] if has_user_data else []) + ([3] if turns == "last" else [])
        for level in levels:
            marks = _Marks(alphabet)
            tagged, tagged_tools = self._tagged(messages, tools, level, marks)
            located = _read_marks(self._text(tagged, tagged_tools), marks, text)
            if located is not None:
                break
        else:
            raise RecordError("template_inspects_data", "the template renders this record differently when its "
                                                        "strings are tagged (it branches on what they hold), so "
                                                        "their places cannot be located exactly")
        _, ranges, broken = located
        unlocated = list(marks.unmarked)
        if broken:
            unlocated.extend(_field_texts(tagged, tagged_tools, broken, alphabet))
        ranges.sort()
        wanted = range(len(assistant_at)) if turns == "all" else [len(assistant_at) - 1]
        spans, which, inserted = [], [], []
        locator = _Locator(text, ranges, self._shape, assistant_at)
        for t in wanted:
            span, extra = locator.turn(assistant_at[t], t)
            spans.append(span)
            which.append(t)
            if extra:
                inserted.append(extra)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise RecordError("turn_ambiguous", "two assistant turns' spans overlap")
        return Rendered(text, tuple(spans), tuple(which), tuple(inserted),
                        tuple((r[0], r[1]) for r in ranges), tuple(dict.fromkeys(unlocated)))

    # --- learning the shape at load -----------------------------------------------------------------------------

    def _probe(self, messages: list[Message], add_generation_prompt: bool,
               tools: list[dict[str, Any]] | None = None) -> tuple[str, dict[tuple[int, str], tuple[int, int]]]:
        marks = _Marks()
        tagged, tagged_tools = self._tagged(messages, tools, 0, marks)
        located = _read_marks(self._render(tagged, tagged_tools, add_generation_prompt), marks, None)
        if located is None:
            raise RecordError("template_shape_unknown", "probe markers are not readable")
        text, ranges, _ = located
        found: dict[tuple[int, str], tuple[int, int]] = {}
        for start, end, owner, kind, _field in ranges:
            lo, hi = found.get((owner, kind), (start, end))
            found[(owner, kind)] = (min(lo, start), max(hi, end))
        return text, found

    def _learn_shape(self) -> tuple[_Shape | None, str]:
        """Probe conversations: where the header ends, what ends a turn, what a turn without reasoning gets."""
        user, reply = {"role": "user", "content": "probe question one"}, {"role": "assistant", "content": "probe answer one"}
        user2, reply2 = {"role": "user", "content": "probe question two"}, {"role": "assistant", "content": "probe answer two"}
        for lead in ([], [{"role": "system", "content": "probe system"}]):
            s = len(lead)
            try:
                one, at1 = self._probe([*lead, user, reply], False)
                gen1, gat1 = self._probe([*lead, user], True)
            except RecordError as exc:
                if exc.reason == "template_budget":
                    raise
                problem = f"the template cannot render a one-turn probe conversation ({exc.detail})"
                continue
            u1, a1 = at1.get((s, "content")), at1.get((s + 1, "content"))
            if u1 is None or a1 is None or gat1.get((s, "content")) is None:
                problem = "the template does not write a probe conversation's user or assistant text"
                continue
            between = one[u1[1]:a1[0]]
            headers = [_common_prefix(gen1[gat1[(s, 'content')][1]:], between) or between]
            tails = [one[a1[1]:]]
            with_reasoning: tuple[str, dict[tuple[int, str], tuple[int, int]]] | None = None
            try:
                two, at2 = self._probe([*lead, user, reply, user2, reply2], False)
                gen2, gat2 = self._probe([*lead, user, reply, user2], True)
                b1, u2, b2 = at2[(s + 1, "content")], at2[(s + 2, "content")], at2[(s + 3, "content")]
                headers.append(_common_prefix(gen2[gat2[(s + 2, 'content')][1]:], two[u2[1]:b2[0]])
                               or two[u2[1]:b2[0]])
                tails += [two[b1[1]:u2[0]], two[b2[1]:]]
                openers = [two[b1[1]:u2[0]]]
            except (RecordError, KeyError):
                openers = []
            call = {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "probe_function", "arguments": {"probe_key": "probe value"}}}]}
            result = {"role": "tool", "content": "probe tool result"}
            try:
                tool_text, att = self._probe([*lead, user, call, result, reply2], False)
                gen_t, gatt = self._probe([*lead, user, call, result], True)
                r, b = att[(s + 2, "content")], att[(s + 3, "content")]
                headers.append(_common_prefix(gen_t[gatt[(s + 2, 'content')][1]:], tool_text[r[1]:b[0]])
                               or tool_text[r[1]:b[0]])
                openers.append(tool_text[att[(s + 1, "tool_args")][1]:r[0]])
            except (RecordError, KeyError):
                pass
            try:
                with_reasoning = self._probe([*lead, user, {**reply, "reasoning_content": "probe reasoning"}], False)
            except RecordError:
                with_reasoning = None
            end_of_turn = tails[0]
            for tail in tails[1:]:
                end_of_turn = _common_prefix(end_of_turn, tail)
            end_of_turn = end_of_turn.rstrip()
            headers = [h for h in dict.fromkeys(headers) if h]
            if not headers:
                problem = "nothing separates a user turn from the reply in a probe conversation"
                continue
            empty = self._empty_reasoning(one, between, headers[0], a1, with_reasoning, s + 1)
            shape = _Shape(tuple(headers), end_of_turn or None,
                           tuple(o for o in dict.fromkeys(openers) if o.strip()) if not end_of_turn else (), empty)
            return shape, ""
        return None, problem

    @staticmethod
    def _empty_reasoning(one: str, between: str, header: str, reply_at: tuple[int, int],
                         with_reasoning: tuple[str, dict[tuple[int, str], tuple[int, int]]] | None,
                         owner: int) -> str | None:
        """Text between the header and a final reply that has no reasoning, when it is the reasoning slot left
        empty (the probe with reasoning writes the same text around it)."""
        if not between.startswith(header) or with_reasoning is None:
            return None
        filler = between[len(header):]
        text, at = with_reasoning
        r, c = at.get((owner, "reasoning_content")), at.get((owner, "content"))
        if not filler or r is None or c is None:
            return None
        head_end = text.rfind(header, 0, r[0])
        if head_end < 0:
            return None
        around = text[head_end + len(header):r[0]] + text[r[1]:c[0]]
        return filler if around == filler else None

    def _probe_default_system(self) -> str | None:
        """Render one exchange without and with a system prompt: what the first has in its place is the default."""
        turn = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        try:
            bare = self.render_messages(turn)
            with_system = self.render_messages([{"role": "system", "content": _PROBE_SYSTEM}, *turn])
        except RecordError as exc:
            if exc.reason == "template_budget":
                raise
            return None
        lead = len(_common_prefix(bare, with_system))
        tail = 0
        while (tail < min(len(bare), len(with_system)) - lead
               and bare[-1 - tail] == with_system[-1 - tail]):
            tail += 1
        inserted = bare[lead: len(bare) - tail]
        return inserted or None


def _field_texts(messages: list[Message], tools: Any, fields: set[int], alphabet: _Alphabet) -> list[str]:
    """The original strings of the given marker fields, read back from the tagged values."""
    out = []
    for value in _strings([messages, tools]):
        for m in alphabet.regex.finditer(value):
            field, closing = divmod(alphabet.index(m.group()), 2)
            if not closing and field in fields:
                out.append(alphabet.regex.sub("", value))
                break
    return out


class _Locator:
    """Places assistant turns in one rendered text, given the located data ranges and the template's shape."""

    def __init__(self, text: str, ranges: list[_Range], shape: _Shape, assistant_at: list[int]) -> None:
        self.text, self.ranges, self.shape, self.assistant_at = text, ranges, shape, assistant_at
        self.starts = [r[0] for r in ranges]
        self.by_owner: dict[int, list[int]] = {}
        for i, r in enumerate(ranges):
            self.by_owner.setdefault(r[2], []).append(i)

    def turn(self, owner: int, t: int) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """The span of assistant turn ``t`` (message ``owner``), and the inserted range at its start if any."""
        text, ranges, shape = self.text, self.ranges, self.shape
        own = self.by_owner.get(owner, [])
        first_data = None
        if own:
            lo, hi = own[0], own[-1]
            if any(ranges[i][2] != owner for i in range(lo, hi + 1)):
                raise RecordError("turn_ambiguous", f"assistant turn {t}: another message's text is inside it")
            if len({ranges[i][4] for i in own}) != len(own):
                raise RecordError("turn_ambiguous", f"assistant turn {t}: the template writes its text twice")
            a, b = ranges[lo][0], ranges[hi][1]
            first_data = a
            window_start = ranges[lo - 1][1] if lo > 0 else 0
            window_end = ranges[hi + 1][0] if hi + 1 < len(ranges) else len(text)
            start = self._last_header_end(window_start, a)
            if start is None or (shape.end_of_turn and text.find(shape.end_of_turn, start, a) >= 0):
                raise RecordError("header_not_found", f"assistant turn {t}: no assistant header before its text")
        else:
            start = b = self._unanchored_header(owner, t)
            window_end = min((ranges[i][0] for o, idx in self.by_owner.items() if o > owner for i in idx),
                             default=len(text))
        end = self._turn_end(b, window_end, t)
        inserted = None
        empty = shape.empty_reasoning
        if empty and text.startswith(empty, start) and (first_data is None or first_data >= start + len(empty)) \
                and not any(ranges[i][3] == "reasoning_content" for i in own):
            inserted = (start, start + len(empty))
        return (start, end), inserted

    def _unanchored_header(self, owner: int, t: int) -> int:
        """The header of a turn with no located text: headers are counted, not guessed. Between the data of the
        nearest assistant turns that have data, the headers outside data must be exactly one per turn without
        data, plus the next such turn's own; they are then taken in order."""
        ranges, order = self.ranges, self.assistant_at
        anchored = [o for o in order if o in self.by_owner]
        before = [o for o in anchored if o < owner]
        after = [o for o in anchored if o > owner]
        lo = ranges[self.by_owner[before[-1]][-1]][1] if before else 0
        hi = ranges[self.by_owner[after[0]][0]][0] if after else len(self.text)
        gap = [o for o in order if (before[-1] if before else -1) < o < (after[0] if after else len(self.text) + 1)
               and o not in self.by_owner]
        ends = self._header_ends(lo, hi)
        if len(ends) != len(gap) + (1 if after else 0):
            reason = "turn_not_rendered" if len(ends) < len(gap) + (1 if after else 0) else "turn_ambiguous"
            raise RecordError(reason, f"assistant turn {t} has no text, and the {len(ends)} assistant headers "
                                      f"around it do not match the {len(gap)} turns without text there")
        end = ends[gap.index(owner)]
        others_before = [ranges[i][1] for o, idx in self.by_owner.items() if 0 <= o < owner for i in idx]
        others_after = [ranges[i][0] for o, idx in self.by_owner.items() if o > owner for i in idx]
        if end < max(others_before, default=0) or end > min(others_after, default=len(self.text)):
            raise RecordError("turn_ambiguous", f"assistant turn {t}: its header is out of message order")
        return end

    def _last_header_end(self, lo: int, hi: int) -> int | None:
        best = None
        for header in self.shape.headers:
            at = self.text.rfind(header, lo, hi)
            if at >= 0 and (best is None or at + len(header) > best):
                best = at + len(header)
        return best

    def _header_ends(self, lo: int, hi: int) -> list[int]:
        ends = set()
        for header in self.shape.headers:
            at = self.text.find(header, lo, hi)
            while at >= 0:
                if not self._in_data(at, at + len(header)):
                    ends.add(at + len(header))
                at = self.text.find(header, at + 1, hi)
        return sorted(ends)

    def _in_data(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start) - 1
        for j in (i, i + 1):
            if 0 <= j < len(self.ranges) and self.ranges[j][0] < end and start < self.ranges[j][1]:
                return True
        return False

    def _turn_end(self, after: int, limit: int, t: int) -> int:
        text, shape = self.text, self.shape
        if shape.end_of_turn:
            at = text.find(shape.end_of_turn, after, limit)
            if at < 0:
                raise RecordError("end_of_turn_not_found", f"assistant turn {t}: no {shape.end_of_turn!r} after it")
            return at + len(shape.end_of_turn)
        hits = [at for at in (text.find(o, after, limit) for o in shape.openers) if at >= 0]
        if hits:
            return min(hits)
        if limit == len(text):
            return max(after, len(text.rstrip()))
        raise RecordError("end_of_turn_not_found", f"assistant turn {t}: cannot tell where it ends")


# --- special tokens in data ------------------------------------------------------------------------------------

_ADDED_TOKEN_PATTERNS: weakref.WeakKeyDictionary[Any, tuple[int, re.Pattern[str] | None]] = weakref.WeakKeyDictionary()
_PATTERN_LOCK = threading.Lock()


def _added_token_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    size = len(tokenizer)
    cached = _ADDED_TOKEN_PATTERNS.get(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    tokens = sorted(tokenizer.added_tokens_encoder, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(t) for t in tokens if t)) if tokens else None
    with _PATTERN_LOCK:
        _ADDED_TOKEN_PATTERNS[tokenizer] = (size, pattern)
    return pattern


def special_tokens_in(text: str, tokenizer: Any) -> list[str]:
    """The tokenizer's special/added tokens that occur in ``text``, each once, in order of first occurrence."""
    pattern = _added_token_pattern(tokenizer)
    if pattern is None:
        return []
    return list(dict.fromkeys(m.group(0) for m in pattern.finditer(text)))


def special_tokens_in_data(rendered: Rendered, tokenizer: Any) -> list[tuple[int, int, str]]:
    """Every special/added-token occurrence in ``rendered.text`` that overlaps a data range: ``(start, end, token)``.

    This is the forged-turn check: a control token that comes from a record's strings (content, reasoning, a
    function name, a JSON-decoded argument such as ``\\u003c|im_end|\\u003e``, a ``tools`` description) rather
    than from the template. Occurrences are found on the whole text, left to right and longest first as the
    tokenizer matches them, so a token straddling data and template text counts too. Raises
    RecordError(``special_token_unlocated``) when a data string whose place is unknown holds one: such a row
    can neither be rejected precisely nor encoded as text exactly.
    """
    pattern = _added_token_pattern(tokenizer)
    if pattern is None:
        return []
    for value in rendered.unlocated:
        found = pattern.search(value)
        if found:
            raise RecordError("special_token_unlocated",
                              f"{found.group(0)!r} is in a string whose place in the text cannot be located")
    data, hits, j = rendered.data, [], 0
    if not data:
        return []
    for m in pattern.finditer(rendered.text):
        start, end = m.span()
        while j < len(data) and data[j][1] <= start:
            j += 1
        if j == len(data):
            break
        if data[j][0] < end:
            hits.append((start, end, m.group(0)))
    return hits


def _builtin_source(name: str) -> str:
    return resources.files("dataprep").joinpath(f"templates/{name}.jinja").read_text(encoding="utf-8")


def _tokenizer_variables(tokenizer: Any) -> dict[str, Any]:
    """The template variables apply_chat_template adds: the special tokens map (transformers 4.x also lists extras)."""
    if tokenizer is None:
        return {}
    tokens = dict(getattr(tokenizer, "special_tokens_map", None) or {})
    return {k: list(map(str, v)) if isinstance(v, list | tuple) else str(v) for k, v in tokens.items() if v is not None}


def _tokenizer_template(tokenizer: Any) -> str:
    source = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(source, dict):
        if "default" not in source:
            raise UsageProblem(
                f"the tokenizer has several chat templates ({', '.join(sorted(source))}) and none named 'default'",
                hint="save the one you want to a file and pass --template PATH",
            )
        source = source["default"]
    if not source:
        where = "no --tokenizer was given" if tokenizer is None else "the tokenizer has no chat_template"
        raise UsageProblem(
            f"no chat template to render with: {where}",
            hint=f"pick one with --template ({', '.join(BUILTIN_TEMPLATES)}) or --template PATH",
        )
    return str(source)


def load_template(spec: str | None, tokenizer: Any) -> ChatTemplate:
    """Resolve ``--template``: None or ``tokenizer`` (its own chat_template), a built-in name, or a Jinja file.

    Built-ins and files take the special tokens they use from the tokenizer; one that is used but missing (no
    tokenizer given, or a tokenizer without that token) is an error here, not an empty string in every row.
    The tokenizer's own template is rendered exactly as transformers would, undefined tokens included.
    """
    variables = _tokenizer_variables(tokenizer)
    if spec is None or spec == "tokenizer":
        source = _tokenizer_template(tokenizer)
        return ChatTemplate("tokenizer", _compiled_source(source, "tokenizer chat_template"), variables)
    if spec in BUILTIN_TEMPLATES:
        template = ChatTemplate(spec, _builtin_source(spec), variables, split_input=spec == "alpaca")
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageProblem(
                f"unknown template {spec!r}: not a built-in and no such file",
                hint=f"built-ins: tokenizer, {', '.join(BUILTIN_TEMPLATES)}",
            )
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageProblem(f"{spec}: cannot read template: {exc}") from None
        template = ChatTemplate(spec, _compiled_source(source, spec), variables)
    missing = sorted(v for v in SPECIAL_TOKEN_VARIABLES if v in template.reads and v not in variables)
    if missing:
        if tokenizer is None:
            why, hint = "no --tokenizer was given", "pass --tokenizer DIR: special tokens come from the tokenizer"
        else:
            why, hint = "the tokenizer does not define it", "pick a template that does not use it"
        raise UsageProblem(f"template {template.name!r} writes {', '.join(missing)}, but {why}", hint=hint)
    return template


def _compiled_source(source: str, name: str) -> str:
    """Compile up front so a syntax error is one line naming the template, not a reject on every row."""
    try:
        _compile(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise UsageProblem(f"{name}:{exc.lineno}: template syntax error: {exc.message}") from None
    return source
