"""``dataprep run``: a recipe's whole preparation in one process, stage after stage, with a cache per stage.

The flow, for sources ``0..n``::

    source i:  read -> [validate] -> [normalize] -> [filter]  --+
                                                                +--> [split] --> per source: [tokenize] --> mix --> output
    source j:  read -> [validate] -> [normalize] -> [filter]  --+

* Stages are the library's own stage objects, chained with :class:`dataprep.stage.Runner` (each is the sink of the
  one before): a batch goes from stage to stage as Python objects, and each stage keeps its own accounting
  (``in = out + rejected``) and its own rejects.
* normalize and filter run **per source** and their outputs are cached per source, so changing the mixture, or
  one source, redoes nothing for the others. (``filter.dedup`` therefore removes duplicates within a source.)
* split sees the **distinct** rows of every source together, exactly like ``cat | dataprep split`` would, and
  decides each row's split once; mixing then copies or drops rows inside their split, so a copy of a training row
  can never be a validation row.
* tokenize runs per source on those distinct rows; mixing takes their token counts for ``tokens`` budgets, and the
  output is gathered from the tokenized rows (Arrow, no re-tokenizing), so a new weight redoes only the gathering.
* Every stage's output is cached under a key of everything that shapes it (:mod:`dataprep.cache`); a run reuses
  what it can and says so. ``--dry-run`` prints the plan without running it.
* With a worker (``--workers 1``; by default where it pays, :func:`dataprep.offload.worth_a_worker`), a source is
  read and normalized in a forked process (:mod:`dataprep.offload`) while this one filters, splits and writes: the
  same rows, counts and rejects, on two cores. Rows are encoded to JSON once: whatever makes a row's line first
  (normalize, for alpaca rows; a cache file; split) leaves it on the batch (``Batch.encoded``) for the ones after it.

For a cluster (issue 12) the same pieces apply: the stage objects, :func:`plan`'s keys, and
:func:`dataprep.mix.mix`, which is a pure function of ids, splits, token counts and the seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataprep import cache as cachelib
from dataprep.cache import Cache, Entry, RecordsFile, Tracked
from dataprep.errors import DataprepError
from dataprep.io import Batch, read_batches
from dataprep.mix import SourceMix, SourceRows, mix
from dataprep.normalize import NormalizeOptions
from dataprep.recipe import LoadedRecipe
from dataprep.stage import Rejected, Runner, Sink, Stage, StageReport, pump

RECORD_STAGES = ("normalize", "filter")
PASS_THROUGH = ("filter",)  # stages that pass kept rows on unchanged (their cache names them by number)


# -- the plan: every source's keys, and what the cache already holds ---------------------------------------------

@dataclass
class Source:
    index: int
    name: str
    path: str
    input_format: str | None
    normalize: NormalizeOptions | None
    split: str | None
    schema: str | None
    target: tuple[str, float] | None
    sha256: str = ""
    bytes: int = 0
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def records_key(self) -> str:
        """The key of this source's rows as the last per-source record stage leaves them."""
        return self.keys["records"]


@dataclass
class Tokenizing:
    """The tokenize stage's fixed parts: job, tokenizer, encoder and the facts that go in keys and manifest."""

    job: Any
    tokenizer: Any
    encoder: Any
    template: dict[str, Any] | None
    tokenizer_sha256: dict[str, str]


@dataclass
class Plan:
    loaded: LoadedRecipe
    sources: list[Source]
    cache: Cache
    stages: list[str]  # per-source record stages present, in order
    split_key: str | None
    tokenizing: Tokenizing | None
    output_key: str
    force: bool = False

    @property
    def recipe(self) -> Any:
        return self.loaded.recipe

    @property
    def dataset_dir(self) -> str:
        """Where the tokenized dataset goes: the output, or with ``pack`` a folder in the cache that pack reads
        (kept with a kept cache, so a new ``pack.max_length`` repacks without tokenizing again)."""
        if self.recipe.pack is None:
            return self.recipe.output
        return str(self.cache.root / "datasets" / self.output_key[:32])

    def cached(self, stage: str, digest: str | None) -> bool:
        return digest is not None and not self.force and self.cache.has(stage, digest)

    def actions(self) -> list[tuple[str, str, str]]:
        """``(stage, source, "reuse"|"run"|"skip")`` for every stage of every source, in run order.

        "skip": not needed, because everything after it is cached.
        """
        out: list[tuple[str, str, str]] = []
        need_tokens = {s.index: self.tokenizing is not None and not self.cached("tokenize", s.keys["tokenize"])
                       for s in self.sources}
        records_out = self.tokenizing is None
        split = self.recipe.split is not None
        split_cached = self.cached("split", self.split_key)
        split_needed = split and not split_cached and (records_out or any(need_tokens.values()))
        for s in self.sources:
            if self.recipe.validate_ is not None:
                out.append(("validate", s.name, "reuse" if self.cached("validate", s.keys["validate"]) else "run"))
            needed = split_needed if split else (need_tokens[s.index] or records_out)
            cached = [self.cached(stage, s.keys[stage]) for stage in self.stages]
            last = max((i for i, hit in enumerate(cached) if hit), default=-1)  # the run starts after it
            for i, stage in enumerate(self.stages):
                if cached[i]:
                    state = "reuse"
                elif i > last and needed:
                    state = "run"
                else:
                    state = "skip"
                out.append((stage, s.name, state))
        if split:
            out.append(("split", "*", "reuse" if split_cached else "run" if split_needed else "skip"))
        if self.tokenizing is not None:
            out += [("tokenize", s.name, "run" if need_tokens[s.index] else "reuse") for s in self.sources]
        return out


def plan(loaded: LoadedRecipe, cache: Cache, *, force: bool = False) -> Plan:
    """Resolve the recipe's sources and compute every stage's cache key (inputs are hashed, nothing is run)."""
    from dataprep.manifest import hash_input

    recipe = loaded.recipe
    stages = [s for s in RECORD_STAGES if getattr(recipe, s) is not None]
    tokenizing = _tokenizing(loaded) if recipe.tokenize is not None else None
    sources = []
    for i, spec in enumerate(recipe.inputs):
        entry = loaded.entries[i]
        path = spec.path or entry.path
        normalize = None
        if recipe.normalize is not None:
            fmt = entry.fmt if entry is not None else spec.format
            columns = {**(entry.columns if entry else {}), **_slots(spec.map)}
            tags = {**(entry.tags if entry else {}), **spec.tags}
            normalize = recipe.normalize.options(source=fmt, columns=columns, tags=tags)
        schema = None
        if recipe.validate_ is not None:
            schema = spec.schema_ or recipe.validate_.schema_ or (entry.fmt if entry else spec.format)
        source = Source(i, loaded.names[i], path, spec.input_format, normalize, spec.split, schema, spec.target)
        facts = hash_input(path, str(cache.root), None)
        source.sha256, source.bytes = facts.sha256, facts.bytes
        read = {"sha256": source.sha256, "path": path, "input_format": spec.input_format,
                "on_error": recipe.on_error}
        if schema is not None:
            source.keys["validate"] = cachelib.key("validate", input=read, schema=_schema_sha(schema))
        upstream = cachelib.key("read", input=read)
        if normalize is not None:
            upstream = source.keys["normalize"] = cachelib.key("normalize", input=upstream,
                                                               options=_jsonable(normalize))
        if recipe.filter is not None:
            upstream = source.keys["filter"] = cachelib.key("filter", input=upstream,
                                                            options=_jsonable(recipe.filter.options()))
        source.keys["records"] = upstream
        sources.append(source)
    split_key = None
    if recipe.split is not None:
        split_key = cachelib.key("split", inputs=[s.records_key for s in sources],
                                 options=_jsonable(recipe.split.options()))
    for s in sources:
        upstream = cachelib.key("rows", split=split_key, source=s.index) if split_key else s.records_key
        s.keys["rows"] = upstream
        if tokenizing is not None:
            s.keys["tokenize"] = cachelib.key(
                "tokenize", input=upstream, split=s.split, task=tokenizing.job.task,
                options=tokenizing.encoder.options(), tokenizer_sha256=tokenizing.tokenizer_sha256,
                template=tokenizing.template)
    output_key = cachelib.key(
        "output", sources=[[s.name, s.keys.get("tokenize", s.keys["rows"])] for s in sources],
        mix={"seed": recipe.mix.seed, "rows": recipe.mix.rows, "targets": [s.target for s in sources]},
        emit_for=tokenizing.job.emit_for if tokenizing is not None else None)
    return Plan(loaded, sources, cache, stages, split_key, tokenizing, output_key, force)


def _slots(mapping: dict[str, str]) -> dict[str, str]:
    from dataprep.formats import slot_name

    return {slot_name(k): v for k, v in mapping.items()}


def _jsonable(options: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(options), sort_keys=True, default=str))


def _schema_sha(schema: str) -> str:
    import hashlib

    from dataprep.schemas import schema_path

    return hashlib.sha256(schema_path(schema).read_bytes()).hexdigest()


def _tokenizing(loaded: LoadedRecipe) -> Tokenizing:
    from dataprep.emit import check_task
    from dataprep.tokenize.job import encoder_for
    from dataprep.tokenizer_io import open_tokenizer, tokenizer_files_sha256

    recipe = loaded.recipe
    job = recipe.tokenize.job(recipe.output, on_error=recipe.on_error)
    check_task(job.emit_for, job.task)
    tokenizer = open_tokenizer(job.tokenizer, trust_remote_code=job.trust_remote_code)
    encoder, template = encoder_for(job, tokenizer)
    return Tokenizing(job, tokenizer, encoder, template, tokenizer_files_sha256(job.tokenizer, tokenizer))


# -- sinks that join stages -------------------------------------------------------------------------------------

class Tee:
    """Every batch to each of ``sinks`` (a cache file and the next stage); closed in order."""

    def __init__(self, *sinks: Sink | None) -> None:
        self.sinks = [s for s in sinks if s is not None]

    def write(self, rows: Any) -> None:
        for sink in self.sinks:
            sink.write(rows)

    def close(self, ok: bool) -> None:
        failure: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close(ok=ok and failure is None)
            except BaseException as exc:  # close the others (they must not leak temp files), then re-raise
                failure = failure or exc
        if failure is not None:
            raise failure


class Committed:
    """A stage's runner whose cache entry is committed once the runner closed cleanly (counts checked)."""

    def __init__(self, runner: Runner, entry: Entry, on_close: Callable[[], None] | None = None) -> None:
        self.runner = runner
        self.entry = entry
        self.on_close = on_close

    def write(self, batch: Any) -> None:
        self.runner.write(batch)

    def close(self, ok: bool) -> None:
        try:
            self.runner.close(ok)
        except BaseException:
            self.entry.abort()
            raise
        finally:
            if self.on_close is not None:
                self.on_close()
        if not ok:
            self.entry.abort()
            return
        self.entry.meta["report"] = report_fact(self.runner.report)
        self.entry.commit()


class Feed:
    """The end of one source's chain: its rows go on into a stage shared by all sources (split), which is closed
    once, after the last source."""

    def __init__(self, shared: Runner, counter: PerSource, index: int) -> None:
        self.shared = shared
        self.counter = counter
        self.index = index

    def write(self, batch: Batch) -> None:
        self.counter.current = self.index
        self.shared.write(batch)

    def close(self, ok: bool) -> None:
        pass


class PerSource:
    """A shared stage, counting each source's rows in and rejected, so the rows it emits at the end (split emits
    them in input order) can be handed back to their sources."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.name = stage.name
        self.current = 0
        self.rows_in: Counter[int] = Counter()
        self.rejected: Counter[int] = Counter()

    def process(self, batch: Batch) -> tuple[Any, list[Rejected]]:
        kept, rejected = self.stage.process(batch)
        self.rows_in[self.current] += len(batch)
        self.rejected[self.current] += len(rejected)
        return kept, rejected

    def finish(self) -> Iterable[tuple[Any, list[Rejected]]]:
        return self.stage.finish()

    def facts(self) -> dict[str, Any]:
        return self.stage.facts()

    def emitted(self, index: int) -> int:
        return self.rows_in[index] - self.rejected[index]


class Partition:
    """Split's sink: its output (all sources, in input order) cut back into sources, each to its own tail."""

    def __init__(self, counts: Callable[[int], int], sources: int, tail: Callable[[int], Sink]) -> None:
        self.counts = counts
        self.sources = sources
        self.tail = tail
        self.index = -1
        self.left = 0
        self.open: Sink | None = None

    def _advance(self) -> None:
        while self.left == 0 and self.index < self.sources - 1:
            if self.open is not None:
                self.open.close(ok=True)
            self.index += 1
            self.open = self.tail(self.index)
            self.left = self.counts(self.index)
        if self.left == 0 and self.open is not None and self.index == self.sources - 1:
            self.open.close(ok=True)
            self.open = None

    def write(self, batch: Batch) -> None:
        start = 0
        while start < len(batch):
            self._advance()
            if self.open is None:
                raise AssertionError("split emitted more rows than its sources gave it")
            n = min(self.left, len(batch) - start)
            self.open.write(batch.take(list(range(start, start + n))))
            self.left -= n
            start += n
            if self.left == 0:
                self._advance()

    def close(self, ok: bool) -> None:
        if not ok:
            if self.open is not None:
                self.open.close(ok=False)
            return
        self._advance()
        if self.left or self.index < self.sources - 1:
            raise AssertionError("split emitted fewer rows than its sources gave it")


class TokensFile:
    """Tokenized batches of one source, as the Arrow file of its tokenize cache entry (+ split, truncated).

    ``facts`` counts what the summary line says (tokens, truncated rows, supervised tokens) as the batches go by,
    while their arrays are in memory, for the entry's meta: a later run reads them instead of the whole file.
    """

    def __init__(self, path: Path, schema: Any) -> None:
        import pyarrow as pa

        self.schema = schema
        self.full = schema.append(pa.field("split", pa.string())).append(pa.field("truncated", pa.bool_()))
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.full)
        self.rows = 0
        self.facts = {"tokens": 0, "truncated": 0, "supervised": 0}

    def write(self, tokens: Any) -> None:
        import pyarrow as pa

        from dataprep.tokenize.layout import IGNORE_INDEX, bool_array, string_array

        batch = tokens.to_arrow(self.schema)
        columns = [*batch.columns, string_array(tokens.splits), bool_array(tokens.truncated)]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.full))
        self.rows += len(tokens)
        self.facts["tokens"] += int(tokens.offsets[-1] - tokens.offsets[0])
        self.facts["truncated"] += int(np.count_nonzero(tokens.truncated))
        if "labels" in tokens.columns:
            self.facts["supervised"] += int(np.count_nonzero(tokens.columns["labels"] != IGNORE_INDEX))

    def close(self, ok: bool) -> None:
        self._writer.close()
        self._sink.close()


def tokens_from_arrow(table: Any, schema: Any) -> Any:
    """A :class:`TokenizedBatch` from rows of a :class:`TokensFile` (the layout's own columns, in its order)."""
    import pyarrow as pa

    from dataprep.tokenize.layout import TokenizedBatch, to_numpy

    table = table.combine_chunks()
    first = next(f.name for f in schema if pa.types.is_list(f.type))
    offsets = to_numpy(table.column(first).chunk(0).offsets).astype(np.int64) if table.num_rows else np.zeros(1, np.int64)
    offsets = offsets - offsets[0]
    columns = {}
    scalars = {}
    for f in schema:
        if f.name in ("id", "length"):
            continue
        column = table.column(f.name)
        if pa.types.is_list(f.type):
            columns[f.name] = to_numpy(column.chunk(0).flatten()) if table.num_rows else np.zeros(0)
        else:
            scalars[f.name] = column.to_pylist()
    return TokenizedBatch(ids=table.column("id").to_pylist(), splits=table.column("split").to_pylist(),
                          offsets=offsets, columns=columns, scalars=scalars,
                          truncated=to_numpy(table.column("truncated")))


def report_fact(report: StageReport) -> dict[str, Any]:
    return {"rows_in": report.rows_in, "rows_out": report.rows_out, "reasons": dict(sorted(report.reasons.items())),
            "extra": {k: v for k, v in report.extra.items() if isinstance(v, (str, int, float, bool))}}


# -- running ---------------------------------------------------------------------------------------------------

@dataclass
class StageLine:
    """One stage's summary over all sources."""

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    facts: dict[str, Any] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    per_source: list[str] = field(default_factory=list)

    def add(self, source: str, fact: dict[str, Any], reused: bool) -> None:
        self.rows_in += fact["rows_in"]
        self.rows_out += fact["rows_out"]
        self.reasons.update(fact["reasons"])
        (self.reused if reused else self.ran).append(source)
        self.per_source.append(f"{source} {fact['rows_in']:,}->{fact['rows_out']:,}")

    def text(self) -> str:
        if self.stage == "validate":  # files and records, not rows in and out
            return "validate: " + "; ".join(self.per_source) + (" [reused]" if self.reused and not self.ran else "")
        rejected = sum(self.reasons.values())
        line = f"{self.stage}: {self.rows_in:,} in, {self.rows_out:,} out, {rejected:,} rejected"
        if self.reasons:
            line += " (" + ", ".join(f"{r}: {n:,}" for r, n in sorted(self.reasons.items())) + ")"
        facts = [f"{k}: {v}" for k, v in self.facts.items()]
        if len(self.per_source) > 1:
            facts.append("sources: " + ", ".join(self.per_source))
        if facts:
            line += "; " + ", ".join(facts)
        if self.reused and not self.ran:
            line += " [reused]"
        elif self.reused:
            line += f" [reused for {', '.join(self.reused)}]"
        return line


@dataclass
class RunResult:
    lines: list[str]
    mixture: list[SourceMix]
    output: str
    up_to_date: bool = False
    manifest: Any = None
    report: str | None = None  # the stats stage's text report, for stdout


class Execution:
    """One run of a :class:`Plan`; :meth:`run` does it, ``echo`` receives the summary lines as they come."""

    def __init__(self, plan: Plan, echo: Callable[[str], None], progress: Callable[[str], Any] | None = None,
                 workers: int | None = None) -> None:
        self.plan = plan
        self.echo = echo
        self.progress = progress
        self.workers = workers  # None: a worker for the sources where it pays (offload.worth_a_worker)
        self.lines: dict[str, StageLine] = {}
        self.tokenize_reports: dict[int, dict[str, Any]] = {}
        self.started = time.perf_counter()
        # Records output without a mixture goes straight from the last stage into the output file, except where
        # that stage is reused as a whole (split's one entry): then it is read from the cache.
        recipe = plan.recipe
        self.streamed = not any(s.target for s in plan.sources) and not (
            recipe.split is not None and plan.cached("split", plan.split_key))
        self.output: Any = None

    # -- summary bookkeeping
    def line(self, stage: str) -> StageLine:
        return self.lines.setdefault(stage, StageLine(stage))

    def run(self) -> RunResult:
        """The recipe's output, then the stages on it: ``pack`` (the dataset into ``output``), ``stats``."""
        recipe = self.plan.recipe
        if recipe.pack is not None:
            from dataprep.manifest import MANIFEST
            from dataprep.paths import check_paths, check_replaceable_folder

            check_paths([s.path for s in self.plan.sources], None, None, replaced_folders=[recipe.output])
            check_replaceable_folder(recipe.output, MANIFEST)
        result = self.produce()
        if recipe.pack is not None:
            result = self.pack(result)
        if recipe.stats is not None:
            result = self.stats(result)
        return result

    def produce(self) -> RunResult:
        plan = self.plan
        recipe = plan.recipe
        where = plan.dataset_dir if plan.tokenizing is not None else recipe.output
        if plan.tokenizing is not None and not plan.force:
            from dataprep.manifest import read_manifest

            old = read_manifest(where)
            if old is not None and old.key == plan.output_key:
                text = f"run: {where} is up to date (key {plan.output_key[:12]}; --force to redo)"
                return RunResult([text], [], where, up_to_date=True, manifest=old)
        if plan.tokenizing is not None:
            from dataprep.manifest import MANIFEST
            from dataprep.paths import check_paths, check_replaceable_folder

            check_paths([s.path for s in plan.sources], None, None, replaced_folders=[where])
            check_replaceable_folder(where, MANIFEST)
        for source in plan.sources:
            if recipe.validate_ is not None:
                self.validate(source)
        if plan.tokenizing is None and self.streamed:
            from dataprep.sinks import RecordSink

            self.output = RecordSink(recipe.output)
        try:
            self.records_and_split()
        except BaseException:
            if self.output is not None:
                self.output.close(ok=False)
            raise
        if plan.tokenizing is not None:
            self.tokenize_from_split_cache()
            result = self.write_dataset()
        else:
            result = self.write_records()
        self.write_rejects()
        return result

    # -- validate
    def validate(self, source: Source) -> None:
        from dataprep.validate import validate_files

        plan, digest = self.plan, source.keys["validate"]
        line = self.line("validate")
        if plan.cached("validate", digest):
            summary = plan.cache.meta("validate", digest)["summary"]
            line.reused.append(source.name)
        else:
            max_errors = plan.recipe.validate_.max_errors
            report = validate_files([source.path], source.schema, max_errors=max_errors,
                                    input_format=source.input_format)
            summary = report.summary()
            if not report.valid:
                for text in report.text_lines():
                    self.echo(text)
                self.echo(summary)
                if report.unreadable:  # malformed input: exit 2, as dataprep validate says it
                    raise report.unreadable[0]
                raise DataprepError(f"{source.path}: does not match schema {source.schema!r}; nothing was written",
                                    hint="fix the data, or drop the validate stage")
            entry = plan.cache.new("validate", digest)
            entry.meta["summary"] = summary
            entry.commit()
            line.ran.append(source.name)
        line.per_source.append(summary.removeprefix("validate: "))

    # -- the record stages and split
    def records_and_split(self) -> None:
        plan = self.plan
        recipe = plan.recipe
        actions = {(stage, name): state for stage, name, state in plan.actions()}
        split_runner: Runner | None = None
        counter: PerSource | None = None
        if recipe.split is not None and actions[("split", "*")] == "run":
            from dataprep.split import SplitStage

            counter = PerSource(SplitStage(recipe.split.options()))
            entry = plan.cache.new("split", plan.split_key)  # type: ignore[arg-type]
            report = StageReport("split", str(entry.file(cachelib.REJECTS)))
            partition = Partition(counter.emitted, len(plan.sources), lambda i: self.split_tail(entry, i, counter))
            split_runner = Runner(counter, partition, report)
            split_sink = Committed(split_runner, entry, on_close=counter.stage.close)  # type: ignore[attr-defined]
        elif recipe.split is not None:
            self.summarise_cached("split", "*", plan.split_key)  # type: ignore[arg-type]
        try:
            for source in plan.sources:
                self.source_chain(source, actions, Feed(split_runner, counter, source.index)
                                  if split_runner is not None and counter is not None else None)
        except BaseException:
            if split_runner is not None:
                split_sink.close(ok=False)
            raise
        if split_runner is not None:
            split_sink.close(ok=True)
            self.line("split").add("*", report_fact(split_runner.report), reused=False)
            self.line("split").per_source.clear()
            self.line("split").facts.update(_split_facts(split_runner.report))

    def source_chain(self, source: Source, actions: dict[tuple[str, str], str], feed: Sink | None) -> None:
        """Run the record stages this source needs, from the latest cached point, into ``feed`` (split) or its
        tail (tokenize, when there is no split)."""
        plan = self.plan
        states = [actions[(stage, source.name)] for stage in plan.stages]
        for stage, state in zip(plan.stages, states, strict=True):
            if state == "reuse":
                self.summarise_cached(stage, source.name, source.keys[stage])
        if "run" not in states and not (feed is not None or (plan.recipe.split is None and self.tail_needed(source))):
            return
        last_reused = max((i for i, s in enumerate(states) if s == "reuse"), default=-1)
        tail = feed if feed is not None else self.rows_tail(source)
        bar = self.progress(source.name) if self.progress is not None else None
        stages = plan.stages[last_reused + 1:]
        tokenizes = plan.tokenizing is not None and self.tail_needed(source)
        offload = stages[:1] == ["normalize"] and os.path.isfile(source.path) and (
            bool(self.workers) if self.workers is not None else _worth_a_worker(source, tokenizes))
        head, first_report, normalize = self.chain(source, stages, tail, bar, offload)
        if last_reused >= 0:
            stage = plan.stages[last_reused]
            batches: Iterable[Batch] = plan.cache.read_rows(stage, source.keys[stage], split=source.split)
        else:
            first_report = first_report or _report_of(head)
            on_bad = first_report.bad_input if first_report is not None and plan.recipe.on_error == "reject" else None
            if offload:
                from dataprep.offload import read_processed

                batches = read_processed(source.path, source.input_format, source.split, normalize, on_bad)
            else:
                batches = _read(source, on_bad)
        try:
            pump(batches, head)
        finally:
            if isinstance(batches, Generator):  # a failure downstream stops the reader (and its worker) now
                batches.close()
            if bar is not None:
                bar.close()

    def tail_needed(self, source: Source) -> bool:
        if self.plan.tokenizing is None:
            return True
        return not self.plan.cached("tokenize", source.keys["tokenize"])

    def chain(self, source: Source, stages: list[str], tail: Sink | None, bar: Any = None,
              offload: bool = False) -> tuple[Sink, StageReport | None, Stage | None]:
        """Runners for ``stages`` of ``source``, each teeing into its cache entry, ending in ``tail``; ``bar``
        counts the rows the first one reads. ``offload``: normalize's work is done where the source is read (a
        worker process, :mod:`dataprep.offload`); its stage object is returned to be handed there."""
        sink: Sink = tail if tail is not None else Tee()
        first_report = None
        normalize: Stage | None = None
        for stage in reversed(stages):
            entry = self.plan.cache.new(stage, source.keys[stage])
            report = StageReport(stage, str(entry.file(cachelib.REJECTS)))
            obj = self.stage_object(stage, source)
            before = self.plan.stages.index(stage) - 1
            store = None
            if self.keep_rows(stage):
                if stage in PASS_THROUGH and before >= 0 and self.keep_rows(self.plan.stages[before]):
                    # its kept rows are rows of the entry before it: named by number, not stored again
                    obj = tracked = Tracked(obj)
                    entry.meta["rows_from"] = [self.plan.stages[before], source.keys[self.plan.stages[before]]]
                    store = RecordsFile(entry.file(cachelib.ROWS), tracked)
                else:
                    store = RecordsFile(entry.file(cachelib.ROWS))
            runs: Stage = obj
            if stage == "normalize" and offload:
                from dataprep.offload import Offloaded

                runs, normalize = Offloaded(obj), obj
            runner = Runner(runs, Tee(store, sink), report, bar if stage == stages[0] else None)
            sink = Committed(runner, entry, on_close=self._summarise_after(stage, source, runner, obj))
            first_report = report
        return sink, first_report, normalize

    def keep_rows(self, stage: str) -> bool:
        """Whether a stage's rows go in its cache entry: always in a kept cache; in a throw-away one only where
        the output is gathered from them (records output)."""
        if self.plan.cache.persistent:
            return True
        if self.plan.tokenizing is not None or self.streamed:
            return False
        last = "split" if self.plan.recipe.split is not None else (self.plan.stages or [None])[-1]
        return stage == last

    def stage_object(self, stage: str, source: Source) -> Stage:
        recipe = self.plan.recipe
        if stage == "normalize":
            from dataprep.normalize import NormalizeStage

            detected: list[str] = []
            obj = NormalizeStage(source.normalize, detected.append)  # type: ignore[arg-type]
            obj._detected = detected  # type: ignore[attr-defined]
            return obj
        if stage == "filter":
            from dataprep.filter import FilterStage

            return FilterStage(recipe.filter.options())
        raise AssertionError(stage)

    def _summarise_after(self, stage: str, source: Source, runner: Runner, obj: Any) -> Callable[[], None]:
        def done() -> None:
            detected = getattr(obj, "_detected", None)
            if detected:
                runner.report.extra["format"] = detected[0].rsplit(" ", 1)[-1]
            if runner.report.rows_in or runner.report.rows_out or runner.report.reasons:
                self.line(stage).add(source.name, report_fact(runner.report), reused=False)
                if "format" in runner.report.extra and len(self.plan.sources) == 1:
                    self.line(stage).facts["format"] = runner.report.extra["format"]
        return done

    def summarise_cached(self, stage: str, name: str, digest: str) -> None:
        fact = self.plan.cache.meta(stage, digest)["report"]
        self.line(stage).add(name, fact, reused=True)
        if stage == "split":
            self.line("split").per_source.clear()
            self.line("split").facts.update({k: v for k, v in fact["extra"].items()})
        if stage == "normalize" and "format" in fact["extra"] and len(self.plan.sources) == 1:
            self.line(stage).facts["format"] = fact["extra"]["format"]

    def rows_tail(self, source: Source) -> Sink | None:
        """Where a source's rows go after its record stages when there is no split: tokenize, or the output."""
        if self.plan.tokenizing is None:
            return _Forward(self.output) if self.output is not None else None
        return self.tokenize_sink(source)

    def split_tail(self, entry: Entry, index: int, counter: PerSource) -> Sink:
        """Split's rows of source ``index``: into the split entry's file for that source, and on to tokenize.

        Where split took every row of the source from the kept entry of the stage before it (it rejected none),
        the file stores each row as derived from that entry's row (:class:`RecordsFile` ``derived``)."""
        source = self.plan.sources[index]
        store = None
        if self.keep_rows("split"):
            before = self.plan.stages[-1] if self.plan.stages else None
            derived = before is not None and self.keep_rows(before) and counter.rejected[index] == 0
            if derived:
                entry.meta.setdefault("sources_from", {})[str(index)] = [before, source.keys[before]]
            store = RecordsFile(entry.file(cachelib.split_rows(index)), derived=derived)
        if self.plan.tokenizing is None:
            return Tee(store, _Forward(self.output) if self.output is not None else None)
        return Tee(store, self.tokenize_sink(source) if self.tail_needed(source) else None)

    def tokenize_sink(self, source: Source) -> Sink:
        from dataprep.tokenize.job import TokenizeStage

        tok = self.plan.tokenizing
        assert tok is not None
        entry = self.plan.cache.new("tokenize", source.keys["tokenize"])
        report = StageReport("tokenize", str(entry.file(cachelib.REJECTS)))
        stage = TokenizeStage(tok.encoder)
        tokens = TokensFile(entry.file(cachelib.TOKENS), tok.encoder.schema)
        runner = Runner(stage, tokens, report)

        def done() -> None:
            stage.close()
            self.tokenize_reports[source.index] = report_fact(report)
            entry.meta["facts"] = tokens.facts

        return Committed(runner, entry, on_close=done)

    def tokenize_from_split_cache(self) -> None:
        """Sources whose tokenize entry is missing while split's is cached: tokenize their cached split rows."""
        plan = self.plan
        if plan.recipe.split is None or not plan.cached("split", plan.split_key):
            return
        for source in plan.sources:
            if self.tail_needed(source):
                pump(plan.cache.read_split(plan.split_key, source.index), self.tokenize_sink(source))  # type: ignore[arg-type]

    # -- output
    def write_dataset(self) -> RunResult:
        import pyarrow as pa

        from dataprep.emit import schema_for as emit_schema
        from dataprep.outdir import OutputDir
        from dataprep.tokenize.job import DatasetSink, dataset_manifest, finish_dataset
        from dataprep.tokenize.layout import to_numpy

        plan = self.plan
        tok = plan.tokenizing
        assert tok is not None
        recipe = plan.recipe
        line = self.line("tokenize")
        tables = []
        for source in plan.sources:
            digest = source.keys["tokenize"]
            if source.index in self.tokenize_reports:
                line.add(source.name, self.tokenize_reports[source.index], reused=False)
            else:
                line.add(source.name, plan.cache.meta("tokenize", digest)["report"], reused=True)
            # memory-mapped: the table's buffers keep the mapping alive, and only the rows taken are copied
            tables.append(pa.ipc.open_file(pa.memory_map(str(plan.cache.path("tokenize", digest) / cachelib.TOKENS)))
                          .read_all())
        if "label_text" in tok.encoder.schema.names:
            import pyarrow.compute as pc

            for table in tables:
                tok.encoder.seen_labels.update(pc.unique(table.column("label_text")).to_pylist())
        rows = [SourceRows(s.name, t.column("id").to_pylist(), t.column("split").to_pylist(),
                           to_numpy(t.column("length")).astype(np.int64), s.target)
                for s, t in zip(plan.sources, tables, strict=True)]
        mixture = mix(rows, recipe.mix.seed, recipe.mix.rows)
        report = StageReport("tokenize")
        report.rows_in, report.reasons = line.rows_in, Counter(line.reasons)
        report.rows_out = sum(m.rows for m in mixture)
        inputs = [{"name": s.path, "source": s.name, "split": s.split, "bytes": s.bytes, "sha256": s.sha256}
                  for s in plan.sources]
        manifest = dataset_manifest(tok.job, tok.tokenizer, tok.encoder, key=plan.output_key,
                                    tokenizer_sha256=tok.tokenizer_sha256, template_facts=tok.template,
                                    inputs=inputs)
        manifest.mixture = {"seed": recipe.mix.seed, "sources": {m.name: m.fact() for m in mixture}}
        schema = emit_schema(tok.job.emit_for, tok.encoder.schema) if tok.job.task == "causal" else tok.encoder.schema
        sink = DatasetSink(OutputDir(plan.dataset_dir, schema), tok.encoder, tok.job.emit_for)
        sink.finalize = lambda s: finish_dataset(s, manifest, tok.tokenizer, report, tok.job)
        ok = False
        try:
            for table, m in zip(tables, mixture, strict=True):
                size = tok.job.batch_size
                if bool((m.counts == 1).all()):  # every row once: no copy to gather
                    parts: Iterable[Any] = (pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=size))
                else:
                    take = np.repeat(np.arange(table.num_rows), m.counts)
                    parts = (table.take(pa.array(take[i:i + size])) for i in range(0, len(take), size))
                for part in parts:
                    sink.write(tokens_from_arrow(part, tok.encoder.schema))
            ok = True
        finally:
            sink.close(ok=ok)
        self._tokenize_facts(tables)
        return self.finish(mixture, manifest)

    def _tokenize_facts(self, tables: list[Any]) -> None:
        """The tokenize line describes the stage (every distinct row once); the mix and run lines the output.

        The counts come from each source's entry (:class:`TokensFile` keeps them); an entry written before it did
        is counted from its table.
        """
        import pyarrow.compute as pc

        from dataprep.tokenize.layout import IGNORE_INDEX

        has_labels = "labels" in tables[0].column_names and pa_is_list(tables[0].column("labels"))
        total = {"tokens": 0, "truncated": 0, "supervised": 0}
        for source, table in zip(self.plan.sources, tables, strict=True):
            facts = self.plan.cache.meta("tokenize", source.keys["tokenize"]).get("facts")
            if facts is None:
                facts = {"tokens": int(pc.sum(table.column("length")).as_py() or 0),
                         "truncated": int(pc.sum(table.column("truncated").cast("int64")).as_py() or 0),
                         "supervised": int(pc.sum(pc.not_equal(pc.list_flatten(table.column("labels")), IGNORE_INDEX)
                                                  .cast("int64")).as_py() or 0) if has_labels else 0}
            for name in total:
                total[name] += facts[name]
        line = self.line("tokenize")
        line.facts["truncated"] = total["truncated"]
        line.facts["tokens"] = f"{total['tokens']:,}"
        if has_labels and total["tokens"]:
            line.facts["supervised"] = f"{100 * total['supervised'] / total['tokens']:.1f}%"

    def write_records(self) -> RunResult:
        from dataprep.sinks import RecordSink

        plan = self.plan
        recipe = plan.recipe
        stage = "split" if recipe.split is not None else (plan.stages or [None])[-1]
        if stage is None:
            raise DataprepError("a recipe without tokenize needs a stage to write (normalize, filter or split)")

        def rows_of(source: Source) -> Iterator[Batch]:
            if stage == "split":
                return plan.cache.read_split(plan.split_key, source.index)  # type: ignore[arg-type]
            return plan.cache.read_rows(stage, source.keys[stage])

        if self.output is not None:  # streamed during the run
            self.output.close(ok=True)
            return self.finish([], None)
        targets = any(s.target is not None for s in plan.sources)
        counts: list[np.ndarray | None] = [None] * len(plan.sources)
        mixture: list[SourceMix] = []
        if targets:
            rows = []
            for source in plan.sources:
                ids: list[str] = []
                splits: list[str] = []
                for batch in rows_of(source):
                    ids += [str(r.get("id", "")) for r in batch.records]
                    splits += [str(r.get("split") or source.split or "train") for r in batch.records]
                rows.append(SourceRows(source.name, ids, splits, None, source.target))
            mixture = mix(rows, recipe.mix.seed, recipe.mix.rows)
            counts = [m.counts for m in mixture]
        sink = RecordSink(recipe.output)
        ok = False
        try:
            for source, count in zip(plan.sources, counts, strict=True):
                seen = 0
                for batch in rows_of(source):
                    if count is not None:
                        local = count[seen:seen + len(batch)]
                        seen += len(batch)
                        batch = batch.take(list(np.repeat(np.arange(len(batch)), local)))
                    sink.write(batch)
            ok = True
        finally:
            sink.close(ok=ok)
        return self.finish(mixture, None)

    def finish(self, mixture: list[SourceMix], manifest: Any) -> RunResult:
        plan = self.plan
        lines = [self.lines[s].text() for s in ("validate", *plan.stages, "split", "tokenize") if s in self.lines]
        if mixture and (len(mixture) > 1 or any(m.target for m in mixture)):
            lines.append("mix: " + "; ".join(_mix_text(m) for m in mixture))
        elapsed = time.perf_counter() - self.started
        reused = [s for s in ("validate", *plan.stages, "split", "tokenize")
                  if s in self.lines and self.lines[s].reused]
        where = plan.dataset_dir if plan.tokenizing is not None else plan.recipe.output
        if manifest is not None:
            splits = " ".join(f"{name}={s.rows:,}" for name, s in manifest.splits.items())
            lines.append(f"run: wrote {where} ({splits}; {manifest.totals.tokens:,} tokens) in {elapsed:.1f}s"
                         + (f"; reused: {', '.join(reused)}" if reused else ""))
        else:
            lines.append(f"run: wrote {where} in {elapsed:.1f}s" + (f"; reused: {', '.join(reused)}" if reused else ""))
        return RunResult(lines, mixture, where, manifest=manifest)

    # -- the stages on the output
    def pack(self, made: RunResult) -> RunResult:
        """``pack``: the dataset folder (in the cache) packed into ``output``, with pack's own up-to-date check."""
        from dataprep.pack import PackJob, pack_to_disk

        plan = self.plan
        recipe = plan.recipe
        rejects = str(Path(recipe.rejects) / "pack.jsonl") if recipe.rejects is not None else None
        packed = pack_to_disk(PackJob(plan.dataset_dir, recipe.output, recipe.pack.max_length, force=plan.force,
                                      rejects=rejects, emit_for=recipe.pack.emit_for))
        # the dataset's lines, less its "run: wrote" line: the run wrote the packed folder
        lines = [f"tokenize: {plan.dataset_dir} [reused]"] if made.up_to_date else made.lines[:-1]
        if packed.up_to_date:
            lines = [*lines, packed.summary.replace("pack: ", "run: ", 1)]
        else:
            packing = packed.manifest.packing or {}
            lines += [packed.summary, f"run: wrote {recipe.output} ({packing.get('packs', 0):,} packs of at most "
                      f"{recipe.pack.max_length:,} tokens, efficiency {100 * packing.get('efficiency', 0):.1f}%) "
                      f"in {time.perf_counter() - self.started:.1f}s"]
        return RunResult(lines, made.mixture, recipe.output, up_to_date=made.up_to_date and packed.up_to_date,
                         manifest=packed.manifest)

    def stats(self, made: RunResult) -> RunResult:
        """``stats``: the output described; the report goes where the section says, or as text on stdout."""
        from dataprep.stats import compute_stats
        from dataprep.stats.report import render_text

        section = self.plan.recipe.stats
        report = compute_stats(made.output, leakage=section.leakage)
        written = []
        if section.html:
            from dataprep.stats.page import write_html

            write_html(report, section.html)
            written.append(section.html)
        if section.png:
            from dataprep.stats.plots import write_pngs

            written.append(f"{len(write_pngs(report, section.png))} PNGs in {section.png}")
        if section.json_:
            from dataprep.io import AtomicFile

            with AtomicFile(section.json_) as out:
                out.handle.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
            written.append(section.json_)
        text = None if written else render_text(report)
        line = f"stats: {report['rows']:,} rows ({report['input']['kind']})"
        return dataclasses.replace(made, lines=[*made.lines, line + (f"; wrote {', '.join(written)}" if written
                                                                     else "; report on stdout")], report=text)

    def write_rejects(self) -> None:
        """``rejects: DIR``: one file per stage, every source's rejects in source order (cached ones too)."""
        from dataprep.io import AtomicFile

        plan = self.plan
        folder = plan.recipe.rejects
        if folder is None:
            return
        entries: dict[str, list[Path]] = {}
        for source in plan.sources:
            for stage in plan.stages:
                entries.setdefault(stage, []).append(plan.cache.path(stage, source.keys[stage]))
        if plan.recipe.split is not None:
            entries["split"] = [plan.cache.path("split", plan.split_key)]  # type: ignore[arg-type]
        if plan.tokenizing is not None:
            entries["tokenize"] = [plan.cache.path("tokenize", s.keys["tokenize"]) for s in plan.sources]
        for stage, paths in entries.items():
            with AtomicFile(Path(folder) / f"{stage}.jsonl") as out:
                for path in paths:
                    rejects = path / cachelib.REJECTS
                    if rejects.is_file():
                        out.handle.write(rejects.read_text(encoding="utf-8"))


class _Forward:
    """Rows into a sink that outlives this source (the output file); closing is its owner's business."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, batch: Batch) -> None:
        self.sink.write(batch)

    def close(self, ok: bool) -> None:
        pass


def _report_of(sink: Any) -> StageReport | None:
    """The report of the first stage a sink runs (a source without record stages: split's or tokenize's)."""
    if isinstance(sink, Committed):
        return sink.runner.report
    if isinstance(sink, Feed):
        return sink.shared.report
    return None


def _split_facts(report: StageReport) -> dict[str, Any]:
    return {k: v for k, v in report.extra.items() if isinstance(v, (str, int, float))}


def _mix_text(m: SourceMix) -> str:
    text = f"{m.name} {m.rows:,} rows from {m.available:,}"
    if m.tokens is not None:
        text += f", {m.tokens:,} tokens"
    if m.target is not None:
        kind, value = m.target
        text += f" ({kind} {value:g})" if kind == "weight" else f" ({kind} target {int(value):,})"
    return text


def pa_is_list(column: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(column.type)


def _read(source: Source, on_bad: Any) -> Iterator[Batch]:
    for batch in read_batches(source.path, fmt=source.input_format, on_bad=on_bad):
        batch.split = source.split
        yield batch


def execute(plan: Plan, echo: Callable[[str], None] = lambda _: None,
            progress: Callable[[str], Any] | None = None, workers: int | None = None) -> RunResult:
    """Run the plan; ``echo`` prints validation errors, ``progress(source_name)`` may give a bar per source read;
    ``workers``: processes that read and normalize each source (0: this one; None: :func:`offload.worth_a_worker`).
    The cache, when temporary, is removed afterwards."""
    try:
        return Execution(plan, echo, progress, workers).run()
    finally:
        plan.cache.close()


def _worth_a_worker(source: Source, tokenizes: bool) -> bool:
    from dataprep.offload import worth_a_worker

    return worth_a_worker(source.path, source.input_format, source.normalize, tokenizes)
