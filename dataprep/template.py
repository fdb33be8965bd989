"""Chat templates: load one, render a canonical record with it, and find the text that is supervised.

A template is Jinja text rendered the way ``transformers`` renders ``tokenizer.chat_template`` in
``apply_chat_template``: a sandboxed environment with ``trim_blocks``/``lstrip_blocks``, loop controls, a
``{% generation %}`` tag, a ``tojson`` filter that keeps non-ASCII text, ``raise_exception``, ``strftime_now``, and
the variables ``messages``, ``tools``, ``documents``, ``add_generation_prompt`` and the tokenizer's named special
tokens (``bos_token``, ``eos_token``, ...). Rendering the tokenizer's own template here therefore gives the same
text as ``apply_chat_template(..., tokenize=False)``, without a tokenizer call per row.

Supervised spans
----------------
The text is rendered once, for the whole conversation; spans are character ranges of *that* text. For each
assistant-side turn k (a reply or a function call), oldest first:

* ``head`` = the conversation before turn k rendered with ``add_generation_prompt=True``: the text up to where a
  model would start generating. The span starts at ``len(head)``.
* ``upto`` = the conversation up to and including turn k, rendered without a generation prompt. The span ends at
  ``len(upto)`` minus the whitespace after its last non-whitespace character (the newline a template writes
  after an end-of-turn marker is the next turn's business, not something the model must learn to emit).

Both must be prefixes of the full text, else the template rewrites earlier turns as the conversation grows
(Qwen3 drops old reasoning, Mistral v0.3 moves the system prompt): spans from prefix renders would be guesses, so
the record is rejected as ``template_not_incremental``. So the span of turn k is exactly what the template adds
for that turn after its generation prompt: the content as rendered (trimmed by templates that trim, with the
tool-call markup of templates that generate it) and the end-of-turn marker (``<|im_end|>``, ``<|eot_id|>``,
``</s>``). Spans must be non-empty and in order, else the record is rejected too.

Cost: the last turn's ``upto`` is the full text itself, so a single-turn record needs two renders; a record
with n assistant turns needs 2n.
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils

from dataprep import records
from dataprep.errors import UsageProblem
from dataprep.records import Message, Record, RecordError

BUILTIN_TEMPLATES = ("alpaca", "default", "chatml", "llama3", "mistral", "plain")
SPECIAL_TOKEN_VARIABLES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)
_PROBE_SYSTEM = "\ue000system-probe\ue001"
_PROBE_USER = "\ue002user-probe\ue003"
_PROBE_ASSISTANT = "\ue004assistant-probe\ue005"


@dataclass(frozen=True)
class Rendered:
    """A conversation rendered once, and the [start, end) character span of each assistant-side turn."""

    text: str
    turns: tuple[tuple[int, int], ...]


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
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    """The clock, as transformers gives it; SOURCE_DATE_EPOCH pins it so such templates render reproducibly."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime(fmt)
    return datetime.now().strftime(fmt)


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _DictFactory()
    env.globals["namespace"] = _Namespace
    return env


_ENV = _environment()


@lru_cache(maxsize=64)
def _compile(source: str) -> tuple[jinja2.Template, frozenset[str], frozenset[str]]:
    """Compile once per template text; also return the variables it reads from outside, and every name used."""
    ast = _ENV.parse(source)
    template = _ENV.from_string(ast)
    # Jinja flattens a ChainMap of globals into every render's context; a plain dict makes that a quick copy.
    template.globals = dict(template.globals)
    names = frozenset(node.name for node in ast.find_all(jinja2.nodes.Name))
    return template, frozenset(jinja2.meta.find_undeclared_variables(ast)), names


def _error_detail(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, jinja2.exceptions.TemplateError) else f"{type(exc).__name__}: {text}"


class ChatTemplate:
    """One chat template with the special-token values it renders with.

    ``name`` is ``tokenizer``, a built-in name, or the path it was read from; ``source`` is the exact template
    text (hash it to fingerprint a run); ``default_system`` is the system prompt the template writes by itself
    when a record has no ``prefix`` (found by rendering probe conversations), or None.
    """

    def __init__(self, name: str, source: str, variables: Mapping[str, Any] | None = None,
                 *, split_input: bool = False) -> None:
        self.name = name
        self.source = source
        self._template, self.reads, self._names = _compile(source)
        self._variables = dict(variables or {})
        self._split_input = split_input
        self.default_system = self._probe_default_system()

    @property
    def uses_clock(self) -> bool:
        """True when the text depends on the date (``strftime_now``) unless SOURCE_DATE_EPOCH is set."""
        return "strftime_now" in self._names

    def render_messages(self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None,
                        add_generation_prompt: bool = False) -> str:
        """Render messages as ``apply_chat_template(..., tokenize=False)`` does; RecordError if the template fails."""
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return self._render(chat, tools, add_generation_prompt)

    def _render(self, chat: list[Message], tools: list[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
        context = self._template.new_context(
            {**self._variables, "messages": chat, "tools": tools, "documents": None,
             "add_generation_prompt": add_generation_prompt}
        )
        try:
            return "".join(self._template.root_render_func(context))
        except RecursionError:
            raise RecordError("template_error", "template recursed too deeply") from None
        except Exception as exc:  # a template is user code: any failure is this record's reject reason
            raise RecordError("template_error", _error_detail(exc)) from None

    def messages_of(self, record: Record) -> tuple[list[Message], list[dict[str, Any]] | None]:
        """The messages and tools this template renders for a record (``alpaca`` also sees prompt/query apart)."""
        messages = records.to_messages(record)
        tools = records.parse_tools(record.get("tools"))
        if self._split_input and record.get("prompt") and record.get("query"):
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            messages[last_user] = {**messages[last_user], "instruction": record["prompt"], "input": record["query"]}
        return messages, tools

    def render(self, record: Record) -> Rendered:
        """Render a canonical record once and locate its supervised turns (see the module docstring)."""
        messages, tools = self.messages_of(record)
        messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
        text = self._render(messages, tools, False)
        spans: list[tuple[int, int]] = []
        last = len(messages) - 1
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            head = self._render(messages[:k], tools, True)
            upto = text if k == last else self._render(messages[: k + 1], tools, False)
            if not (text.startswith(head) and text.startswith(upto)):
                which = "generation prompt" if not text.startswith(head) else "turn"
                raise RecordError(
                    "template_not_incremental",
                    f"assistant turn {len(spans)}: the {which} rendered alone is not a prefix of the whole "
                    f"conversation (the template rewrites earlier turns, or opens a turn unlike its generation "
                    f"prompt), so its span cannot be located exactly",
                )
            start, end = len(head), len(upto.rstrip())
            if end <= start:
                raise RecordError("empty_turn", f"assistant turn {len(spans)} renders no text after its prompt")
            if spans and start < spans[-1][1]:
                raise RecordError("template_not_incremental", f"assistant turn {len(spans)} overlaps the one before")
            spans.append((start, end))
        if not spans:
            raise RecordError("no_assistant_turn", "the record has no assistant turn to supervise")
        return Rendered(text, tuple(spans))

    def _probe_default_system(self) -> str | None:
        """Render one exchange without and with a system prompt: what the first has in its place is the default."""
        turn = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        try:
            bare = self.render_messages(turn)
            with_system = self.render_messages([{"role": "system", "content": _PROBE_SYSTEM}, *turn])
        except RecordError:
            return None
        lead = 0
        while lead < min(len(bare), len(with_system)) and bare[lead] == with_system[lead]:
            lead += 1
        tail = 0
        while (tail < min(len(bare), len(with_system)) - lead
               and bare[-1 - tail] == with_system[-1 - tail]):
            tail += 1
        inserted = bare[lead: len(bare) - tail]
        return inserted or None


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
    """The tokenizer's special/added tokens that occur in ``text``, each once, in order of first occurrence.

    Run over user-supplied content: such a string is encoded as the control token itself, so a response that
    quotes ``<|im_end|>`` would teach the model to end its turn there.
    """
    pattern = _added_token_pattern(tokenizer)
    if pattern is None:
        return []
    return list(dict.fromkeys(m.group(0) for m in pattern.finditer(text)))
