"""Checks shared by every source adapter: one place decides what a missing or wrong-typed field is called.

Each helper raises :class:`RecordError` with a stable reason (``missing_field``, ``wrong_type``,
``invalid_tools``) and a detail naming the source column, so a reject says which column of the user's file
was at fault, not which canonical field it was headed for.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from dataprep.records import Record, RecordError, parse_tools

PASSTHROUGH = ("len_bucket", "split")


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def text(row: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = row.get(key)
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise RecordError("missing_field", f"missing field {key!r}")
        return ""
    raise RecordError("wrong_type", f"field {key!r} must be a string, not {type_name(value)}")


def history(row: Mapping[str, Any], key: str) -> list[list[str]]:
    value = row.get(key)
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise RecordError("wrong_type", f"field {key!r} must be a list of [user, assistant] pairs, not {type_name(value)}")
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str):
            raise RecordError("wrong_type", f"{key}[{i}] must be a [user, assistant] pair of strings")
    return value


def tools(row: Mapping[str, Any], key: str) -> str | None:
    """The tools column as JSON text; a list (as in Parquet or HF datasets) is written out, ``[]`` means none."""
    value = row.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False) if value else None
    if type(value) is not str:
        raise RecordError("wrong_type", f"field {key!r} must be a JSON array (or its text), not {type_name(value)}")
    return value if parse_tools(value) else None


def record_id(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise RecordError("wrong_type", f"field {key!r} must be a string or an integer, not {type_name(value)}")


def meta(row: Mapping[str, Any], used: Collection[str]) -> dict[str, Any] | None:
    """Every column the adapter did not consume, in source order: nothing is dropped on the way in."""
    extra = {k: v for k, v in row.items() if k not in used}
    return extra or None


def add_passthrough(record: Record, row: Mapping[str, Any]) -> Record:
    """Carry ``len_bucket``/``split`` (written by ``dataprep split``) through any format and back."""
    bucket, split = row.get("len_bucket"), row.get("split")
    if bucket is None and split is None:
        return record
    if bucket is not None:
        if type(bucket) is not int:
            raise RecordError("wrong_type", f"field 'len_bucket' must be an integer, not {type_name(bucket)}")
        record["len_bucket"] = bucket
    if split is not None:
        if type(split) is not str:
            raise RecordError("wrong_type", f"field 'split' must be a string, not {type_name(split)}")
        record["split"] = split
    return record


def spread(out: dict[str, Any], record: Record, reserved: Collection[str], target: str) -> dict[str, Any]:
    """Write meta fields (then ``len_bucket``/``split``) as top-level columns of an exported row.

    A meta field named like a column the target format reads would come back as that column, so the row is
    refused as lossy rather than changed on the round trip.
    """
    for key, value in (record.get("meta") or {}).items():
        if key in reserved:
            raise RecordError("lossy_export", f"meta field {key!r} would be read back as the {target} column {key!r}")
        out[key] = value
    for key in PASSTHROUGH:
        if key in record:
            out[key] = record[key]
    return out
