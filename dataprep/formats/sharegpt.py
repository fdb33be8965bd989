"""ShareGPT rows: ``conversations`` of ``{"from", "value"}`` turns, a ``system`` and a ``tools`` column.

Role names follow LLaMA-Factory: human/gpt/system/function_call/observation by default, with the
``tags`` of a dataset_info entry (role_tag, content_tag, user_tag, ...) adding to or overriding them. Turns
may also be written ``{"role", "content"}``; a row is read with whichever pair of keys it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataprep.formats import fields, messages
from dataprep.records import Record, RecordError, turns, with_think

COLUMNS = {"id": "id", "prefix": "system", "messages": "conversations", "tools": "tools"}
RESERVED = frozenset(COLUMNS.values()) | frozenset(fields.PASSTHROUGH)

DEFAULT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "function_call",
    "observation": "observation",
    "tool": "observation",
}
TAG_ROLES = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
    "function_tag": "function_call",
    "observation_tag": "observation",
}
TAGS = ("role_tag", "content_tag", *TAG_ROLES)
EXPORT_TAGS = {"user": "human", "assistant": "gpt", "function_call": "function_call", "observation": "observation"}


def role_names(tags: Mapping[str, str]) -> dict[str, str]:
    """Source role name -> canonical role, for one dataset's tags."""
    names = dict(DEFAULT_ROLES)
    names.update({tags[tag]: role for tag, role in TAG_ROLES.items() if tag in tags})
    return names


def read(
    row: Mapping[str, Any],
    columns: Mapping[str, str],
    used: frozenset[str],
    tags: Mapping[str, str],
    roles: Mapping[str, str],
) -> Record:
    source = messages.conversation(row, columns["messages"])
    converted = []
    for i, turn in enumerate(source):
        if not isinstance(turn, dict):
            raise RecordError("wrong_type", f"turn {i} must be an object, not {fields.type_name(turn)}")
        role_key = tags.get("role_tag") or ("from" if "from" in turn else "role")
        content_key = tags.get("content_tag") or ("value" if "value" in turn else "content")
        name = turn.get(role_key)
        role = roles.get(name) if type(name) is str else None
        if role is None:
            raise RecordError("unknown_role", f"turn {i} has unknown role {name!r} (key {role_key!r})")
        content = turn.get(content_key)
        if type(content) is not str:
            raise RecordError("wrong_type", f"turn {i} {content_key!r} must be a string, not {fields.type_name(content)}")
        extra = sorted(k for k, v in turn.items() if k != role_key and k != content_key and v is not None)
        if extra:
            raise RecordError("unknown_message_key", f"turn {i} has keys a canonical record cannot carry: {', '.join(extra)}")
        converted.append({"role": role, "content": content})
    return messages.build(converted, row, columns, used)


def write(record: Record) -> dict[str, Any]:
    """``{"id", "conversations", "system"?, "tools"?}`` + meta; tool-call turns keep their JSON text as is, and
    reasoning goes in front of its reply as a ``<think>`` block (read splits it out again)."""
    record = with_think(record)
    out: dict[str, Any] = {
        "id": record["id"],
        "conversations": [{"from": EXPORT_TAGS[role], "value": text} for role, text in turns(record)],
    }
    if record["prefix"]:
        out["system"] = record["prefix"]
    if record.get("tools"):
        out["tools"] = record["tools"]
    return fields.spread(out, record, RESERVED, "sharegpt")
