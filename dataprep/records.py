"""The canonical record and its conversion to and from chat ``messages``.

A canonical record is one JSON object per example (schemas/canonical.schema.json)::

    {"id", "prefix", "prompt", "query", "response", "history": [[user, assistant], ...]}

plus optional ``tools`` (a JSON array, as text, of the functions the assistant may call), ``roles`` (one role
per turn when a conversation has tool calls), ``reasoning`` (one string per assistant-side turn: the thinking
that came before it, ``""`` for none; omitted when every turn has none), ``meta`` (every source field that has
no canonical place), and the ``len_bucket``/``split`` fields that ``dataprep split`` adds.

Reasoning is data, kept apart from the reply: OpenAI-style ``reasoning_content`` and a leading
``<think>…</think>`` block in a reply both land in ``reasoning`` (:func:`split_think`), and go back out the same
way (:func:`think_text`). Which reasoning reaches the training text is the chat template's decision.

Turns are ordered history pairs first, then (prompt+query, response). ``roles`` marks a turn on the user
side as ``user`` or ``observation`` (a tool's result) and a turn on the assistant side as ``assistant`` or
``function_call`` (its content: a JSON object ``{"name", "arguments"}`` or a JSON array of them). Keeping the
pair layout of LLaMA-Efficient-Tuning means every record alternates by construction: a conversation that does
not alternate cannot be written down as a canonical record, so normalize must reject it, not guess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any, NotRequired, Required, TypedDict

from dataprep.jsonenc import compact_encoder


class Record(TypedDict, total=False):
    """A canonical record (schemas/canonical.schema.json); the six first keys are always present."""

    id: Required[str]
    prefix: Required[str]
    prompt: Required[str]
    query: Required[str]
    response: Required[str]
    history: Required[list[list[str]]]
    tools: NotRequired[str]
    roles: NotRequired[list[str]]
    reasoning: NotRequired[list[str]]
    meta: NotRequired[dict[str, Any]]
    len_bucket: NotRequired[int]
    split: NotRequired[str]


Message = dict[str, Any]

TEXT_FIELDS = ("prefix", "prompt", "query", "response")
CANONICAL_FIELDS = ("id", *TEXT_FIELDS, "history")
OPTIONAL_FIELDS = ("tools", "roles", "reasoning", "meta", "len_bucket", "split")
FIELD_ORDER = {name: i for i, name in enumerate(CANONICAL_FIELDS + OPTIONAL_FIELDS)}

USER_ROLES = ("user", "observation")
ASSISTANT_ROLES = ("assistant", "function_call")


class RecordError(ValueError):
    """A record that cannot be represented; ``reason`` is the stable reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_ID_ENCODE = compact_encoder(allow_nan=True)


def content_id(record: Record) -> str:
    """Derive an id from content only, so the same example gets the same id on every run and machine."""
    key = [record.get(f, "") for f in TEXT_FIELDS]
    key += [record.get("history") or [], record.get("tools") or "", record.get("roles") or []]
    if any(record.get("reasoning") or ()):  # appended only when present, so ids of records without it stay put
        key.append(record["reasoning"])
    blob = _ID_ENCODE(key)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=8).hexdigest()


def plain_record(prefix: str, prompt: str, query: str, response: str,
                 meta: dict[str, Any] | None = None) -> tuple[Record, str]:
    """A record of four texts (and ``meta``) with no history, tools, roles, reasoning or source id, with its
    content id, and its JSON line (what :func:`io.dumps` gives for it).

    Each text is escaped once, for both: the id hashes the same JSON that :func:`content_id` builds (meta is not
    part of it), and the line reuses the escaped texts, which halves the encoding cost of the commonest row (an
    alpaca row). Raises ValueError or TypeError for a meta value JSON cannot hold, as :func:`io.dumps` would.
    """
    e0, e1, e2, e3 = _escape(prefix), _escape(prompt), _escape(query), _escape(response)
    rid = hashlib.blake2b(f'[{e0},{e1},{e2},{e3},[],"",[]]'.encode(), digest_size=8).hexdigest()
    record: Record = {"id": rid, "prefix": prefix, "prompt": prompt, "query": query, "response": response,
                      "history": []}
    line = f'{{"id":"{rid}","prefix":{e0},"prompt":{e1},"query":{e2},"response":{e3},"history":[]'
    if meta:
        record["meta"] = meta
        return record, f'{line},"meta":{_META_ENCODE(meta)}}}'
    return record, line + "}"


_escape = json.encoder.encode_basestring  # type: ignore[attr-defined]  # what the encoders use for a str
_META_ENCODE = compact_encoder()  # io.dumps's settings (io imports this module)


def ordered(record: Record) -> Record:
    """Return the record with its keys in canonical order, so serialised bytes do not depend on code paths.

    A record already in that order (nearly every one: readers and stages build them so) is returned as it is;
    whether a sequence of keys is in order is worked out once per distinct sequence, not once per row.
    """
    if in_canonical_order(tuple(record)):
        return record
    return dict(sorted(record.items(), key=lambda kv: FIELD_ORDER.get(kv[0], len(FIELD_ORDER))))


def in_canonical_order(keys: tuple[str, ...]) -> bool:
    """Whether a record with these keys, in this order, is already in canonical order (memoised per sequence)."""
    in_order = _IN_ORDER.get(keys)
    if in_order is None:
        ranks = [FIELD_ORDER.get(k, len(FIELD_ORDER)) for k in keys]
        in_order = _IN_ORDER[keys] = ranks == sorted(ranks)
        if len(_IN_ORDER) > 4096:  # rows with free-form meta-like keys: do not grow without bound
            _IN_ORDER.clear()
    return in_order


_IN_ORDER: dict[tuple[str, ...], bool] = {}


def make_record(
    *,
    prompt: str,
    response: str,
    query: str = "",
    prefix: str = "",
    history: list[list[str]] | None = None,
    tools: str | None = None,
    roles: list[str] | None = None,
    reasoning: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    id: str | None = None,
) -> Record:
    """Build a canonical record; ``id`` comes from the source when it has one, else from the content.

    Keys are inserted in canonical order (id first), so no sort is needed on this per-row path.
    """
    record: Record = {
        "prefix": prefix or "",
        "prompt": prompt or "",
        "query": query or "",
        "response": response or "",
        "history": [list(pair) for pair in (history or [])],
    }
    if tools:
        record["tools"] = tools
    if roles and any(r not in ("user", "assistant") for r in roles):
        record["roles"] = list(roles)
    if reasoning and any(reasoning):
        if len(reasoning) != len(record["history"]) + 1:
            raise RecordError("bad_reasoning", f"reasoning has {len(reasoning)} entries for "
                                               f"{len(record['history']) + 1} assistant turns")
        record["reasoning"] = list(reasoning)
    if meta:
        record["meta"] = meta
    return {"id": str(id) if id is not None and id != "" else content_id(record), **record}


def user_text(record: Record) -> str:
    """The last user turn: the instruction, then the optional input on a new line (seed 003 and 004)."""
    prompt, query = record.get("prompt") or "", record.get("query") or ""
    if prompt and query:
        return f"{prompt}\n{query}"
    return prompt or query


def turns(record: Record) -> list[tuple[str, str]]:
    """All turns as (role, content), oldest first, with tool-call roles applied."""
    texts: list[str] = []
    for pair in record.get("history") or []:
        texts.extend(pair)
    texts.extend([user_text(record), record.get("response") or ""])
    roles = record.get("roles") or ["user", "assistant"] * (len(texts) // 2)
    if len(roles) != len(texts):
        raise RecordError("bad_roles", f"roles has {len(roles)} entries for {len(texts)} turns")
    return list(zip(roles, texts, strict=True))


def parse_function_call(content: str) -> list[dict[str, Any]]:
    """Read a function_call turn into calls of ``{"name", "arguments"}``; arguments become a dict."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise RecordError("invalid_function_call", f"function_call is not JSON: {exc.msg}") from None
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise RecordError("invalid_function_call", "function_call needs a JSON object with a 'name'")
        args = call.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                raise RecordError("invalid_function_call", "function_call arguments are not JSON") from None
        if not isinstance(args, dict):
            raise RecordError("invalid_function_call", "function_call arguments must be a JSON object")
        out.append({"name": call["name"], "arguments": args})
    return out


def parse_tools(tools: str | None) -> list[dict[str, Any]] | None:
    """The ``tools`` text as a list, or None when the record has none."""
    if not tools:
        return None
    try:
        value = json.loads(tools)
    except json.JSONDecodeError as exc:
        raise RecordError("invalid_tools", f"tools is not JSON: {exc.msg}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RecordError("invalid_tools", "tools must be a JSON array of function descriptions")
    return value or None


def to_messages(record: Record) -> list[Message]:
    """OpenAI-style messages, as chat templates and TRL read them.

    A function_call turn becomes an assistant message with ``tool_calls`` (arguments as a dict, which is what
    Hugging Face chat templates expect) and an observation becomes a ``tool`` message. An assistant-side turn
    with reasoning carries it as ``reasoning_content`` (Qwen3's and DeepSeek's name); turns without reasoning
    get no such key, so such a record gives the messages it always gave.
    """
    messages: list[Message] = []
    if record.get("prefix"):
        messages.append({"role": "system", "content": record["prefix"]})
    reasoning = iter(record.get("reasoning") or ())
    for role, content in turns(record):
        if role == "function_call":
            calls = [{"type": "function", "function": call} for call in parse_function_call(content)]
            message: Message = {"role": "assistant", "content": "", "tool_calls": calls}
        elif role == "observation":
            message = {"role": "tool", "content": content}
        else:
            message = {"role": role, "content": content}
        if role in ASSISTANT_ROLES:
            thought = next(reasoning, "")
            if thought:
                message["reasoning_content"] = thought
        messages.append(message)
    return messages


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_think(text: str) -> tuple[str, str]:
    """``(reasoning, reply)`` of a reply that starts with a ``<think>…</think>`` block, else ``("", text)``.

    One newline just inside each tag and up to two after the closing tag belong to the layout, not to the data,
    so ``split_think(think_text(r, c)) == (r, c)`` for every ``r`` and ``c`` (normalize, then export, then
    normalize again gives the same record). Whitespace before ``<think>`` is dropped with the tag.
    """
    body = text.lstrip()
    if not body.startswith(THINK_OPEN):
        return "", text
    close = body.find(THINK_CLOSE)
    if close < 0:
        return "", text
    inner = body[len(THINK_OPEN):close]
    inner = inner[1:] if inner.startswith("\n") else inner
    inner = inner[:-1] if inner.endswith("\n") else inner
    reply = body[close + len(THINK_CLOSE):]
    reply = reply[2:] if reply.startswith("\n\n") else reply[1:] if reply.startswith("\n") else reply
    return inner, reply


def think_text(reasoning: str, reply: str) -> str:
    """A reply with its reasoning in front, as ``<think>`` models write it (the inverse of :func:`split_think`)."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{reply}" if reasoning else reply


def _function_call_text(message: Message) -> str:
    calls = []
    tool_calls = message.get("tool_calls")
    if not isinstance(tool_calls, list):
        raise RecordError("invalid_function_call", "tool_calls is not a list")
    for call in tool_calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError("invalid_function_call", "a tool_calls entry has no function name")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                raise RecordError("invalid_function_call", "tool call arguments are not JSON") from None
        if not isinstance(args, dict):
            raise RecordError("invalid_function_call", "tool call arguments must be a JSON object")
        calls.append({"name": fn["name"], "arguments": args})
    value: Any = calls[0] if len(calls) == 1 else calls
    return json.dumps(value, ensure_ascii=False)


def _message_reasoning(i: int, message: Message, content: str) -> tuple[str, str]:
    """The reasoning of an assistant message (``reasoning_content``, ``reasoning`` or a ``<think>`` block)."""
    given = message.get("reasoning_content", message.get("reasoning"))
    if given is not None and not isinstance(given, str):
        raise RecordError("invalid_message", f"message {i} reasoning is not a string")
    thought, reply = split_think(content)
    if given and thought:
        raise RecordError("conflicting_reasoning", f"message {i} has reasoning both apart and in a <think> block")
    return (given or thought), (reply if thought else content)


def from_messages(
    messages: Iterable[Message],
    *,
    tools: str | None = None,
    meta: dict[str, Any] | None = None,
    id: str | None = None,
) -> Record:
    """Build a canonical record from OpenAI-style messages; raise RecordError with a reason if impossible.

    Rules: at most one system message, first; then turns must alternate user-side (user, tool) and
    assistant-side (assistant, assistant with tool_calls), starting on the user side and ending on the
    assistant side. Anything else is rejected: guessing at a broken conversation trains the wrong thing.
    An assistant message's reasoning (``reasoning_content``, ``reasoning``, or a leading ``<think>`` block in
    its content) goes to ``reasoning``.
    """
    prefix = ""
    side_turns: list[tuple[str, str]] = []
    thoughts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RecordError("invalid_message", f"message {i} is not an object")
        role = message.get("role")
        content = message.get("content")
        if content is None:
            content = ""
        if isinstance(content, list):  # OpenAI content parts: keep only text parts, loudly otherwise
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text", ""), str)
                       for p in content):
                raise RecordError("non_text_content", f"message {i} has non-text content parts")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise RecordError("invalid_message", f"message {i} content is not a string")
        if role == "system":
            if i != 0:
                raise RecordError("system_not_first", f"system message at position {i}; only a leading one is allowed")
            prefix = content
            continue
        if role in ("assistant", "function_call"):
            thought, content = _message_reasoning(i, message, content)
            thoughts.append(thought)
        if role == "assistant" and message.get("tool_calls"):
            if content.strip():
                raise RecordError(
                    "text_with_tool_calls", f"message {i} has both text and tool_calls; split them into two turns"
                )
            side_turns.append(("function_call", _function_call_text(message)))
        elif role in ("tool", "function", "observation"):
            side_turns.append(("observation", content))
        elif role == "function_call":
            parse_function_call(content)
            side_turns.append((role, content))
        elif role in ("user", "assistant"):
            side_turns.append((role, content))
        else:
            raise RecordError("unknown_role", f"message {i} has unknown role {role!r}")
    if not side_turns:
        raise RecordError("no_turns", "conversation has no user or assistant turns")
    for k, (role, _) in enumerate(side_turns):
        expected = USER_ROLES if k % 2 == 0 else ASSISTANT_ROLES
        if role not in expected:
            raise RecordError(
                "roles_not_alternating",
                f"turn {k} is {role!r} where a {'user' if k % 2 == 0 else 'assistant'}-side turn was expected",
            )
    if len(side_turns) % 2:
        raise RecordError("ends_on_user_turn", "conversation ends on a user-side turn; there is nothing to learn")
    if side_turns[0][0] != "user":
        raise RecordError("roles_not_alternating", "conversation must start with a user turn")
    pairs = [[side_turns[k][1], side_turns[k + 1][1]] for k in range(0, len(side_turns), 2)]
    return make_record(
        prefix=prefix,
        prompt=pairs[-1][0],
        response=pairs[-1][1],
        history=pairs[:-1],
        tools=tools,
        roles=[role for role, _ in side_turns],
        reasoning=thoughts,
        meta=meta,
        id=id,
    )


def split_reasoning(record: Record) -> Record:
    """The record with a leading ``<think>`` block of each assistant-side reply moved into ``reasoning``.

    For sources that write reasoning inside the reply (ShareGPT, alpaca): normalize calls this. Function-call
    turns are JSON and are left alone.
    """
    roles = record.get("roles") or ["user", "assistant"] * (len(record["history"]) + 1)
    replies = [pair[1] for pair in record["history"]] + [record["response"]]
    if not any(THINK_OPEN in text for text in replies):
        return record
    given = list(record.get("reasoning") or [""] * len(replies))
    found = [split_think(text) if role == "assistant" else ("", text)
             for role, text in zip(roles[1::2], replies, strict=True)]
    for k, (thought, _) in enumerate(found):
        if thought and given[k]:
            raise RecordError("conflicting_reasoning", f"assistant turn {k} has reasoning both apart and in <think>")
        given[k] = given[k] or thought
    out: Record = dict(record)  # type: ignore[assignment]
    out["history"] = [[pair[0], found[k][1]] for k, pair in enumerate(record["history"])]
    out["response"] = found[-1][1]
    if any(given):
        out["reasoning"] = given
    return ordered(out)


def with_think(record: Record) -> Record:
    """The record with each turn's reasoning written back in front of its reply (for formats without a place)."""
    reasoning = record.get("reasoning")
    if not reasoning:
        return record
    roles = record.get("roles") or ["user", "assistant"] * (len(record["history"]) + 1)
    if any(thought and role != "assistant" for thought, role in zip(reasoning, roles[1::2], strict=True)):
        raise RecordError("lossy_export", "reasoning before a function call has no place in this format")
    out: Record = {k: v for k, v in record.items() if k != "reasoning"}  # type: ignore[assignment]
    out["history"] = [[pair[0], think_text(reasoning[k], pair[1])] for k, pair in enumerate(record["history"])]
    out["response"] = think_text(reasoning[-1], record["response"])
    return out


def expand_turns(record: Record) -> list[Record]:
    """One record per assistant-side turn, each ending at that turn (the ``expand`` reasoning policy).

    Rendered with a template that keeps reasoning only for the final turn (Qwen3), each turn's reasoning is then
    trained once. Record k keeps the first k+1 turn pairs, their roles and reasoning, and gets the id
    ``"{id}#{k}"``; the last one is the whole conversation. Tokens grow with the square of the turns.
    """
    history = record["history"]
    roles = record.get("roles")
    reasoning = record.get("reasoning")
    out: list[Record] = []
    for k in range(len(history) + 1):
        part: Record = dict(record)  # type: ignore[assignment]
        part["id"] = f"{record['id']}#{k}"
        if k < len(history):
            part["prompt"], part["query"], part["response"] = history[k][0], "", history[k][1]
        part["history"] = [list(pair) for pair in history[:k]]
        if roles:
            part["roles"] = roles[: 2 * k + 2]
            if all(r in ("user", "assistant") for r in part["roles"]):
                del part["roles"]
        if reasoning:
            part["reasoning"] = reasoning[: k + 1]
            if not any(part["reasoning"]):
                del part["reasoning"]
        out.append(part)
    return out


_STRING_FIELDS = ("id", *TEXT_FIELDS)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_canonical(record: Any) -> None:
    """Raise RecordError unless ``record`` is a well-formed canonical record; cheap enough for every row.

    Stages after normalize call this instead of trusting their input: a string ``history`` would otherwise be
    read as turns letter by letter, a null reply trained as an empty one, and a role string with control
    tokens in it written into the text. Reasons: ``not_canonical`` (not an object, or none of the fields),
    ``missing_field``, ``null_field``, ``wrong_type``, ``bad_history``, ``bad_roles``,
    ``bad_reasoning``.
    """
    if not isinstance(record, dict):
        raise RecordError("not_canonical", f"a record must be a JSON object, not {_type_name(record)}")
    for name in CANONICAL_FIELDS:
        if name not in record:
            raise RecordError("missing_field", f"missing field {name!r}")
        value = record[name]
        if value is None:
            raise RecordError("null_field", f"field {name!r} is null")
        if name != "history" and type(value) is not str:
            raise RecordError("wrong_type", f"field {name!r} must be a string, not {_type_name(value)}")
    history = record["history"]
    if type(history) is not list:
        raise RecordError("bad_history", f"field 'history' must be a list of [user, assistant] pairs, "
                                         f"not {_type_name(history)}")
    for i, pair in enumerate(history):
        if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str):
            raise RecordError("bad_history", f"history[{i}] must be a [user, assistant] pair of strings")
    n_turns = 2 * (len(history) + 1)
    roles = record.get("roles")
    if roles is not None:
        if type(roles) is not list or len(roles) != n_turns:
            raise RecordError("bad_roles", f"roles must be a list of {n_turns} role names")
        for k, role in enumerate(roles):
            allowed = USER_ROLES if k % 2 == 0 else ASSISTANT_ROLES
            if role not in allowed:
                raise RecordError("bad_roles", f"roles[{k}] is {str(role)[:40]!r}; allowed: {', '.join(allowed)}")
    reasoning = record.get("reasoning")
    if reasoning is not None and not (type(reasoning) is list and len(reasoning) == n_turns // 2
                                      and all(type(r) is str for r in reasoning)):
        raise RecordError("bad_reasoning", f"reasoning must be a list of {n_turns // 2} strings, one per "
                                           f"assistant turn")
    for name, kind in (("tools", str), ("meta", dict), ("len_bucket", int), ("split", str)):
        if name in record and type(record[name]) is not kind:
            raise RecordError("wrong_type", f"field {name!r} must be {kind.__name__}, not "
                                            f"{_type_name(record[name])}")


NOT_CANONICAL = "not canonical records: run `dataprep normalize` first"


def looks_raw(records: Sequence[Any]) -> bool:
    """True when a batch is plainly not canonical data (alpaca, ShareGPT, messages...): none of its first
    records has the canonical conversation fields. A stage then stops with :data:`NOT_CANONICAL` instead of
    rejecting every row one by one."""
    sample = records[:16]
    return bool(sample) and not any(
        isinstance(r, dict) and "prompt" in r and "response" in r and "history" in r for r in sample
    )
