"""Reading and normalizing a source in a worker process, so ``dataprep run`` uses a second core.

A shell pipe runs its stages in parallel processes; ``run`` keeps the stages in one process (no JSON between them)
and would otherwise use one core. Reading (JSON parsing) and normalize are the work worth moving: a row's record
depends only on the row and the options, so the worker gives the records the main process would, in the same
order, with the JSON lines normalize made along the way (alpaca rows); other rows are encoded in the main process,
which would otherwise wait for the worker. The main
process keeps everything that counts or writes: the normalize runner gets, for each input batch, its size and what
normalize made of it, and unreadable rows (``on_bad``) and the format notice arrive in the order they happened, so
counts, rejects files and messages are the ones an in-process run gives.

The worker is forked (the stage and its options are inherited, never pickled); batches come back pickled, over a
pipe whose buffer bounds how far it runs ahead. By default (:func:`worth_a_worker`) ``run`` uses one only where
that pays for the pickling; ``--workers 1`` asks for it anyway, where ``fork`` exists.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dataprep.errors import DataprepError
from dataprep.io import Batch, read_batches
from dataprep.stage import Rejected, Stage

MIN_BYTES = 8 << 20  # below this, starting a worker costs more than it saves
SNIFF_BYTES = 1 << 20  # how much of a file is read to tell its rows' format


def worth_a_worker(path: str, fmt: str | None, options: Any, tokenizes: bool = False) -> bool:
    """Whether ``run`` reads and normalizes the source ``path`` in a worker by default.

    Handing rows over costs the two processes about 0.35 s of CPU per 52,000 rows (pickling), so the worker pays
    only where the work it takes off this process outweighs that: a big file (:data:`MIN_BYTES`), a second CPU,
    and either a run that tokenizes (this process has the tokenizing to do meanwhile) or a row format whose reader
    does not give the rows' JSON lines as it reads (every format but alpaca, whose plain rows are read and encoded
    in one cheap step). Measured on the 52,002-row bench set on two cores: alpaca rows tokenized 13% less wall
    time; ShareGPT rows to records 21% less wall time for 14% more CPU; alpaca rows to records within 3% of the
    wall time, for 23-33% more CPU. ``options``: the source's :class:`~dataprep.normalize.NormalizeOptions`; an
    ``auto`` format is told from the file's first row.
    """
    from dataprep import formats
    from dataprep.errors import UsageProblem
    from dataprep.io import first_row

    if not (os.path.isfile(path) and os.path.getsize(path) >= MIN_BYTES and can_fork()
            and len(os.sched_getaffinity(0)) >= 2):
        return False
    if tokenizes:
        return True
    source = options.source
    if source == "auto":
        row = first_row(path, fmt, SNIFF_BYTES)
        try:
            source = formats.detect_schema(row, options.columns) if row is not None else None
        except UsageProblem:
            source = None
    return source is not None and formats.encoded_reader(source, options.columns) is None


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and hasattr(os, "sched_getaffinity")


@dataclass
class Done(Batch):
    """An input batch as the main process sees it: its size (placeholders for rows it never decodes) and the
    stage's result for it."""

    result: tuple[Any, list[Rejected]] = field(default_factory=lambda: ((), []))


class Offloaded:
    """The stage under the runner while its work runs in the worker: hands back each batch's result."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.name = stage.name

    def process(self, batch: Batch) -> tuple[Any, list[Rejected]]:
        assert isinstance(batch, Done)
        return batch.result

    def finish(self) -> tuple[()]:
        return ()

    def facts(self) -> dict[str, Any]:
        return self.stage.facts()


def read_processed(path: str, fmt: str | None, split: str | None, stage: Any,
                   on_bad: Callable[[str, str, str, str], None] | None) -> Iterator[Done]:
    """The batches of ``path`` read and put through ``stage`` in a forked worker, as :class:`Done` batches for a
    runner over :class:`Offloaded`; ``on_bad`` and ``stage.notify`` are called here, in order."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_work, args=(send, path, fmt, split, stage, on_bad is not None),
                             name="dataprep-read", daemon=True)
    worker.start()
    send.close()
    try:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                worker.join()
                raise DataprepError(f"{path}: the process reading it stopped (exit status {worker.exitcode})",
                                    hint="run again with --workers 0 to read it in this process") from None
            kind = message[0]
            if kind == "batch":
                _, source, n, kept, rejected = message
                yield Done(source, [None] * n, result=(kept, rejected))  # type: ignore[list-item]
            elif kind == "bad":
                assert on_bad is not None
                on_bad(*message[1:])
            elif kind == "note":
                if stage.notify is not None:
                    stage.notify(message[1])
            elif kind == "error":
                raise message[1]
            else:
                worker.join()
                return
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        receive.close()


def _work(send: Any, path: str, fmt: str | None, split: str | None, stage: Any, bad: bool) -> None:
    """The worker: read, process, send; a failure is sent as the exception, to be raised in the main process."""
    # Ctrl-C and SIGTERM are the main process's to handle (it cleans up, and the closed pipe ends this one); the
    # main process's handlers would clean up its temp files from here too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        stage.notify = lambda text: send.send(("note", text))
        on_bad = (lambda *args: send.send(("bad", *args))) if bad else None
        for batch in read_batches(path, fmt=fmt, on_bad=on_bad):
            batch.split = split
            kept, rejected = stage.process(batch)
            rejected = [item._replace(location=batch.location(item.index))
                        if item.location is None and item.index is not None else item for item in rejected]
            send.send(("batch", batch.source, len(batch), kept, rejected))
        send.send(("end",))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the main process, which decides
        try:
            send.send(("error", exc))
        except BaseException:  # noqa: BLE001 - it does not pickle (its text goes), or the main process is gone
            with contextlib.suppress(BaseException):
                send.send(("error", DataprepError(f"{type(exc).__name__}: {exc}")))
    finally:
        with contextlib.suppress(BaseException):
            send.close()
