"""The canonical record and its conversion to and from chat ``messages``.

A canonical record is one JSON object per example (schemas/canonical.schema.json)::

    {"id", "prefix", "prompt", "query", "response", "history": [[user, assistant], ...]}

plus optional ``tools`` (a JSON array, as text, of the functions the assistant may call), ``roles`` (one role
per turn when a conversation has tool calls), ``meta`` (every source field that has no canonical place),
and the ``len_bucket``/``split`` fields that ``dataprep split`` adds.

Turns are ordered history pairs first, then (prompt+query, response). ``roles`` marks a turn on the user
side as ``user`` or ``observation`` (a tool's result) and a turn on the assistant side as ``assistant`` or
``function_call`` (its content: a JSON object ``{"name", "arguments"}`` or a JSON array of them). Keeping the
pair layout of LLaMA-Efficient-Tuning means every record alternates by construction: a conversation that does
not alternate cannot be written down as a canonical record, so normalize must reject it, not guess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]
Message = dict[str, Any]

TEXT_FIELDS = ("prefix", "prompt", "query", "response")
CANONICAL_FIELDS = ("id", *TEXT_FIELDS, "history")
OPTIONAL_FIELDS = ("tools", "roles", "meta", "len_bucket", "split")
KNOWN_FIELDS = frozenset(CANONICAL_FIELDS + OPTIONAL_FIELDS)
FIELD_ORDER = {name: i for i, name in enumerate(CANONICAL_FIELDS + OPTIONAL_FIELDS)}

USER_ROLES = ("user", "observation")
ASSISTANT_ROLES = ("assistant", "function_call")


class RecordError(ValueError):
    """A record that cannot be represented; ``reason`` is the stable reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_ID_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def content_id(record: Record) -> str:
    """Derive an id from content only, so the same example gets the same id on every run and machine."""
    key = [record.get(f, "") for f in TEXT_FIELDS]
    key += [record.get("history") or [], record.get("tools") or "", record.get("roles") or []]
    blob = _ID_ENCODER.encode(key)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=8).hexdigest()


def ordered(record: Record) -> Record:
    """Return the record with its keys in canonical order, so serialised bytes do not depend on code paths."""
    return dict(sorted(record.items(), key=lambda kv: FIELD_ORDER.get(kv[0], len(FIELD_ORDER))))


def make_record(
    *,
    prompt: str,
    response: str,
    query: str = "",
    prefix: str = "",
    history: list[list[str]] | None = None,
    tools: str | None = None,
    roles: list[str] | None = None,
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
    Hugging Face chat templates expect) and an observation becomes a ``tool`` message.
    """
    messages: list[Message] = []
    if record.get("prefix"):
        messages.append({"role": "system", "content": record["prefix"]})
    for role, content in turns(record):
        if role == "function_call":
            calls = [{"type": "function", "function": call} for call in parse_function_call(content)]
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        elif role == "observation":
            messages.append({"role": "tool", "content": content})
        else:
            messages.append({"role": role, "content": content})
    return messages


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
    """
    prefix = ""
    side_turns: list[tuple[str, str]] = []
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
        meta=meta,
        id=id,
    )
