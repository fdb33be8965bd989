"""The whole ``dataprep tokenize`` run: inputs -> (cache check) -> the tokenize stage under :func:`stage.run` ->
a dataset folder with its manifest, card and tokenizer, committed atomically.

The stage overlaps Python and Rust: a batch is prepared (rendered) in this thread while the previous one is
encoded in a worker thread (the Rust tokenizer releases the GIL), so a batch's rows come out one batch later;
the stage names the location of each reject itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataprep import emit
from dataprep import manifest as mf
from dataprep.errors import UsageProblem
from dataprep.io import Batch, read_batches
from dataprep.manifest import InputFile, Manifest, SplitStats, Totals
from dataprep.outdir import FolderSink, OutputDir
from dataprep.paths import check_paths, check_replaceable_folder
from dataprep.stage import Rejected, StageReport, run
from dataprep.tokenize.layout import IGNORE_INDEX, Encoder, TokenizedBatch
from dataprep.tokenize.options import TokenizeJob

SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


@dataclass
class TokenizeResult:
    up_to_date: bool
    manifest: Manifest
    summary: str
    report: StageReport | None = None


def parse_input(arg: str) -> tuple[str | None, str]:
    """``NAME=PATH`` names the split of every row of PATH; a plain path (or one that exists as given) does not."""
    name, sep, path = arg.partition("=")
    if sep and path and SPLIT_NAME.match(name) and not (arg == "-" or Path(arg).exists()):
        return name, path
    return None, arg


class TokenizeStage:
    """The tokenize stage: records in, :class:`TokenizedBatch` out, one batch in flight in the encoder thread."""

    name = "tokenize"

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataprep-encode")
        self._pending: tuple[Batch, Any, Future[Any]] | None = None

    def process(self, batch: Batch) -> tuple[Sequence[Any], list[Rejected]]:
        splits, rejected = _row_splits(batch)
        prepared = self.encoder.prepare(batch.records, splits)
        future = self._pool.submit(self.encoder.encode, prepared)
        kept: Sequence[Any] = ()
        if self._pending is not None:
            kept, earlier = self._settle(*self._pending)
            rejected = earlier + rejected
        self._pending = (batch, prepared, future)
        return kept, rejected

    def finish(self) -> Iterator[tuple[Sequence[Any], list[Rejected]]]:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            yield self._settle(*pending)
        self.close()

    def facts(self) -> dict[str, Any]:
        return {}

    @property
    def created(self) -> int:
        return self.encoder.created

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _settle(self, batch: Batch, prepared: Any, future: Future[Any]) -> tuple[TokenizedBatch, list[Rejected]]:
        result = self.encoder.finish(prepared, future.result())
        rejected = [item._replace(location=batch.location(index)) for index, item in result.rejected]
        return result.tokens, rejected


def _row_splits(batch: Batch) -> tuple[list[str | None], list[Rejected]]:
    """Each row's split (``batch.split`` for a ``NAME=PATH`` input); a bad split name rejects the row (None)."""
    if batch.split is not None:
        return [batch.split] * len(batch), []
    splits: list[str | None] = []
    rejected: list[Rejected] = []
    for i, record in enumerate(batch.records):
        name = record.get("split") or "train"
        if name == "train":
            splits.append(name)
        elif not isinstance(name, str) or not SPLIT_NAME.match(name):
            detail = f"split {name!r} is not a valid split name (letters, digits, _ and .)"
            rejected.append(Rejected(record, "invalid_split", detail, location=batch.location(i)))
            splits.append(None)
        else:
            splits.append(name)
    return splits, rejected


class DatasetSink(FolderSink):
    """Routes each tokenized batch to its split's Arrow file and counts tokens per split.

    ``close(ok=True)`` saves the DatasetDict, lets ``finalize`` add the manifest, card and tokenizer to the
    staging folder, and swaps it in; ``close(ok=False)`` leaves no trace.
    """

    def __init__(self, out: OutputDir, encoder: Encoder, emit_for: str = emit.DEFAULT_TARGET) -> None:
        super().__init__(out)
        self.encoder = encoder
        self.emit_for = emit_for
        self.splits: dict[str, SplitStats] = {}

    def write(self, tokens: TokenizedBatch) -> None:
        splits = np.asarray(tokens.splits)
        supervised = None  # per row
        if self.encoder.task == "causal":
            running = np.concatenate(([0], np.cumsum(tokens.columns["labels"] != IGNORE_INDEX)))
            supervised = running[tokens.offsets[1:]] - running[tokens.offsets[:-1]]
        for name in sorted(set(tokens.splits)):
            rows = np.flatnonzero(splits == name)
            part = tokens if len(rows) == len(tokens) else tokens.select(rows)
            batch = part.to_arrow(self.encoder.schema)
            self.out.write(name, emit.columns_for(self.emit_for, batch) if self.encoder.task == "causal" else batch)
            ids = emit.ids_beside(self.emit_for, batch)
            if ids is not None:
                folder = self.out.path / emit.IDS_DIR
                folder.mkdir(exist_ok=True)
                with open(folder / f"{name}.jsonl", "a", encoding="utf-8") as side:
                    side.write(emit.ids_lines(ids))
            s = self.splits.setdefault(name, SplitStats())
            s.longest = max(s.longest, int(part.lengths.max()) if len(part) else 0)
            s.rows += len(part)
            s.truncated += int(part.truncated.sum())
            s.tokens += int(part.lengths.sum())
            if supervised is None:
                s.supervised_tokens = None
            else:
                assert s.supervised_tokens is not None
                s.supervised_tokens += int(supervised[rows].sum())



def _batches(inputs: list[InputFile | mf.StreamedStdin], job: TokenizeJob, report: StageReport,
             encoder: Encoder) -> Iterator[Batch]:
    on_bad = report.bad_input if job.on_error == "reject" else None
    known = sum(f.bytes for f in inputs if isinstance(f, InputFile))
    for source in inputs:
        streamed = source if isinstance(source, mf.StreamedStdin) else None
        for batch in read_batches(source.path, fmt=job.input_format or source.fmt, batch_size=job.batch_size,
                                  on_bad=on_bad, stream=streamed.reader() if streamed else None):
            if source.name == "<stdin>":
                batch.source = "<stdin>"
            batch.split = source.split
            if streamed is not None:
                encoder.expect(known + streamed.arrived)  # its size so far: a large input loads a faster encoder
            yield batch


def tokenize_to_disk(job: TokenizeJob, *, progress: Any = None) -> TokenizeResult:
    """Tokenize ``job.inputs`` into the DatasetDict folder ``job.outdir``; skip the work when it is up to date."""
    from dataprep.tokenizer_io import open_tokenizer, tokenizer_files_sha256

    parsed = [parse_input(a) for a in job.inputs]
    if sum(1 for _, p in parsed if p == "-") > 1:
        raise UsageProblem("stdin ('-') can be given only once")
    check_paths([path for _, path in parsed], None, job.rejects, replaced_folders=[job.outdir])
    check_replaceable_folder(job.outdir, mf.MANIFEST)
    emit.check_task(job.emit_for, job.task)
    early = _early_fast_load(job, [path for _, path in parsed])
    tokenizer = open_tokenizer(job.tokenizer, trust_remote_code=job.trust_remote_code)
    same_file = early is not None and getattr(tokenizer, "loaded_by", None) == "tokenizer.json"
    encoder, template_facts = encoder_for(job, tokenizer, early if same_file else None)
    schema = emit.schema_for(job.emit_for, encoder.schema) if job.task == "causal" else encoder.schema
    out = OutputDir(job.outdir, schema)
    report = StageReport("tokenize", job.rejects)
    try:
        old = mf.read_manifest(job.outdir)
        # stdin is read as it arrives (hashed on the way) when the cache key is not needed before the work;
        # otherwise it is spooled and hashed first, so an up-to-date run costs no work
        stream = job.force or old is None
        inputs: list[InputFile | mf.StreamedStdin] = [
            mf.StreamedStdin(str(out.work), split, job.input_format) if path == "-" and stream
            else mf.hash_input(path, str(out.work), split) for split, path in parsed]
        encoder.expect(sum(f.bytes for f in inputs if isinstance(f, InputFile)))
        tok_sha = tokenizer_files_sha256(job.tokenizer, tokenizer)
        options = job_options(job, encoder)

        def cache_key() -> str:
            facts = [f.fact() if isinstance(f, mf.StreamedStdin) else f for f in inputs]
            return mf.cache_key(mf.key_parts(task=job.task, options=options, inputs=facts, tokenizer_sha256=tok_sha,
                                             template=template_facts))

        streamed = any(isinstance(f, mf.StreamedStdin) for f in inputs)
        key = "" if streamed else cache_key()  # a streamed input's key is known once it is read
        if old is not None and old.key == key and not job.force:
            out.abort()
            report.close(ok=False)
            summary = (f"tokenize: {job.outdir} is up to date (key {key[:12]}, {old.totals.rows_out:,} rows; "
                       "--force to redo)")
            return TokenizeResult(True, old, summary)
    except BaseException:
        out.abort()
        report.close(ok=False)
        raise
    manifest = dataset_manifest(job, tokenizer, encoder, key=key, tokenizer_sha256=tok_sha,
                                template_facts=template_facts,
                                inputs=[f.fact() for f in inputs if isinstance(f, InputFile)])
    sink = DatasetSink(out, encoder, job.emit_for)

    def finalize(sink: DatasetSink) -> None:
        if streamed:
            manifest.key = cache_key()
            manifest.inputs = [(f.fact() if isinstance(f, mf.StreamedStdin) else f).fact() for f in inputs]
        finish_dataset(sink, manifest, tokenizer, report, job)

    sink.finalize = finalize
    stage = TokenizeStage(encoder)
    started = time.perf_counter()
    try:
        run(stage, _batches(inputs, job, report, encoder), sink, report, progress)
    finally:
        stage.close()
    elapsed = max(time.perf_counter() - started, 1e-9)
    return TokenizeResult(False, manifest, _summary(report, manifest, elapsed), report)


def _early_fast_load(job: TokenizeJob, paths: list[str]) -> Any:
    """Start reading the fast encoder's tables now, before the tokenizer and template are opened, when the run
    will use it: ``--encoder fast``, or ``auto`` with input files large enough for it to pay. None otherwise."""
    from dataprep.encoders import AutoEncoder, FastLoad, fast_available
    from dataprep.tokenizer_io import TOKENIZER_JSON, resolve_spec

    if job.task != "causal" or job.causal.encoder == "hf" or not fast_available():
        return None
    where = resolve_spec(job.tokenizer)
    if not isinstance(where, Path) or not (where / TOKENIZER_JSON).is_file():
        return None
    if job.causal.encoder == "auto":
        size = sum(Path(p).stat().st_size for p in paths if p != "-" and Path(p).is_file())
        if size < AutoEncoder.fast_after_chars:
            return None
    return FastLoad(where / TOKENIZER_JSON)


def dataset_manifest(job: TokenizeJob, tokenizer: Any, encoder: Encoder, *, key: str,
                     tokenizer_sha256: dict[str, str], template_facts: dict[str, Any] | None,
                     inputs: list[dict[str, Any]]) -> Manifest:
    """The manifest of a dataset folder before its rows are written (``finish_dataset`` adds the counts)."""
    from dataprep.tokenizer_io import tokenizer_facts

    facts = tokenizer_facts(tokenizer)
    known = mf.TokenizerFacts.__dataclass_fields__
    return Manifest(
        task=job.task,
        tokenizer=mf.TokenizerFacts(class_name=facts.pop("class", None), files_sha256=tokenizer_sha256,
                                    **{k: v for k, v in facts.items() if k in known}),
        splits={}, key=key, options=job_options(job, encoder), template=template_facts, inputs=inputs,
        emit_for=job.emit_for,
    )


def job_options(job: TokenizeJob, encoder: Encoder) -> dict[str, Any]:
    """The options that shape a dataset folder's bytes: the encoder's, and the consumer layout."""
    return {**encoder.options(), "emit_for": job.emit_for}


def finish_dataset(sink: DatasetSink, manifest: Manifest, tokenizer: Any, report: StageReport,
                   job: TokenizeJob) -> None:
    """Complete a dataset folder in its staging place: the DatasetDict, the tokenizer, the manifest, the card.

    ``report`` counts the tokenize stage's rows; the split counts come from what ``sink`` wrote. ``dataprep run``
    writes its folders through here too, so both commands make the same folder from the same rows.
    """
    from dataprep.card import write_card
    from dataprep.tokenizer_io import save_tokenizer

    out, encoder = sink.out, sink.encoder
    out.finish_splits(manifest.key, encoder.rewrite_split)
    save_tokenizer(tokenizer, out.staging / mf.TOKENIZER_DIR)
    manifest.splits = {s: sink.splits[s] for s in out.splits}
    manifest.rejected = dict(sorted(report.reasons.items()))
    stats = list(manifest.splits.values())
    supervised = None if any(s.supervised_tokens is None for s in stats) else sum(
        s.supervised_tokens or 0 for s in stats)
    manifest.totals = Totals(rows_in=report.rows_in, rows_out=report.rows_out, rejected=report.rejected,
                             truncated=sum(s.truncated for s in stats), tokens=sum(s.tokens for s in stats),
                             supervised_tokens=supervised)
    run_facts = encoder.describe()
    manifest.encoder = run_facts.get("encoder")
    manifest.self_check = run_facts.get("self_check")
    names = encoder.label_names
    if names is not None:
        manifest.labels = {"field": job.classify.label, "names": list(names),
                           "ids": {name: i for i, name in enumerate(names)}}
    mf.write_manifest(out.staging, manifest)
    write_card(out.staging, manifest, job.outdir)


def encoder_for(job: TokenizeJob, tokenizer: Any, preload: Any = None) -> tuple[Encoder, dict[str, Any] | None]:
    """The job's encoder and the facts of its template (None for classification); ``preload`` is a fast
    encoder already loading (``FastLoad``) for the same tokenizer file."""
    import hashlib

    if job.task == "classification":
        from dataprep.tokenize.pair import PairClassifier

        return PairClassifier(tokenizer, job.classify), None
    from dataprep.template import load_template
    from dataprep.tokenize.causal import CausalTokenizer

    template = load_template(job.template, tokenizer)
    facts = {
        "name": template.name,
        "sha256": hashlib.sha256(template.source.encode("utf-8")).hexdigest(),
        "default_system": template.default_system,
    }
    return CausalTokenizer(tokenizer, template, job.causal, preload), facts


def _summary(report: StageReport, manifest: Manifest, elapsed: float) -> str:
    totals = manifest.totals
    report.extra["truncated"] = totals.truncated
    report.extra["tokens"] = f"{totals.tokens:,}"
    if totals.supervised_tokens is not None and totals.tokens:
        report.extra["supervised"] = f"{100 * totals.supervised_tokens / totals.tokens:.1f}%"
    report.extra["splits"] = " ".join(f"{s}={n.rows}" for s, n in manifest.splits.items()) or "none"
    report.extra["rows/s"] = f"{report.rows_in / elapsed:,.0f}"
    if manifest.encoder:
        report.extra["encoder"] = manifest.encoder.get("name")
    if manifest.self_check:
        check = manifest.self_check
        report.extra["self-check"] = f"{check['passed']}/{check['checked']} rows identical to apply_chat_template"
    return report.summary()
