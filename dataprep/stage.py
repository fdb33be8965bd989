"""The spine every stage runs inside: a stage, a sink, one loop that counts rows, and the report it fills.

A **stage** is a library object that turns a batch into the rows it keeps and the rows it rejects, each reject
with a reason (``Stage.process``); a stage that must see every row first (``split``) emits at the end
(``Stage.finish``). A **sink** is where kept rows go (a JSONL/Parquet file, one file per split, a dataset folder).
:func:`run` is the only code that counts: rows in = rows out + rows rejected is checked on every run, and every
reject gets the ``file:line`` (or record index) of the row it came from, so no stage has to know where its input
was read from. Nothing here imports click: the CLI only builds a stage, calls :func:`run` and prints the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from dataprep.io import AtomicFile, Batch, dumps, named_os_error
from dataprep.records import Record


class Rejected(NamedTuple):
    """A row that does not go on: the row as it came in, a stable ``reason`` and a human ``detail``.

    ``index`` is the row's position in the batch the stage was given; :func:`run` turns it into ``location``.
    A stage that loses track of batches (one emitting at the end) sets ``location`` itself.
    """

    record: Record
    reason: str
    detail: str
    location: str | None = None
    index: int | None = None


class Stage(Protocol):
    """One step of a preparation; see the module docstring."""

    name: str

    def process(self, batch: Batch) -> tuple[Sequence[Any], list[Rejected]]:
        """The rows kept (a :class:`Batch` of records for record stages) and those rejected."""
        ...

    def finish(self) -> Iterable[tuple[Sequence[Any], list[Rejected]]]:
        """Rows emitted after the input ends (most stages: none)."""
        ...

    def facts(self) -> dict[str, Any]:
        """What the summary line says besides the counts (``template: chatml``, split sizes, ...)."""
        ...

    # A stage that writes several rows for one (tokenize's ``expand`` policy) counts the extra rows in an
    # attribute ``created``; the promise is then in + created = out + rejected.


class Sink(Protocol):
    """Where kept rows go; nothing appears at the target unless ``close(ok=True)``."""

    def write(self, rows: Any) -> None: ...

    def close(self, ok: bool) -> None: ...


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...


class StageReport:
    """Counts one stage's rows; ``rejects_path`` keeps each rejected record with its reason and location."""

    def __init__(self, stage: str, rejects_path: str | None = None) -> None:
        self.stage = stage
        self.rows_in = 0
        self.rows_out = 0
        self.created = 0
        self.reasons: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.rejects_path = rejects_path
        self._rejects = AtomicFile(rejects_path) if rejects_path else None

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def reject(self, record: Record | str, reason: str, detail: str, location: str | None = None) -> None:
        """Account for one row that does not go on; a raw line that never parsed is kept as ``{"raw": text}``."""
        self.reasons[reason] += 1
        if self._rejects is not None:
            row = dict(record) if isinstance(record, dict) else {"raw": record}
            row.update({"stage": self.stage, "reason": reason, "detail": detail})
            if location:
                row["location"] = location
            self._rejects.handle.write(dumps(row) + "\n")

    def bad_input(self, location: str, reason: str, detail: str, raw: str) -> None:
        """Handler for the readers' ``on_bad``: a malformed line is counted in and rejected, not a crash."""
        self.rows_in += 1
        self.reject(raw, reason, detail, location)

    def summary(self) -> str:
        created = f" (+{self.created} by expand)" if self.created else ""
        parts = [f"{self.stage}: {self.rows_in} in{created}, {self.rows_out} out, {self.rejected} rejected"]
        if self.reasons:
            parts.append("(" + ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items())) + ")")
        extra = ", ".join(f"{k}: {v}" for k, v in self.extra.items())
        return " ".join(parts) + (f"; {extra}" if extra else "")

    def check(self) -> None:
        """The stage's promise; a failure here is a bug in dataprep, never the user's data."""
        assert self.rows_in + self.created == self.rows_out + self.rejected, self.summary()

    def close(self, ok: bool = True) -> None:
        if self._rejects is None:
            return
        if ok:
            self._rejects.commit()
        else:
            self._rejects.abort()


class Runner:
    """One stage's run, pushed a batch at a time: itself a :class:`Sink`, so stages chain in one process.

    ``Runner(filter, Runner(split, sink, r2), r1)`` is a sink for normalize's output: each batch it is given goes
    through the stage at once (no encoding in between), and closing it finishes the stage and closes what follows.
    :func:`run` is a loop over a runner; the counting lives here and nowhere else.
    """

    def __init__(self, stage: Stage, sink: Sink, report: StageReport, progress: Progress | None = None) -> None:
        self.stage = stage
        self.sink = sink
        self.report = report
        self.progress = progress

    def write(self, batch: Batch) -> None:
        self.report.rows_in += len(batch)
        _settle(self.stage.process(batch), batch, self.sink, self.report)
        if self.progress is not None:
            self.progress.update(len(batch))

    def close(self, ok: bool) -> None:
        """``ok``: finish the stage (rows it held go on), check the counts, commit; otherwise leave no trace.

        Output and rejects file appear only when the whole run succeeds; the output is committed first, so a
        failure to commit the rejects file after it is reported as exactly that.
        """
        if not ok:
            self._abort()
            return
        try:
            for emitted in self.stage.finish():
                _settle(emitted, None, self.sink, self.report)
            self.report.extra.update(self.stage.facts())
            self.report.created = getattr(self.stage, "created", 0)
            self.report.check()
        except BaseException:
            self._abort()
            raise
        try:
            self.sink.close(ok=True)  # for a chained stage, this finishes the stages after this one
        except BaseException:
            self.report.close(ok=False)
            raise
        _commit_rejects(self.report)

    def _abort(self) -> None:
        try:
            self.sink.close(ok=False)
        finally:
            self.report.close(ok=False)


def run(stage: Stage, batches: Iterable[Batch], sink: Sink, report: StageReport,
        progress: Progress | None = None) -> StageReport:
    """Feed ``batches`` through ``stage`` into ``sink``, counting every row into ``report``."""
    pump(batches, Runner(stage, sink, report, progress))
    return report


def pump(batches: Iterable[Batch], sink: Sink) -> None:
    """Write every batch to ``sink`` and close it: ``ok`` only when every batch went in."""
    try:
        for batch in batches:
            sink.write(batch)
    except BaseException:
        sink.close(ok=False)
        raise
    sink.close(ok=True)


def _settle(emitted: tuple[Sequence[Any], list[Rejected]], batch: Batch | None, sink: Sink,
            report: StageReport) -> None:
    kept, rejected = emitted
    for item in rejected:
        location = item.location
        if location is None and batch is not None and item.index is not None:
            location = batch.location(item.index)
        report.reject(item.record, item.reason, item.detail, location)
    report.rows_out += len(kept)
    if len(kept):
        sink.write(kept)


def _commit_rejects(report: StageReport) -> None:
    """Commit the rejects file after the output; if that fails the output stays, and the error names the file."""
    try:
        report.close(ok=True)
    except OSError as exc:
        report.close(ok=False)
        raise named_os_error(exc, report.rejects_path or "--rejects") from None


def survivors(batch: Batch, kept: list[Record], rejected: list[Rejected]) -> Batch:
    """The kept rows of a one-to-one, order-keeping stage as a batch that still knows where each row came from.

    Every reject must carry its ``index``; the kept rows are the others, in order.
    """
    gone = {item.index for item in rejected}
    positions = [i for i in range(len(batch)) if i not in gone]
    if len(positions) != len(kept):
        raise AssertionError(f"{len(kept)} kept + {len(rejected)} rejected rows from a batch of {len(batch)}")
    if batch.encoded is not None and all(k is batch.records[p] for k, p in zip(kept, positions, strict=True)):
        return batch.take(positions)  # the same rows, passed on: their JSON lines still hold
    return batch.take(positions, kept)


def canonical_part(batch: Batch) -> tuple[Batch, list[int], list[Rejected]]:
    """The canonical records of ``batch`` (as a batch keeping their locations), their positions in ``batch``, and
    a reject for every other row. A batch of plainly raw data (alpaca, ShareGPT...) stops the run instead.

    Stages after normalize call this rather than trust their input (a string ``history`` would be read letter by
    letter, a null reply trained as empty). Indexes in rejects of the returned batch map back through
    ``positions``. A batch marked ``canonical`` (made by normalize or split in this process) is taken whole.
    """
    from dataprep.errors import UsageProblem
    from dataprep.records import NOT_CANONICAL, RecordError, check_canonical, looks_raw

    if batch.canonical:
        return batch, list(range(len(batch))), []
    if looks_raw(batch.records):
        raise UsageProblem(f"{batch.location(0)}: {NOT_CANONICAL}")
    positions: list[int] = []
    rejected: list[Rejected] = []
    for i, record in enumerate(batch.records):
        try:
            check_canonical(record)
        except RecordError as exc:
            rejected.append(Rejected(record, exc.reason, exc.detail, index=i))
            continue
        positions.append(i)
    return (batch if not rejected else batch.take(positions)), positions, rejected


def remap(rejected: list[Rejected], positions: list[int]) -> list[Rejected]:
    """Rejects of a sub-batch with their indexes turned back into indexes of the batch it was taken from."""
    return [r._replace(index=positions[r.index]) if r.index is not None else r for r in rejected]
