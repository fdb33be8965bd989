"""The Jinja environment chat templates run in: transformers' sandbox, plus a budget on work and on string size.

A chat template is user code (``--template FILE``, or a tokenizer folder's ``chat_template``). The sandbox stops
it from reaching Python internals; this module also stops it from running without end or allocating without
limit (nested ``range`` loops, ``'a' * 2 * 10**9``, a string doubled in a loop).

How the bound works, so that it costs little on ordinary templates:

* **Steps.** Every call made from template code (methods, filters called as functions, macros, ``loop()``) and
  every item a ``{% for %}`` loop walks over is one step. A loop's iterable is charged its length once, when the
  loop starts (the compiled template is rewritten so each ``for`` goes through :func:`_charge_loop`), and
  ``range(n)`` is charged ``n`` when it is made. Steps are counted, not timed, so a render that is within budget
  on one machine is within budget on every machine: rejects do not depend on load. A wall-clock limit is kept as
  a backstop for work the counting cannot see.
* **Size.** Every operation that can make a string or list much longer than its inputs checks the result's
  size *before* building it: ``*``, ``%``, ``**`` (big integers), the buffers joined for ``{% set %}`` blocks,
  macros and ``~``, the ``center``/``indent``/``wordwrap``/``replace``/``join``/``format``/``tojson`` filters,
  and the widening ``str`` methods. ``+`` is left alone (intercepting it made Qwen2.5's template 70% slower);
  a value can only grow without bound through ``+`` by being stored and added to itself again, so every
  ``{% set %}`` value, namespace attribute and call argument is checked instead. The rendered output is
  counted as it is produced.

Exceeding either raises :class:`BudgetExceeded`, which the caller turns into a ``template_budget`` reject
(or, at load, into a one-line usage error).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import jinja2
import jinja2.ext
import jinja2.filters
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils
import jinja2.visitor

DEFAULT_STEPS = 2_000_000
DEFAULT_CHARS = 64 * 1024 * 1024
DEFAULT_SECONDS = 20.0
MAX_WIDTH = 100_000  # the largest field width / padding a format, center or indent may ask for
MAX_POWER_BITS = 4096
MAX_JSON_INDENT = 64
_SMALL = 1 << 16  # strings shorter than this are never over any budget worth setting; skip the look-up


class BudgetExceeded(Exception):
    """A render used more steps, characters or time than its budget allows."""


class Budget:
    """The allowance of one render; ``steps`` and ``chars`` are the limits, ``left`` what remains."""

    __slots__ = ("chars", "deadline", "left", "seconds", "steps", "ticks")

    def __init__(self, steps: int = DEFAULT_STEPS, chars: int = DEFAULT_CHARS,
                 seconds: float = DEFAULT_SECONDS) -> None:
        self.steps, self.chars, self.seconds = steps, chars, seconds
        self.left = steps
        self.ticks = 0
        self.deadline = time.monotonic() + seconds

    def charge(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise BudgetExceeded(f"more than {self.steps:,} steps (calls and loop iterations)")
        self.ticks += 1
        if not self.ticks & 1023 and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"more than {self.seconds:g} s")

    def size(self, n: int) -> None:
        if n > self.chars:
            raise BudgetExceeded(f"a value of {n:,} characters or items (limit {self.chars:,})")


_LOCAL = threading.local()


def _budget() -> Budget:
    budget = getattr(_LOCAL, "budget", None)
    if budget is None:  # a render outside bounded(): still bounded, with the defaults
        budget = _LOCAL.budget = Budget()
    return budget


class bounded:  # noqa: N801 - used as a context manager, reads like a statement
    """``with bounded(budget):`` makes ``budget`` the allowance of the renders run in this thread meanwhile."""

    __slots__ = ("budget", "previous")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __enter__(self) -> Budget:
        self.previous = getattr(_LOCAL, "budget", None)
        _LOCAL.budget = self.budget
        return self.budget

    def __exit__(self, *exc: object) -> None:
        _LOCAL.budget = self.previous


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | bytes) else 0


_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")


def _check_widths(numbers: Iterable[str]) -> None:
    for digits in numbers:
        if digits and digits.isdigit() and int(digits) > MAX_WIDTH:
            raise BudgetExceeded(f"a field width of {int(digits):,} (limit {MAX_WIDTH:,})")


def _check_printf(fmt: str, args: Any) -> None:
    _budget().size(len(fmt))
    for width, precision in _PRINTF_WIDTH.findall(fmt):
        if "*" in (width, precision):
            values = args if isinstance(args, tuple) else (args,)
            _check_widths(str(v) for v in values if isinstance(v, int))
        _check_widths((width, precision))


def _check_str_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for spec in _FORMAT_SPEC.findall(fmt):
        _check_widths(_DIGITS.findall(spec))
    if "{" in fmt.replace("{{", ""):  # nested fields may take a width from the arguments
        _check_widths(str(v) for v in (*args, *kwargs.values()) if isinstance(v, int))


def _check_binop(operator: str, left: Any, right: Any) -> None:
    budget = _budget()
    if operator == "*":
        if isinstance(right, int) and _size_of(left):
            budget.size(_size_of(left) * right)
        elif isinstance(left, int) and _size_of(right):
            budget.size(_size_of(right) * left)
    elif operator == "+":
        if _size_of(left) or _size_of(right):
            budget.size(_size_of(left) + _size_of(right))
    elif operator == "**":
        too_big = isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
            and right * abs(left).bit_length() > MAX_POWER_BITS
        if too_big:
            raise BudgetExceeded(f"an integer power of more than {MAX_POWER_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


_WIDENING_METHODS = frozenset(("center", "ljust", "rjust", "zfill", "expandtabs", "join", "replace"))


def _check_str_method(name: str, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    budget = _budget()
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_widths(str(a) for a in args[:1] if isinstance(a, int))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_widths([str(size)])
            budget.size(len(text) + text.count("\t") * size)
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, list | tuple):
            budget.size(sum(_size_of(i) for i in items) + len(text) * len(items))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        hits = len(text) + 1 if not old else text.count(old)
        budget.size(len(text) + hits * max(0, len(new) - len(old)))


def _bounded_concat(parts: Iterable[str]) -> str:
    pieces = parts if isinstance(parts, list) else list(parts)
    _budget().size(sum(map(len, pieces)))
    return "".join(pieces)


def _bounded_str_join(seq: Iterable[Any]) -> str:
    return _bounded_concat([str(x) for x in seq])


def _check_size(value: Any) -> Any:
    """The value of a ``{% set %}``, checked: ``+`` is not intercepted (it is the hot path of every chat
    template), so a string can only grow without bound by being stored and added to itself again."""
    if _size_of(value) > _SMALL:
        _budget().size(len(value))
    return value


def _charge_loop(iterable: Any) -> Any:
    """The iterable of a ``{% for %}``, charged its length up front (or item by item if it has none)."""
    try:
        count = len(iterable)
    except TypeError:
        return _counted(iterable)
    _budget().charge(count)
    return iterable


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.charge(1)
        yield item


def _range(*args: int) -> range:
    rng = jinja2.sandbox.safe_range(*args)
    _budget().charge(len(rng))
    return rng


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (TRL-style assistant markers): rendered as its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore names, so a template cannot reach Python internals through it."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        for name in dict(*rest, **kwargs):
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, *rest, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        _check_size(value)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a template may not set {name!r} on a namespace")


class _DictFactory:
    """``dict(...)`` and ``dict.fromkeys(...)`` for templates, without handing them the ``dict`` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML; chat templates need the JSON text as json.dumps writes it.
    if isinstance(indent, int) and indent > MAX_JSON_INDENT:
        raise BudgetExceeded(f"tojson indent {indent} (limit {MAX_JSON_INDENT})")
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    _budget().size(len(text))
    return text


def _strftime_now(fmt: str) -> str:
    """The clock, as transformers gives it; SOURCE_DATE_EPOCH pins it so such templates render reproducibly."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime(fmt)
    return datetime.now().strftime(fmt)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    if not all(isinstance(v, int) for v in (n, min, max)) or n > 1000 or max > 1000:
        raise BudgetExceeded("lipsum asked for more than 1000 paragraphs or words")
    _budget().charge(n * max)
    return jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _guard_filter(check: Callable[..., None], original: Callable[..., Any]) -> Callable[..., Any]:
    def filtered(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return original(*args, **kwargs)

    filtered.__name__ = getattr(original, "__name__", "filter")
    for flag in ("jinja_pass_arg",):  # keep pass_eval_context / pass_environment markers
        if hasattr(original, flag):
            setattr(filtered, flag, getattr(original, flag))
    return filtered


def _check_center(value: Any, width: int = 80, *rest: Any, **kwargs: Any) -> None:
    _check_widths([str(width)] if isinstance(width, int) else [])


def _check_indent(s: Any, width: Any = 4, *rest: Any, **kwargs: Any) -> None:
    text = str(s)
    pad = width if isinstance(width, int) else len(str(width))
    _check_widths([str(pad)])
    _budget().size(len(text) + pad * (text.count("\n") + 1))


def _check_wordwrap(environment: Any, s: Any, width: int = 79, *rest: Any, **kwargs: Any) -> None:
    _budget().size(2 * len(str(s)))


def _check_replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> None:
    _check_str_method("replace", str(s), (str(old), str(new)), {})


def _check_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> None:
    if isinstance(value, list | tuple) and attribute is None:
        _budget().size(sum(_size_of(i) for i in value) + len(str(d)) * len(value))


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), args or tuple(kwargs.values()))


class _ForLoopCharge(jinja2.visitor.NodeTransformer):
    """Route every ``{% for %}`` iterable and every ``{% set %}`` value through the budget."""

    def visit_Assign(self, node: jinja2.nodes.Assign) -> jinja2.nodes.Node:  # noqa: N802 - visitor protocol
        self.generic_visit(node)
        check = jinja2.nodes.EnvironmentAttribute("check_size")
        node.node = jinja2.nodes.Call(check, [node.node], [], None, None, lineno=node.lineno)
        return node

    def visit_For(self, node: jinja2.nodes.For) -> jinja2.nodes.Node:  # noqa: N802 - visitor protocol
        self.generic_visit(node)
        charge = jinja2.nodes.EnvironmentAttribute("charge_loop")
        node.iter = jinja2.nodes.Call(charge, [node.iter], [], None, None, lineno=node.lineno)
        return node


class BoundedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """transformers' chat-template environment (sandboxed, trim/lstrip blocks, loop controls, generation tag,
    unescaped ``tojson``, ``raise_exception``, ``strftime_now``), with the work and size bounds above."""

    intercepted_binops = frozenset(("*", "%", "**"))
    concat = staticmethod(_bounded_concat)
    charge_loop = staticmethod(_charge_loop)
    check_size = staticmethod(_check_size)

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True,
                         extensions=[_GenerationTag, jinja2.ext.loopcontrols])
        self.filters["tojson"] = _tojson
        guards = {"center": _check_center, "indent": _check_indent, "wordwrap": _check_wordwrap,
                  "replace": _check_replace, "join": _check_join, "format": _check_format}
        for name, check in guards.items():
            self.filters[name] = _guard_filter(check, self.filters[name])
        self.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_DictFactory(),
                            namespace=_Namespace, range=_range, lipsum=_lipsum)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().charge(1)
        for arg in args:  # a macro fed its own output doubles a string per call
            if _size_of(arg) > _SMALL:
                _budget().size(len(arg))
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", None) in _WIDENING_METHODS:
            _check_str_method(__obj.__name__, owner, args, kwargs)
        return jinja2.sandbox.ImmutableSandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_format(fmt, args, kwargs)
            _budget().size(len(fmt))
            result = wrapped(*args, **kwargs)
            _budget().size(len(result))
            return result

        return checked

    def compile_bounded(self, source: str) -> tuple[jinja2.Template, jinja2.nodes.Template]:
        """Parse, route loops through the budget, compile; also return the parsed (unrewritten) tree."""
        ast = self.parse(source)
        rewritten = _ForLoopCharge().visit(self.parse(source))
        template = self.from_string(rewritten)
        # Jinja flattens a ChainMap of globals into every render's context; a plain dict makes that a quick copy.
        template.globals = dict(template.globals)
        template.root_render_func.__globals__["str_join"] = _bounded_str_join  # the ``~`` operator
        return template, ast
