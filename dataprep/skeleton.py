"""Rendering without Jinja for most rows: a template's output for one conversation *shape*, with the data left as
slots, rendered once and filled by string joins for every row of that shape.

Why. Rendering a chat template is Python-bound (tens of microseconds per row in a sandbox) and dominated every
tokenize run once the encoder became fast. Most templates only *place* message content: the text around it depends
on the conversation's structure (roles, which fields are present or empty, how many messages), never on the words.
For such a template and such a row, ``render(row) == fill(skeleton(shape(row)), data(row))`` exactly.

When that holds is decided twice, and both must agree before a skeleton is used:

* **Statically, once per template** (:func:`analyse`): every comparison (``==``, ``in``, ``<``...) and every
  ``for`` loop's iterable must be provably free of message data: constants, ``role``/``type`` fields, ``loop``
  variables, lengths of containers, and names bound only to such values. A comparison that reads content
  (Qwen3's ``'</think>' in content``) makes the template ineligible: it is always rendered.
* **Dynamically, once per shape** (:class:`Skeletons`): the shape is rendered with every non-empty data string
  replaced by a unique placeholder, in an environment that flags any operation whose result could depend on the
  words: an attribute or method of a data string (``.strip()``, ``.split()``), indexing or slicing it, using it
  as a key, arithmetic other than concatenation, a call or filter or test given it (except the structure-only
  ones: ``trim`` of text without surrounding whitespace, ``string``, ``join``, type tests, ``length``/``first``/
  ``last`` of a *list*). A flagged shape is rendered by Jinja for every row.

The shape of a row is its messages and tools with every string replaced by "empty or not" — except ``role`` and
``type`` values, kept verbatim — so truthiness and ``is defined`` decide the same way for a row as for its
placeholders. A row whose data holds a placeholder character, or surrounding whitespace where the template trims,
is not filled. Each run also compares a sample of filled rows with a real render (see tokenize's self-check).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox

PH_OPEN = "\uf8f0"  # BMP private use: the tagged render's markers live in planes 15 and 16
PH_CLOSE = "\uf8f1"
PLACEHOLDER_CHARS = (PH_OPEN, PH_CLOSE)
VERBATIM_KEYS = frozenset({"role", "type"})
STRUCTURE_ATTRS = VERBATIM_KEYS
TYPE_TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "sequence", "iterable", "number",
                        "boolean", "true", "false", "callable", "integer", "float"})
CONTAINER_FILTERS = frozenset({"length", "count", "first", "last", "list", "reverse", "selectattr", "rejectattr",
                               "map", "items", "batch", "slice"})
DATA_NAMES = frozenset({"messages", "tools", "documents"})
PASSING_CALLS = frozenset({"namespace", "raise_exception"})
PLACING_FILTERS = frozenset({"string", "join", "default", "d", "safe"})
SAFE_NAMES = frozenset({"loop", "add_generation_prompt", "range", "namespace", "raise_exception", "true", "false",
                        "none", "True", "False", "None"})


class Sensitive(Exception):
    """The template did something with message data whose result could depend on the words."""


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return PH_OPEN in value
    if isinstance(value, dict):
        return any(_has_placeholder(k) or _has_placeholder(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_placeholder(v) for v in value)
    return False


# -- static analysis --------------------------------------------------------------------------------------------

def analyse(ast: jinja2.nodes.Template) -> str | None:
    """None when every comparison and loop of the template is free of message data; else why not."""
    bound: dict[str, list[jinja2.nodes.Node]] = {}
    for node in ast.find_all(jinja2.nodes.Assign):
        for name in _target_names(node.target):
            bound.setdefault(name, []).append(node.node)
    for node in ast.find_all(jinja2.nodes.For):
        for name in _target_names(node.target):
            bound.setdefault(name, []).append(node.iter)
    for node in ast.find_all(jinja2.nodes.Name):
        if node.name == "strftime_now":
            return "it writes today's date"
    checker = _DataFree(bound)
    for node in ast.find_all(jinja2.nodes.Compare):
        if not checker.free(node):
            return f"line {node.lineno}: a comparison may read message data"
    for node in ast.find_all(jinja2.nodes.For):
        if not checker.iterable(node.iter):
            return f"line {node.lineno}: a loop may walk over message data"
    return None


def _target_names(target: jinja2.nodes.Node) -> Iterator[str]:
    if isinstance(target, jinja2.nodes.Name):
        yield target.name
    elif isinstance(target, jinja2.nodes.NSRef):
        yield f"{target.name}.{target.attr}"
    elif isinstance(target, jinja2.nodes.Tuple):
        for item in target.items:
            yield from _target_names(item)


class _DataFree:
    """Whether an expression's value is certainly free of message words (structure only)."""

    def __init__(self, bound: dict[str, list[jinja2.nodes.Node]]) -> None:
        self.bound = bound
        self.busy: set[str] = set()

    def free(self, node: jinja2.nodes.Node) -> bool:
        n = jinja2.nodes
        if isinstance(node, n.Const):
            return True
        if isinstance(node, n.Getattr) and node.attr in STRUCTURE_ATTRS:
            return True
        if isinstance(node, n.Getitem) and isinstance(node.arg, n.Const) and node.arg.value in STRUCTURE_ATTRS:
            return True
        if isinstance(node, n.Getattr) and isinstance(node.node, n.Name) and node.node.name == "loop":
            return True
        if isinstance(node, n.Getattr) and isinstance(node.node, n.Name):
            key = f"{node.node.name}.{node.attr}"  # a namespace attribute set in the template, or data
            return key in self.bound and self._name(key)
        if isinstance(node, n.Name):
            return self._name(node.name)
        if isinstance(node, n.Filter) and node.name in ("length", "count"):
            return True  # of a container: structure; of a string: stopped at render time
        if isinstance(node, n.Test) and node.name in TYPE_TESTS:
            return True
        if isinstance(node, (n.Filter, n.Test)):
            return (node.node is None or self.free(node.node)) and all(self.free(a) for a in node.args) \
                and all(self.free(k.value) for k in node.kwargs)
        if isinstance(node, n.Compare):
            return self.free(node.expr) and all(self.free(op.expr) for op in node.ops)
        if isinstance(node, n.Getitem):  # messages[i]['role'] is handled above; an index into data is not free
            return False
        if isinstance(node, (n.BinExpr, n.UnaryExpr, n.And, n.Or, n.Not, n.Neg, n.Pos)):
            return all(self.free(child) for child in node.iter_child_nodes())
        if isinstance(node, n.CondExpr):
            return all(self.free(c) for c in (node.test, node.expr1, node.expr2) if c is not None)
        if isinstance(node, (n.List, n.Tuple)):
            return all(self.free(item) for item in node.items)
        return False

    def _name(self, name: str) -> bool:
        if name in SAFE_NAMES:
            return True
        values = self.bound.get(name)
        if values is None:  # a variable given from outside: special tokens and options, or the data itself
            return name not in DATA_NAMES
        if name in self.busy:  # a cycle: decided by the name's other assignments
            return True
        self.busy.add(name)
        try:
            return all(self.free(v) for v in values)
        finally:
            self.busy.discard(name)

    def iterable(self, node: jinja2.nodes.Node) -> bool:
        """A loop may walk the message list, tools, a message's tool calls, or a range — never a string."""
        n = jinja2.nodes
        if isinstance(node, n.Name) and node.name in DATA_NAMES:
            return True
        if isinstance(node, n.Name) and node.name in self.bound and node.name not in self.busy:
            self.busy.add(node.name)
            try:
                return all(self.iterable(v) or self.free(v) for v in self.bound[node.name])
            finally:
                self.busy.discard(node.name)
        if isinstance(node, n.Getattr) and node.attr == "tool_calls":
            return True
        if isinstance(node, n.Getitem) and isinstance(node.arg, n.Const) and node.arg.value == "tool_calls":
            return True
        if isinstance(node, n.Getitem) and isinstance(node.arg, n.Slice):
            return self.iterable(node.node)
        if isinstance(node, n.Call) and isinstance(node.node, n.Name) and node.node.name == "range":
            return all(self.free(a) for a in node.args)
        if isinstance(node, n.Filter) and node.name in ("reverse", "list", "selectattr", "rejectattr", "batch"):
            return node.node is not None and self.iterable(node.node)
        return False


# -- dynamic check: the tracking environment ---------------------------------------------------------------------

def tracking_environment(proto: jinja2.sandbox.SandboxedEnvironment) -> Any:
    """A copy of the sandbox ``proto`` (same class, settings, filters, tests and globals) that raises
    :class:`Sensitive` on any operation that could make the output depend on a placeholder's words."""

    class Tracking(type(proto)):  # type: ignore[misc]
        intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, str) and PH_OPEN in obj:
                raise Sensitive(f"reads .{attribute} of message text")
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if (isinstance(obj, str) and PH_OPEN in obj) or _has_placeholder(argument):
                raise Sensitive("indexes message text or looks up by it")
            return super().getitem(obj, argument)

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            if op == "+" and isinstance(left, str) and isinstance(right, str):
                return super().call_binop(context, op, left, right)
            if _has_placeholder(left) or _has_placeholder(right):
                raise Sensitive(f"applies {op!r} to message text")
            return super().call_binop(context, op, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            if _has_placeholder(args) or _has_placeholder(kwargs):
                joiner = getattr(__obj, "__self__", None)
                is_join = isinstance(joiner, str) and getattr(__obj, "__name__", "") == "join" \
                    and not _has_placeholder(joiner)
                # a loop charging its length to the render budget only counts the items
                structural = __obj is getattr(__self, "charge_loop", None)
                if not (is_join or structural) and getattr(__obj, "__name__", "") not in PASSING_CALLS:
                    raise Sensitive(f"passes message text to {getattr(__obj, '__name__', 'a call')}")
            return super().call(__context, __obj, *args, **kwargs)

    env = Tracking.__new__(Tracking)
    jinja2.sandbox.SandboxedEnvironment.__init__(
        env, trim_blocks=proto.trim_blocks, lstrip_blocks=proto.lstrip_blocks,
        keep_trailing_newline=proto.keep_trailing_newline, extensions=[type(e) for e in proto.extensions.values()])
    env.filters.update(proto.filters)
    env.tests.update(proto.tests)
    env.globals.update(proto.globals)
    env.trims_used = False
    for name, fn in list(env.filters.items()):
        env.filters[name] = _guard_filter(env, name, fn)
    for name, fn in list(env.tests.items()):
        env.tests[name] = _guard_test(name, fn)
    return env


def _guard_filter(env: Any, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, jinja2.runtime.Context | jinja2.Environment)]
        if _has_placeholder(values) or _has_placeholder(kwargs):
            first = values[0] if values else None
            structural = name in CONTAINER_FILTERS and not isinstance(first, str) \
                and not _has_placeholder(values[1:]) and not _has_placeholder(kwargs)
            placing = name in PLACING_FILTERS and len(values) == 1 and not kwargs and (
                isinstance(first, str) or (name == "join" and isinstance(first, list | tuple)
                                           and all(isinstance(v, str) for v in first)))
            if name == "trim" and isinstance(first, str) and len(values) == 1:
                env.trims_used = True
            elif not structural and not placing:
                raise Sensitive(f"applies the {name} filter to message text")
        return fn(*args, **kwargs)

    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(guarded, attr, getattr(fn, attr))
    return guarded


def _guard_test(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name not in TYPE_TESTS and (_has_placeholder(args) or _has_placeholder(kwargs)):
            raise Sensitive(f"applies the {name} test to message text")
        return fn(*args, **kwargs)

    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(guarded, attr, getattr(fn, attr))
    return guarded


# -- shapes, placeholders and skeletons --------------------------------------------------------------------------

def _walk(value: Any, key: Any, shape: list[Any], data: list[str]) -> None:
    """Append ``value``'s structure to ``shape`` and its data strings to ``data`` (one pass, depth first)."""
    kind = type(value)
    if kind is str:
        if key in VERBATIM_KEYS:
            shape.append(value)
        elif value:
            shape.append(True)
            data.append(value)
        else:
            shape.append(False)
    elif kind is dict:
        shape.append("{")
        for k, v in value.items():
            shape.append(k)
            _walk(v, k, shape, data)
        shape.append("}")
    elif kind is list or kind is tuple:
        shape.append("[")
        for v in value:
            _walk(v, None, shape, data)
        shape.append("]")
    else:
        shape.append((kind.__name__, value))


def shape_and_data(messages: Any, tools: Any) -> tuple[tuple[Any, ...], list[str]]:
    """A render input's structure (strings reduced to empty-or-not, except ``role``/``type`` values) and its data
    strings in order."""
    shape: list[Any] = ["["]
    data: list[str] = []
    add, keep = shape.append, data.append
    for message in messages:  # the usual message (a dict of strings) inline: this runs for every row
        if type(message) is not dict:
            _walk(message, None, shape, data)
            continue
        add("{")
        for k, v in message.items():
            add(k)
            if type(v) is not str:
                _walk(v, k, shape, data)
            elif k in VERBATIM_KEYS:
                add(v)
            elif v:
                add(True)
                keep(v)
            else:
                add(False)
        add("}")
    add("]")
    add("|")
    _walk(tools, None, shape, data)
    return tuple(shape), data


def _slots(value: Any, out: list[str], key: str | None = None) -> Any:
    """``value`` with each non-empty data string replaced by a numbered placeholder (numbered as
    :func:`shape_and_data` orders the data)."""
    if isinstance(value, str):
        if key in VERBATIM_KEYS or not value:
            return value
        out.append(value)
        return f"{PH_OPEN}{len(out) - 1}{PH_CLOSE}"
    if isinstance(value, dict):
        return {k: _slots(v, out, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_slots(v, out) for v in value]
    return value


@dataclass(frozen=True)
class Skeleton:
    """A shape's output as literal ``pieces`` around data ``slots``: text = p0 + d[s0] + p1 + d[s1] + ... + pn."""

    pieces: tuple[str, ...]
    slots: tuple[int, ...]
    trims: bool

    def fill(self, data: Sequence[str]) -> str:
        parts = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            parts.append(data[slot])
            parts.append(piece)
        return "".join(parts)


@dataclass(frozen=True)
class Filled:
    """A row as its shape's skeleton fills it: ``key`` names the shape, ``data`` are the row's strings."""

    key: Any
    skeleton: Skeleton
    data: list[str]

    def bounds(self) -> list[int]:
        """Where each piece and slot starts in the text, in order (piece 0, slot 0, piece 1, ...), then the end."""
        at, out = 0, []
        pieces, slots = self.skeleton.pieces, self.skeleton.slots
        for i, piece in enumerate(pieces):
            out.append(at)
            at += len(piece)
            if i < len(slots):
                out.append(at)
                at += len(self.data[slots[i]])
        out.append(at)
        return out


class Anchors:
    """Character positions in a shape's text tied to its template pieces, so the positions found once, in one row
    of the shape, are computed for every other row by arithmetic: position = where piece i starts + offset.

    A position inside a data slot is not tied to the template; a shape with one is not anchored (None)."""

    def __init__(self, at: list[tuple[int, int]]) -> None:
        self.at = at

    @classmethod
    def of(cls, filled: Filled, positions: Sequence[int]) -> Anchors | None:
        bounds = filled.bounds()
        at = []
        for pos in positions:
            # the entry holding pos: the last one starting at or before it, except that a position where a piece
            # ends and a slot starts belongs to the piece (the first even k with bounds[k + 1] == pos)
            first, past = bisect.bisect_left(bounds, pos), bisect.bisect_right(bounds, pos)
            k = min(past, len(bounds)) - 1
            even = max(first - 1, 0)
            even += even % 2
            if even < k:
                k = even
            if k % 2:  # inside a slot (k odd): its place depends on the data
                return None
            at.append((k // 2, pos - bounds[k]))
        return cls(at)

    def place(self, filled: Filled) -> list[int]:
        bounds = filled.bounds()
        return [bounds[2 * piece] + offset for piece, offset in self.at]


def _split(text: str, trims: bool) -> Skeleton | None:
    pieces: list[str] = []
    slots: list[int] = []
    pos = 0
    while True:
        start = text.find(PH_OPEN, pos)
        if start < 0:
            pieces.append(text[pos:])
            break
        end = text.find(PH_CLOSE, start)
        if end < 0:
            return None
        pieces.append(text[pos:start])
        slots.append(int(text[start + 1:end]))
        pos = end + 1
    if PH_CLOSE in pieces[-1]:
        return None
    return Skeleton(tuple(pieces), tuple(slots), trims)


class Skeletons:
    """Per-shape skeletons of one template. ``render(messages, tools, add_generation_prompt)`` renders in the
    tracking ``env`` and lets :class:`Sensitive` through. Shapes found sensitive are remembered, so each is tried
    once; ``reason`` (from :func:`analyse`) switches skeletons off for the whole template."""

    def __init__(self, render: Callable[[list[dict[str, Any]], Any, bool], str], env: Any,
                 reason: str | None) -> None:
        self._render = render
        self._env = env
        self.reason = reason
        self._cache: dict[Any, Skeleton | None] = {}
        self.filled = 0
        self.rendered = 0

    @property
    def eligible(self) -> bool:
        return self.reason is None

    def text(self, messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool = False) -> str | None:
        """The row's rendered text, or None when it must be rendered by Jinja."""
        found = self.layout(messages, tools, add_generation_prompt)
        return None if found is None else found.skeleton.fill(found.data)

    def layout(self, messages: list[dict[str, Any]], tools: Any,
               add_generation_prompt: bool = False) -> Filled | None:
        """The row's skeleton and data (its text is ``skeleton.fill(data)``), or None when Jinja must render it."""
        if self.reason is not None:
            return None
        shape, data = shape_and_data(messages, tools)
        key = (shape, add_generation_prompt)
        skeleton = self._cache.get(key, False)
        if skeleton is False:
            skeleton = self._build(messages, tools, add_generation_prompt)
            self._cache[key] = skeleton
        if skeleton is None or any(c in s for s in data for c in PLACEHOLDER_CHARS) or (
                skeleton.trims and any(s != s.strip() for s in data)):
            self.rendered += 1
            return None
        self.filled += 1
        return Filled(key, skeleton, data)

    def _build(self, messages: list[dict[str, Any]], tools: Any, add_generation_prompt: bool) -> Skeleton | None:
        data: list[str] = []
        probe_messages = _slots(messages, data)
        probe_tools = _slots(tools, data)
        self._env.trims_used = False
        try:
            text = self._render(probe_messages, probe_tools, add_generation_prompt)
        except Exception:  # Sensitive, or a failure the real render will turn into the row's reject reason
            return None
        return _split(text, self._env.trims_used)

