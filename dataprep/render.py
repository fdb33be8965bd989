"""The ``render`` stage: each canonical record becomes the exact text a model will see and its supervised spans.

A row ``{"id", "text", "spans": [[start, end], ...]}`` shows, before anything is tokenized, which characters
``tokenize`` will train on: ``text[start:end]`` is one assistant turn's content and end-of-turn marker. A record the
template cannot render is rejected with the template's reason instead of being written half-right.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dataprep.io import Batch
from dataprep.records import Record, RecordError, content_id
from dataprep.stage import Rejected, survivors
from dataprep.template import ChatTemplate

_CONVERSATION_FIELDS = ("prompt", "query", "response", "history")


def render_records(template: ChatTemplate, rows: Iterable[Record]) -> tuple[list[Record], list[Rejected]]:
    """Render records in order; the second list holds those the template cannot render, with the reason."""
    kept: list[Record] = []
    rejected: list[Rejected] = []
    for i, record in enumerate(rows):
        if not any(field in record for field in _CONVERSATION_FIELDS):
            rejected.append(Rejected(record, "not_canonical",
                                     "record has no prompt/query/response/history; run dataprep normalize first", index=i))
            continue
        try:
            rendered = template.render(record)
        except RecordError as exc:
            rejected.append(Rejected(record, exc.reason, exc.detail, index=i))
            continue
        kept.append({
            "id": record.get("id") or content_id(record),
            "text": rendered.text,
            "spans": [list(span) for span in rendered.turns],
        })
    return kept, rejected


def default_system_rows(template: ChatTemplate, rows: Iterable[Record]) -> int:
    """How many records get the template's own system prompt (they have no ``prefix``)."""
    if template.default_system is None:
        return 0
    return sum(1 for record in rows if not record.get("prefix"))


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
