"""Alpaca rows (``instruction``/``input``/``output`` + optional ``system``, ``history``, ``tools``).

This is the hot path of the benchmark, so a row is read with a handful of dict lookups and one
:func:`make_record`, never through the messages conversion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dataprep.formats import fields
from dataprep.records import (
    THINK_OPEN,
    Record,
    RecordError,
    make_record,
    plain_record,
    split_reasoning,
    with_think,
)

COLUMNS = {
    "id": "id",
    "prefix": "system",
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "tools": "tools",
}
RESERVED = frozenset(COLUMNS.values()) | frozenset(fields.PASSTHROUGH)


def read(row: Mapping[str, Any], columns: Mapping[str, str], used: frozenset[str]) -> Record:
    record = make_record(
        prompt=fields.text(row, columns["prompt"], required=True),
        query=fields.text(row, columns["query"]),
        response=fields.text(row, columns["response"], required=True),
        prefix=fields.text(row, columns["prefix"]),
        history=fields.history(row, columns["history"]),
        tools=fields.tools(row, columns["tools"]),
        meta=fields.meta(row, used),
        id=fields.record_id(row, columns["id"]),
    )
    return fields.add_passthrough(split_reasoning(record), row)


def encoded_reader(columns: Mapping[str, str], used: frozenset[str]) -> Callable[[Mapping[str, Any]],
                                                                                 tuple[Record, str | None]]:
    """:func:`read` that also gives a plain row's JSON line, made along with its id (:func:`plain_record`).

    A plain row has the four text columns, all strings (or a missing input/system), no other column alpaca
    reads (history, tools, id, split's fields; the rest is meta), and no ``<think>`` in its reply: nothing else
    to check or carry, so the general path's field-by-field checks are skipped. Any other row goes through
    :func:`read`, and its line is left to the encoder (None).
    """
    keys = (columns["prefix"], columns["prompt"], columns["query"], columns["response"])
    plain = frozenset(keys)

    def read_encoded(row: Mapping[str, Any]) -> tuple[Record, str | None]:
        rest = row.keys() - plain
        if not rest or rest.isdisjoint(used):
            prefix, prompt, query, response = map(row.get, keys)
            if (type(prompt) is str and type(response) is str and (query is None or type(query) is str)
                    and (prefix is None or type(prefix) is str) and THINK_OPEN not in response):
                meta = {k: v for k, v in row.items() if k in rest} if rest else None
                try:
                    return plain_record(prefix or "", prompt, query or "", response, meta)
                except (TypeError, ValueError):  # a meta value JSON cannot hold: the encoder says which
                    return read(row, columns, used), None
        return read(row, columns, used), None

    return read_encoded


def write(record: Record) -> dict[str, Any]:
    """Alpaca has no place for tool calls: such a row is refused (``lossy_export``), never flattened. Reasoning
    goes back in front of its reply as a ``<think>`` block, which :func:`read` splits out again."""
    if record.get("roles"):
        raise RecordError(
            "lossy_export", "alpaca cannot carry tool calls: the function_call and observation turns would be lost"
        )
    record = with_think(record)
    out: dict[str, Any] = {
        "id": record["id"],
        "instruction": record["prompt"],
        "input": record["query"],
        "output": record["response"],
    }
    if record["prefix"]:
        out["system"] = record["prefix"]
    if record["history"]:
        out["history"] = record["history"]
    if record.get("tools"):
        out["tools"] = record["tools"]
    return fields.spread(out, record, RESERVED, "alpaca")
