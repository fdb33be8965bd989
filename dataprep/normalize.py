"""Turn rows of any supported source format into canonical records, and optionally write them out as another.

``normalize_batch`` is pure and per-record: a row's fate depends only on the row and the options, so the
output does not change with batch size or arrival order. A row that cannot be represented is rejected with
the reason ``records``/``formats`` gave it; nothing is repaired by guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dataprep import formats
from dataprep.errors import UsageProblem
from dataprep.io import Batch, dumps
from dataprep.records import Record, RecordError
from dataprep.stage import Rejected, survivors

STAGE = "normalize"
FROM_FORMATS = (*formats.SOURCE_FORMATS, "auto")
TO_FORMATS = ("canonical", "messages", "sharegpt", "alpaca")


@dataclass(frozen=True)
class NormalizeOptions:
    """``source``: the input format (``auto`` must be resolved with :meth:`resolved` before use);
    ``columns``: canonical slot -> source column; ``tags``: LLaMA-Factory ShareGPT role tags;
    ``to``: the output format."""

    source: str = "auto"
    columns: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    to: str = "canonical"

    def __post_init__(self) -> None:
        if self.source not in FROM_FORMATS:
            raise UsageProblem(f"unknown input format {self.source!r}; use one of {', '.join(FROM_FORMATS)}")
        if self.to not in TO_FORMATS:
            raise UsageProblem(f"unknown output format {self.to!r}; use one of {', '.join(TO_FORMATS)}")
        unknown = sorted(set(self.tags) - set(formats.sharegpt.TAGS))
        if unknown:
            raise UsageProblem(f"unknown role tags: {', '.join(unknown)}; known: {', '.join(formats.sharegpt.TAGS)}")

    def resolved(self, record: Mapping[str, Any]) -> NormalizeOptions:
        """These options with ``auto`` replaced by the format ``record`` has."""
        if self.source != "auto":
            return self
        return NormalizeOptions(formats.detect_schema(record, self.columns), self.columns, self.tags, self.to)

    @cached_property
    def read(self) -> formats.Reader:
        if self.source == "auto":
            raise UsageProblem("the input format is still 'auto'; resolve it from a first record")
        return formats.reader(self.source, self.columns, self.tags)

    @cached_property
    def read_encoded(self) -> formats.EncodedReader | None:
        """For canonical output from a format that can give its rows' JSON lines as it reads them, that reader."""
        if self.to != "canonical" or self.source == "auto":
            return None
        return formats.encoded_reader(self.source, self.columns)

    @cached_property
    def write(self) -> formats.Writer:
        return formats.writer(self.to)


def parse_map(text: str | None) -> dict[str, str]:
    """``prompt=question,response=answer`` -> ``{"prompt": "question", "response": "answer"}``."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        slot, sep, column = item.partition("=")
        if not sep or not slot.strip() or not column.strip():
            raise UsageProblem(f"--map expects canonical=source pairs separated by commas, got {item!r}")
        mapping[formats.slot_name(slot.strip())] = column.strip()
    return mapping


def normalize_batch(
    records: list[dict[str, Any]], options: NormalizeOptions
) -> tuple[list[Record], list[Rejected]]:
    """Read each row into a canonical record (then into ``options.to``); rejects carry the row as it came in
    and its index in ``records``."""
    read, write = options.read, options.write
    kept, _, rejected = _read_rows(records, lambda row: (write(read(row)), None))
    return kept, rejected


def normalize_encoded(
    records: list[dict[str, Any]], options: NormalizeOptions
) -> tuple[list[Record], list[str] | None, list[Rejected]]:
    """:func:`normalize_batch`, and each kept record's JSON line where the reader gives them as it reads
    (``options.read_encoded``); a row it gives none for is encoded here. None where the format has no such reader.
    """
    read = options.read_encoded
    if read is None:
        kept, rejected = normalize_batch(records, options)
        return kept, None, rejected
    kept, lines, rejected = _read_rows(records, read)
    return kept, [line if line is not None else dumps(r) for r, line in zip(kept, lines, strict=True)], rejected


def _read_rows(records: list[dict[str, Any]], read: Callable[[dict[str, Any]], tuple[Record, str | None]]
               ) -> tuple[list[Record], list[str | None], list[Rejected]]:
    """Each row through ``read`` (a record and its line or None); a row it refuses becomes a reject."""
    kept: list[Record] = []
    lines: list[str | None] = []
    rejected: list[Rejected] = []
    for i, row in enumerate(records):
        try:
            record, line = read(row)
        except RecordError as exc:
            rejected.append(Rejected(row, exc.reason, exc.detail, index=i))
            continue
        kept.append(record)
        lines.append(line)
    return kept, lines, rejected


class NormalizeStage:
    """``normalize`` as a stage; with ``source="auto"`` the format is told from the first record and announced
    through ``notify`` (the CLI prints it on stderr)."""

    name = STAGE

    def __init__(self, options: NormalizeOptions, notify: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.notify = notify

    def prepare(self, batch: Batch) -> None:
        """Tell the format from the first record of ``batch`` (once), and announce it."""
        if self.options.source == "auto" and len(batch):
            try:
                self.options = self.options.resolved(batch.records[0])
            except UsageProblem as exc:
                raise UsageProblem(f"{batch.location(0)}: {exc}", hint=exc.hint) from None
            if self.notify is not None:
                self.notify(f"normalize: detected format {self.options.source}")

    def process(self, batch: Batch) -> tuple[Batch, list[Rejected]]:
        self.prepare(batch)
        kept, lines, rejected = normalize_encoded(batch.records, self.options)
        out = survivors(batch, kept, rejected)
        out.canonical = self.options.to == "canonical"
        out.encoded = lines
        return out, rejected

    def finish(self) -> tuple[()]:
        return ()

    def facts(self) -> dict[str, Any]:
        return {"to": self.options.to} if self.options.to != "canonical" else {}
