"""Canonical rows, validated and passed through.

Normalize must be idempotent on its own output, byte for byte: a valid canonical row comes back as the same
dict in the same key order. Columns outside the canonical set join ``meta`` (a clash with an existing meta
key is refused, not overwritten).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataprep.formats import fields
from dataprep.records import (
    ASSISTANT_ROLES,
    USER_ROLES,
    Record,
    RecordError,
    make_record,
    parse_function_call,
    turns,
)

COLUMNS = {
    "id": "id",
    "prefix": "prefix",
    "prompt": "prompt",
    "query": "query",
    "response": "response",
    "history": "history",
    "tools": "tools",
}
FIXED = ("roles", "reasoning", "meta")


def _meta(row: Mapping[str, Any], used: frozenset[str]) -> dict[str, Any] | None:
    value = row.get("meta")
    if value is not None and not isinstance(value, dict):
        raise RecordError("wrong_type", f"field 'meta' must be an object, not {fields.type_name(value)}")
    extra = fields.meta(row, used)
    if not extra:
        return value
    clash = sorted(set(extra).intersection(value or {}))
    if clash:
        raise RecordError("meta_conflict", f"column {clash[0]!r} is also a key of 'meta'")
    return {**(value or {}), **extra}


def _roles(row: Mapping[str, Any]) -> list[str] | None:
    value = row.get("roles")
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(r) is str for r in value):
        raise RecordError("wrong_type", "field 'roles' must be a list of role names")
    return value


def _reasoning(row: Mapping[str, Any]) -> list[str] | None:
    value = row.get("reasoning")
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(r) is str for r in value):
        raise RecordError("wrong_type", "field 'reasoning' must be a list of strings, one per assistant turn")
    return value


def _check_roles(record: Record) -> None:
    for k, (role, content) in enumerate(turns(record)):
        if role not in (USER_ROLES if k % 2 == 0 else ASSISTANT_ROLES):
            side = "user" if k % 2 == 0 else "assistant"
            raise RecordError("bad_roles", f"roles[{k}] is {role!r}, not a {side}-side role")
        if role == "function_call":
            parse_function_call(content)


def read(row: Mapping[str, Any], columns: Mapping[str, str], used: frozenset[str]) -> Record:
    record = make_record(
        prompt=fields.text(row, columns["prompt"], required=True),
        query=fields.text(row, columns["query"]),
        response=fields.text(row, columns["response"], required=True),
        prefix=fields.text(row, columns["prefix"]),
        history=fields.history(row, columns["history"]),
        tools=fields.tools(row, columns["tools"]),
        roles=_roles(row),
        reasoning=_reasoning(row),
        meta=_meta(row, used),
        id=fields.record_id(row, columns["id"]),
    )
    if "roles" in record:
        _check_roles(record)
    return fields.add_passthrough(record, row)


def write(record: Record) -> Record:
    """Every read already yields a canonical record; writing one as canonical is the identity."""
    return record
