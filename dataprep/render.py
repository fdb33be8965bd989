"""The ``render`` stage: each canonical record becomes the exact text a model will see and its supervised spans.

A row ``{"id", "text", "spans": [[start, end], ...]}`` shows, before anything is tokenized, which characters
``tokenize`` will train on: ``text[start:end]`` is one assistant turn's content and end-of-turn marker. A record the
template cannot render is rejected with the template's reason instead of being written half-right.
"""

from __future__ import annotations

from collections.abc import Iterable

from dataprep.records import Record, RecordError, content_id
from dataprep.stage import Rejected
from dataprep.template import ChatTemplate

_CONVERSATION_FIELDS = ("prompt", "query", "response", "history")


def render_records(template: ChatTemplate, rows: Iterable[Record]) -> tuple[list[Record], list[Rejected]]:
    """Render records in order; the second list holds those the template cannot render, with the reason."""
    kept: list[Record] = []
    rejected: list[Rejected] = []
    for record in rows:
        if not any(field in record for field in _CONVERSATION_FIELDS):
            rejected.append(Rejected(record, "not_canonical",
                                     "record has no prompt/query/response/history; run dataprep normalize first"))
            continue
        try:
            rendered = template.render(record)
        except RecordError as exc:
            rejected.append(Rejected(record, exc.reason, exc.detail))
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
