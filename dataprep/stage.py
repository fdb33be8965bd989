"""Row accounting shared by every stage: rows in = rows out + rows rejected, each reject with its reason.

A stage function returns the records it keeps and a list of :class:`Rejected`; :class:`StageReport` counts
them, writes rejects (record + ``{"stage", "reason", "detail"}``) to a file, and prints the one-line summary.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from dataprep.io import AtomicFile, dumps
from dataprep.records import Record


class Rejected(NamedTuple):
    record: Record
    reason: str
    detail: str
    location: str | None = None


class StageReport:
    """Counts one stage's rows; ``rejects_path`` keeps each rejected record with its reason."""

    def __init__(self, stage: str, rejects_path: str | None = None) -> None:
        self.stage = stage
        self.rows_in = 0
        self.rows_out = 0
        self.reasons: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self._rejects = AtomicFile(rejects_path) if rejects_path else None

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def emit(self, kept: int, rejected: list[Rejected]) -> None:
        """Account for rows leaving the stage: ``kept`` went on, ``rejected`` did not.

        Rows are counted in on arrival (``rows_in``), since a stage such as split holds them before emitting.
        """
        self.rows_out += kept
        for item in rejected:
            self.reject(item.record, item.reason, item.detail, count_in=False, location=item.location)

    def reject(
        self, record: Record | str, reason: str, detail: str, *, count_in: bool = True, location: str | None = None
    ) -> None:
        """Reject one row; a raw line that never parsed is kept as ``{"raw": text}``."""
        if count_in:
            self.rows_in += 1
        self.reasons[reason] += 1
        if self._rejects is not None:
            row = dict(record) if isinstance(record, dict) else {"raw": record}
            row.update({"stage": self.stage, "reason": reason, "detail": detail})
            if location:
                row["location"] = location
            self._rejects.handle.write(dumps(row) + "\n")

    def bad_input(self, location: str, reason: str, detail: str, raw: str) -> None:
        """Handler for the readers' ``on_bad``: a malformed line becomes a reject, not a crash."""
        self.reject(raw, reason, detail, location=location)

    def summary(self) -> str:
        parts = [f"{self.stage}: {self.rows_in} in, {self.rows_out} out, {self.rejected} rejected"]
        if self.reasons:
            parts.append("(" + ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items())) + ")")
        extra = ", ".join(f"{k}: {v}" for k, v in self.extra.items())
        return " ".join(parts) + (f"; {extra}" if extra else "")

    def check(self) -> None:
        """The stage's promise; a failure here is a bug in dataprep, never the user's data."""
        assert self.rows_in == self.rows_out + self.rejected, self.summary()

    def close(self, ok: bool = True) -> None:
        if self._rejects is None:
            return
        if ok:
            self._rejects.commit()
        else:
            self._rejects.abort()
