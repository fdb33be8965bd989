"""The ``render`` stage: each canonical record becomes the exact text a model will see and its supervised spans.

A row ``{"id", "text", "spans": [[start, end], ...], "inserted": [[start, end], ...]}`` shows, before anything is
tokenized, which characters ``tokenize`` will train on: ``text[start:end]`` is one assistant turn as rendered
(content, reasoning the template kept, tool-call markup) and its end-of-turn marker; ``inserted`` are the parts
of spans the template wrote on its own (Qwen3's empty think block). A record the template cannot render, or that
is not a well-formed canonical record, is rejected with a reason instead of being written half-right.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dataprep.errors import UsageProblem
from dataprep.io import Batch
from dataprep.records import NOT_CANONICAL, Record, RecordError, check_canonical, looks_raw
from dataprep.stage import Rejected, survivors
from dataprep.template import ChatTemplate, Turns


def render_records(template: ChatTemplate, rows: Iterable[Record],
                   turns: Turns = "all") -> tuple[list[Record], list[Rejected]]:
    """Render records in order; the second list holds those the template cannot render, with the reason.

    A batch that is plainly raw source data (no record has the canonical fields) stops the run with a
    UsageProblem rather than rejecting every row.
    """
    rows = list(rows)
    if looks_raw(rows):
        raise UsageProblem(NOT_CANONICAL)
    kept: list[Record] = []
    rejected: list[Rejected] = []
    for i, record in enumerate(rows):
        try:
            check_canonical(record)
            rendered = template.render(record, turns)
        except RecordError as exc:
            rejected.append(Rejected(record, exc.reason, exc.detail, index=i))
            continue
        kept.append({
            "id": record["id"],
            "text": rendered.text,
            "spans": [list(span) for span in rendered.spans],
            "inserted": [list(span) for span in rendered.inserted],
        })
    return kept, rejected


def default_system_rows(template: ChatTemplate, rows: Iterable[Record]) -> int:
    """How many records get the template's own system prompt (they have no ``prefix``)."""
    if template.default_system is None:
        return 0
    return sum(1 for record in rows if isinstance(record, dict) and not record.get("prefix"))


class RenderStage:
    """``render`` as a stage; counts the rows that get the template's own default system prompt."""

    name = "render"

    def __init__(self, template: ChatTemplate) -> None:
        self.template = template
        self.default_used = 0

    def process(self, batch: Batch) -> tuple[Batch, list[Rejected]]:
        self.default_used += default_system_rows(self.template, batch.records)
        kept, rejected = render_records(self.template, batch.records)
        return survivors(batch, kept, rejected), rejected

    def finish(self) -> tuple[()]:
        return ()

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"template": self.template.name}
        if self.template.default_system is not None:
            facts["rows given the template's default system prompt"] = self.default_used
        return facts
