"""OpenAI-style ``messages`` rows (system/user/assistant, assistant ``tool_calls``, ``tool`` results).

ShareGPT rows are turned into messages and finished here too, so both formats obey the same conversation
rules (records.from_messages). Message keys the canonical record cannot carry are refused by name rather than
dropped; the exceptions are the ids that only pair a tool result with its call (``tool_call_id``, ``name``
on tool messages, ``id`` inside ``tool_calls``), which the canonical turn order already encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataprep.formats import fields
from dataprep.records import Message, Record, RecordError, from_messages, parse_tools, to_messages

COLUMNS = {"id": "id", "prefix": "system", "messages": "messages", "tools": "tools"}
RESERVED = frozenset(COLUMNS.values()) | frozenset(fields.PASSTHROUGH)

MESSAGE_KEYS = {
    "assistant": frozenset(("role", "content", "tool_calls", "reasoning_content", "reasoning")),
    "tool": frozenset(("role", "content", "tool_call_id", "name")),
}
PLAIN_KEYS = frozenset(("role", "content"))
TOOL_CALL_KEYS = frozenset(("id", "type", "function"))
BARE_CALL_KEYS = frozenset(("id", "type", "name", "arguments"))


def conversation(row: Mapping[str, Any], key: str) -> list[Any]:
    value = row.get(key)
    if value is None:
        raise RecordError("missing_field", f"missing field {key!r}")
    if not isinstance(value, list):
        raise RecordError("wrong_type", f"field {key!r} must be a list of messages, not {fields.type_name(value)}")
    return value


def build(
    messages: list[Message], row: Mapping[str, Any], columns: Mapping[str, str], used: frozenset[str]
) -> Record:
    """Finish a conversation: the ``system`` column becomes the leading system message, then the common rules."""
    system = fields.text(row, columns["prefix"])
    if system:
        first = messages[0] if messages else None
        if isinstance(first, dict) and first.get("role") == "system":
            if first.get("content") != system:
                raise RecordError(
                    "conflicting_system",
                    f"column {columns['prefix']!r} and the conversation's system message differ; keep one",
                )
        else:
            messages = [{"role": "system", "content": system}, *messages]
    record = from_messages(
        messages,
        tools=fields.tools(row, columns["tools"]),
        meta=fields.meta(row, used),
        id=fields.record_id(row, columns["id"]),
    )
    return fields.add_passthrough(record, row)


def _check_keys(i: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise RecordError("wrong_type", f"message {i} must be an object, not {fields.type_name(message)}")
    role = message.get("role")
    allowed = MESSAGE_KEYS.get(role, PLAIN_KEYS) if type(role) is str else PLAIN_KEYS
    extra = sorted(k for k, v in message.items() if k not in allowed and v is not None)
    if extra:
        raise RecordError("unknown_message_key", f"message {i} has keys a canonical record cannot carry: {', '.join(extra)}")
    calls = message.get("tool_calls")
    if calls is None:
        return
    if not isinstance(calls, list) or not all(_is_call(c) for c in calls):
        raise RecordError(
            "invalid_function_call", f"message {i} tool_calls must be a list of {{function: {{name, arguments}}}}"
        )


def _is_call(call: Any) -> bool:
    """OpenAI's ``{"type", "function": {...}}`` or the bare ``{"name", "arguments"}`` some datasets use."""
    if not isinstance(call, dict):
        return False
    if "function" in call:
        fn = call["function"]
        return TOOL_CALL_KEYS.issuperset(call) and isinstance(fn, dict) and type(fn.get("name")) is str
    return BARE_CALL_KEYS.issuperset(call) and type(call.get("name")) is str


def read(row: Mapping[str, Any], columns: Mapping[str, str], used: frozenset[str]) -> Record:
    messages = conversation(row, columns["messages"])
    for i, message in enumerate(messages):
        _check_keys(i, message)
    return build(messages, row, columns, used)


def write(record: Record) -> dict[str, Any]:
    """``{"id", "messages", "tools"?}`` + meta: tool calls as chat templates (e.g. Qwen2.5's) expect them."""
    out: dict[str, Any] = {"id": record["id"], "messages": to_messages(record)}
    tools = parse_tools(record.get("tools"))
    if tools:
        out["tools"] = tools
    return fields.spread(out, record, RESERVED, "messages")
