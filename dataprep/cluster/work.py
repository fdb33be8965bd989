"""The per-shard work of a cluster run, as callable classes Ray Data runs with ``map_batches`` (no ray import).

Each class is built once per worker (actor) and then called with a pyarrow table of shard descriptors; what it
builds in ``__init__`` (the filter's evaluation index, the tokenizer, the template, the encoder) is built once per
actor, never captured in a closure. Two passes read each shard:

* :class:`Scan` reads the shard with the project's readers and runs the stage objects that look at one row at a
  time (normalize, filter's row rules and decontamination), then returns only what the decisions over many rows
  need: each surviving row's key, id, content hash, MinHash signature and band keys, stratum and split hashes.
* :class:`Produce` reads the shard again, runs the same stages, applies the decisions made over the whole input
  (duplicates, each row's split), tokenizes with the tokenize stage, and writes the shard's tokenized rows and
  its rejects as files. It returns the small columns mixing and the manifest need, and the stages' counts.

Reading twice costs a parse and a normalize per row and saves moving every record through a shuffle.
:class:`WriteParts` then writes each shard's rows, as many times as the mixture says, into per-split Parquet parts
with names taken from the shard (``part-SSSSS-NNNNN.parquet``), so the names and bytes never depend on the cluster.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.cluster.decide import SHARD_SHIFT
from dataprep.cluster.job import ClusterJob
from dataprep.errors import DataprepError, InputError, UsageProblem
from dataprep.io import Batch, dumps
from dataprep.shards import Shard, filesystem, read_shard
from dataprep.stage import Rejected, canonical_part, survivors

READ_BATCH = 2048
REJECT_SCHEMA = pa.schema([("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
                           ("location", pa.string()), ("record", pa.string())])
ERRORS = {cls.__name__: cls for cls in (DataprepError, InputError, UsageProblem)}


def shard_from(row: dict[str, Any]) -> Shard:
    return Shard(**{k: row[k] for k in Shard.__dataclass_fields__})


def part_name(source: int, shard: int, suffix: str = "parquet") -> str:
    return f"part-{source:05d}-{shard:05d}.{suffix}"


def error_fact(exc: DataprepError) -> str:
    """A user error met on a worker, as text the driver turns back into the same error (exit status kept)."""
    kind = type(exc).__name__ if type(exc).__name__ in ERRORS else "DataprepError"
    return json.dumps({"kind": kind, "message": str(exc), "hint": exc.hint,
                       "exit_code": getattr(exc, "exit_code", 1)})


def rebuild_error(text: str) -> DataprepError:
    fact = json.loads(text)
    cls = ERRORS[fact["kind"]]
    exc = cls.__new__(cls)
    Exception.__init__(exc, fact["message"])
    exc.hint = fact["hint"]
    return exc


@dataclass
class Tally:
    """One shard's stage counts (the numbers :class:`dataprep.stage.StageReport` keeps) and, when asked for, its
    rejects as rows of :data:`REJECT_SCHEMA`."""

    keep: bool
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def stage(self, name: str) -> dict[str, Any]:
        return self.counts.setdefault(name, {"rows_in": 0, "rows_out": 0, "created": 0, "reasons": Counter()})

    def reject(self, stage: str, record: Any, reason: str, detail: str, location: str | None) -> None:
        self.stage(stage)["reasons"][reason] += 1
        if self.keep:
            self.rows.append({"stage": stage, "reason": reason, "detail": detail, "location": location,
                              "record": dumps(record) if isinstance(record, dict) else dumps({"raw": record})})

    def settle(self, stage: str, batch: Batch, kept: int, rejected: list[Rejected]) -> None:
        counts = self.stage(stage)
        counts["rows_in"] += len(batch)
        counts["rows_out"] += kept
        for item in rejected:
            location = item.location
            if location is None and item.index is not None:
                location = batch.location(item.index)
            self.reject(stage, item.record, item.reason, item.detail, location)

    def fact(self) -> dict[str, Any]:
        return {name: {**c, "reasons": dict(c["reasons"])} for name, c in self.counts.items()}


class RecordStages:
    """The stages a shard's rows pass before any decision over many rows: normalize, then filter's row rules
    and decontamination (its duplicate rules are decided by the cluster, :mod:`dataprep.cluster.decide`)."""

    def __init__(self, job: ClusterJob) -> None:
        from dataprep.filter import FilterStage

        self.job = job
        self.filter = FilterStage(replace(job.filter, dedup=None)) if job.filter is not None else None

    def run(self, shard: Shard, tally: Tally) -> Iterator[Batch]:
        from dataprep.normalize import NormalizeStage

        job = self.job
        first = job.stages[0]
        spec = job.sources[shard.source]

        def on_bad(location: str, reason: str, detail: str, raw: str) -> None:
            tally.stage(first)["rows_in"] += 1
            tally.reject(first, raw, reason, detail, location)

        normalize = NormalizeStage(spec.normalize) if spec.normalize is not None else None
        for batch in read_shard(shard, batch_size=READ_BATCH, on_bad=on_bad if job.on_error == "reject" else None):
            if normalize is not None:
                kept, rejected = normalize.process(batch)
                tally.settle("normalize", batch, len(kept), rejected)
                batch = kept
            if self.filter is not None and len(batch):
                kept, rejected = self.filter.process(batch)
                if self.job.filter is not None and self.job.filter.dedup:  # its rows_out waits for the dedup
                    tally.settle("filter", batch, 0, rejected)
                else:
                    tally.settle("filter", batch, len(kept), rejected)
                batch = kept
            if len(batch):
                yield batch


class Scan:
    """Pass 1 over a shard: the keys the cluster decides duplicates and splits with (see the module)."""

    def __init__(self, job: ClusterJob) -> None:
        self.job = job
        self.stages = RecordStages(job)
        self.near = None
        if job.filter is not None and job.filter.dedup == "near":
            from dataprep.dedup import lsh_params

            self.near = lsh_params(job.filter.threshold)

    def __call__(self, shards: pa.Table) -> pa.Table:
        parts = [self.scan(shard_from(row)) for row in shards.to_pylist()]
        return pa.concat_tables(parts) if parts else scan_schema().empty_table()

    def scan(self, shard: Shard) -> pa.Table:
        try:
            columns = self._columns(shard)
        except DataprepError as exc:
            return error_table(shard, exc)
        return pa.table(columns, schema=scan_schema())

    def _columns(self, shard: Shard) -> dict[str, Any]:
        from dataprep.filter import content_key

        job = self.job
        out: dict[str, list[Any]] = {name: [] for name in scan_schema().names}
        for batch in self.stages.run(shard, Tally(keep=False)):
            records, indexes = _split_part(batch, job)
            n = len(records)
            out["pos"] += [(shard.index << SHARD_SHIFT) | i for i in indexes]
            out["id"] += [str(r.get("id", "")) for r in records]
            dedup = job.filter is not None and job.filter.dedup
            out["chash"] += [content_key(r) for r in records] if dedup else [None] * n
            if self.near is not None and n:
                from dataprep.dedup import band_keys, signatures
                from dataprep.shingles import conversation_text

                sigs, valid = signatures([conversation_text(r) for r in records])
                keys = band_keys(sigs, *self.near)
                sig16 = sigs.astype(np.uint16)
                out["valid"] += valid.tolist()
                out["sig"] += [sig16[i].tobytes() for i in range(n)]
                out["bands"] += [keys[i].tolist() for i in range(n)]
            else:
                out["valid"] += [False] * n
                out["sig"] += [None] * n
                out["bands"] += [None] * n
            strata, first, second = _split_columns(records, job)
            out["stratum"] += strata
            out["primary"] += first
            out["tie"] += second
        out["source"] = [shard.source] * len(out["pos"])
        out["error"] = [None] * len(out["pos"])
        return out


def scan_schema() -> pa.Schema:
    return pa.schema([("source", pa.int32()), ("pos", pa.int64()), ("id", pa.string()), ("chash", pa.binary()),
                      ("valid", pa.bool_()), ("sig", pa.binary()), ("bands", pa.list_(pa.uint64())),
                      ("stratum", pa.string()), ("primary", pa.uint64()), ("tie", pa.uint64()),
                      ("error", pa.string())])


def error_table(shard: Shard, exc: DataprepError) -> pa.Table:
    row = {name: [None] for name in scan_schema().names}
    row.update(source=[shard.source], pos=[shard.index << SHARD_SHIFT], error=[error_fact(exc)])
    return pa.table(row, schema=scan_schema())


def _split_part(batch: Batch, job: ClusterJob) -> tuple[list[Any], list[int]]:
    """The records and their indexes in the shard (what the scan keys): read batches keep them through the
    stages (:meth:`dataprep.io.Batch.take`)."""
    return batch.records, [int(i) for i in batch.indexes]


def _split_columns(records: list[Any], job: ClusterJob) -> tuple[list[str | None], list[int | None], list[int | None]]:
    """Each row's stratum (JSON of its key; None when split rejects the row) and its two ordering hashes."""
    if job.split is None:
        n = len(records)
        return [None] * n, [None] * n, [None] * n
    from dataprep.records import RecordError, check_canonical, looks_raw
    from dataprep.split import MissingField, _hash64, split_keys

    raw = looks_raw(records)
    strata: list[str | None] = []
    first: list[int | None] = []
    second: list[int | None] = []
    for record in records:
        try:
            if raw:
                raise RecordError("", "")
            check_canonical(record)
            _, key, primary, line = split_keys(record, job.split)
        except (RecordError, MissingField):
            strata.append(None)
            first.append(None)
            second.append(None)
            continue
        strata.append(json.dumps(list(key), ensure_ascii=False))
        first.append(int.from_bytes(primary, "big"))
        second.append(int.from_bytes(_hash64(line), "big"))
    return strata, first, second


def stratum_key(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


@dataclass
class Decisions:
    """What the cluster decided for one shard's rows, by index: filter rejects (duplicates) and held-out splits."""

    drop: dict[int, tuple[str, str]] = field(default_factory=dict)
    held: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"drop": [[i, r, d] for i, (r, d) in self.drop.items()],
                           "held": [[i, s] for i, s in self.held.items()]})

    @classmethod
    def from_json(cls, text: str | None) -> Decisions:
        if not text:
            return cls()
        data = json.loads(text)
        return cls({i: (r, d) for i, r, d in data["drop"]}, {i: s for i, s in data["held"]})


def worker_env(cpus: int) -> dict[str, str]:
    """Environment of a tokenize worker: the Rust tokenizer's threads match the CPUs the worker asked for."""
    threads = str(max(1, cpus))
    return {"TOKENIZERS_PARALLELISM": "true" if cpus > 1 else "false", "RAYON_NUM_THREADS": threads,
            "RAYON_RS_NUM_CPUS": threads}


class Produce:
    """Pass 2 over a shard: stages, decisions, tokenize; writes ``tokens/part-*.arrow`` and rejects parts."""

    def __init__(self, job: ClusterJob, work: str) -> None:
        from dataprep.tokenize.job import encoder_for
        from dataprep.tokenizer_io import open_tokenizer

        for name, value in worker_env(job.settings.cpus_per_worker).items():
            os.environ.setdefault(name, value)
        self.job = job
        self.work = work
        self.stages = RecordStages(job)
        self.tokenizer = open_tokenizer(job.tokenize.tokenizer, trust_remote_code=job.tokenize.trust_remote_code)
        self.encoder, _ = encoder_for(job.tokenize, self.tokenizer)

    def __call__(self, shards: pa.Table) -> pa.Table:
        parts = [self.produce(row) for row in shards.to_pylist()]
        return pa.concat_tables(parts) if parts else produce_schema().empty_table()

    def produce(self, row: dict[str, Any]) -> pa.Table:
        shard = shard_from(row)
        try:
            return self._produce(shard, Decisions.from_json(row.get("decisions")))
        except DataprepError as exc:
            out = {name: [None] for name in produce_schema().names}
            out.update(source=[shard.source], shard=[shard.index], n=[-1], error=[error_fact(exc)])
            return pa.table(out, schema=produce_schema())

    def _produce(self, shard: Shard, decisions: Decisions) -> pa.Table:
        from dataprep.tokenize.job import TokenizeStage

        job = self.job
        tally = Tally(keep=job.rejects is not None)
        before = _counters(self.encoder)
        stage = TokenizeStage(self.encoder)
        rows = _Rows()
        fs, root = filesystem(self.work)
        schema = tokens_schema(self.encoder.schema)
        # written as they come: a worker holds one batch of tokens, not the shard's
        with fs.open_output_stream(f"{root}/tokens/{part_name(shard.source, shard.index, 'arrow')}") as sink, \
                pa.ipc.new_file(sink, schema) as writer:
            try:
                for batch in self.stages.run(shard, tally):
                    batch = self._decide(batch, decisions, tally)
                    if not len(batch):
                        continue
                    kept, rejected = stage.process(batch)
                    self._tokenized(batch, kept, rejected, tally, rows, writer)
                for kept, rejected in stage.finish():
                    self._tokenized(None, kept, rejected, tally, rows, writer)
            finally:
                stage.close()
        after = _counters(self.encoder)
        tally.stage("tokenize")["created"] = after["created"] - before["created"]
        if job.rejects is not None:
            write_rejects(job.rejects, shard, tally.rows)
        facts = {"stages": tally.fact(), "describe": _delta(before["describe"], after["describe"])}
        return rows.table(shard, facts)

    def _decide(self, batch: Batch, decisions: Decisions, tally: Tally) -> Batch:
        """Filter's duplicate decisions, then split (its row checks here, the held-out rows from the cluster)."""
        job = self.job
        if job.filter is not None and job.filter.dedup:
            indexes = [int(i) for i in batch.indexes]
            rejected = [Rejected(batch.records[k], *decisions.drop[i], index=k)
                        for k, i in enumerate(indexes) if i in decisions.drop]
            kept = [r for k, r in enumerate(batch.records) if indexes[k] not in decisions.drop]
            tally.stage("filter")["rows_out"] += len(kept)  # its rows in and row-rule rejects: RecordStages
            for item in rejected:
                tally.reject("filter", item.record, item.reason, item.detail, batch.location(item.index))
            batch = survivors(batch, kept, rejected) if rejected else batch
        if job.split is None or not len(batch):
            return batch
        from dataprep.records import ordered
        from dataprep.split import MissingField, split_keys

        part, positions, malformed = canonical_part(batch)
        rows: list[Any] = []
        taken: list[int] = []
        rejected = list(malformed)
        for k, record in enumerate(part.records):
            try:
                _, _, _, line = split_keys(record, job.split)
            except MissingField as exc:
                missing = dict(record)
                missing.pop("split", None)
                from dataprep.split import len_bucket

                missing["len_bucket"] = len_bucket(missing, job.split.bucket_by, job.split.bucket_width,
                                                   job.split.max_bucket)
                rejected.append(Rejected(missing, "missing_stratify_field", f"no value for field {exc.args[0]!r}",
                                         index=positions[k]))
                continue
            out = json.loads(line)
            out["split"] = decisions.held.get(int(part.indexes[k]), "train")
            rows.append(ordered(out))
            taken.append(positions[k])
        tally.settle("split", batch, len(rows), rejected)
        result = batch.take(taken, rows)
        result.split = None
        return result

    def _tokenized(self, batch: Batch | None, kept: Any, rejected: list[Rejected], tally: Tally, rows: _Rows,
                   writer: Any) -> None:
        counts = tally.stage("tokenize")
        if batch is not None:
            counts["rows_in"] += len(batch)
        counts["rows_out"] += len(kept)
        for item in rejected:
            tally.reject("tokenize", item.record, item.reason, item.detail, item.location)
        if len(kept):
            arrow = kept.to_arrow(self.encoder.schema)
            writer.write_batch(pa.RecordBatch.from_arrays(
                [*arrow.columns, pa.array(kept.splits, pa.string()), pa.array(kept.truncated, pa.bool_())],
                schema=tokens_schema(self.encoder.schema)))
            rows.add(kept)


def tokens_schema(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("split", pa.string())).append(pa.field("truncated", pa.bool_()))


def produce_schema() -> pa.Schema:
    return pa.schema([("source", pa.int32()), ("shard", pa.int32()), ("n", pa.int64()), ("id", pa.string()),
                      ("split", pa.string()), ("length", pa.int64()), ("truncated", pa.bool_()),
                      ("supervised", pa.int64()), ("facts", pa.string()), ("error", pa.string())])


class _Rows:
    """The small columns of a shard's tokenized rows (id, split, length, truncated, supervised tokens): what
    mixing and the manifest need on the driver, about 40 bytes a row."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.splits: list[str] = []
        self.lengths: list[np.ndarray] = []
        self.truncated: list[np.ndarray] = []
        self.supervised: list[np.ndarray] = []

    def add(self, t: Any) -> None:
        from dataprep.tokenize.layout import IGNORE_INDEX

        self.ids += t.ids
        self.splits += t.splits
        self.lengths.append(t.lengths.astype(np.int64))
        self.truncated.append(np.asarray(t.truncated, dtype=bool))
        marks = np.concatenate(([0], np.cumsum(t.columns["labels"] != IGNORE_INDEX)))
        self.supervised.append((marks[t.offsets[1:]] - marks[t.offsets[:-1]]).astype(np.int64))

    def table(self, shard: Shard, facts: dict[str, Any]) -> pa.Table:
        """One row per tokenized row (``n`` 0..), after a first row (``n`` -1) holding the shard's facts."""
        n = len(self.ids)
        return pa.table({
            "source": pa.array(np.full(n + 1, shard.source, dtype=np.int32)),
            "shard": pa.array(np.full(n + 1, shard.index, dtype=np.int32)),
            "n": pa.array(np.arange(-1, n, dtype=np.int64)),
            "id": pa.array([None, *self.ids], pa.string()),
            "split": pa.array([None, *self.splits], pa.string()),
            "length": pa.array(np.concatenate([[0], *self.lengths]).astype(np.int64)),
            "truncated": pa.array(np.concatenate([[False], *self.truncated]).astype(bool)),
            "supervised": pa.array(np.concatenate([[0], *self.supervised]).astype(np.int64)),
            "facts": pa.array([json.dumps(facts), *([None] * n)], pa.string()),
            "error": pa.array([None] * (n + 1), pa.string()),
        }, schema=produce_schema())


def _counters(encoder: Any) -> dict[str, Any]:
    return {"created": getattr(encoder, "created", 0), "describe": encoder.describe()}


def _delta(before: Any, after: Any) -> Any:
    """What a shard added to an encoder's cumulative facts: numbers subtracted, everything else as it is now."""
    if isinstance(after, bool) or not isinstance(after, (int, float, dict)):
        return after
    if isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        return {k: _delta(old.get(k), v) for k, v in after.items()}
    return after - (before if isinstance(before, (int, float)) and not isinstance(before, bool) else 0)


def write_rejects(folder: str, shard: Shard, rows: list[dict[str, Any]]) -> None:
    """A shard's rejects, one Parquet part per stage: ``FOLDER/STAGE/part-SSSSS-NNNNN.parquet``."""
    import pyarrow.parquet as pq

    fs, root = filesystem(folder)
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_stage.setdefault(row["stage"], []).append(row)
    for stage, items in by_stage.items():
        fs.create_dir(f"{root}/{stage}", recursive=True)
        pq.write_table(pa.Table.from_pylist(items, schema=REJECT_SCHEMA),
                       f"{root}/{stage}/{part_name(shard.source, shard.index)}", filesystem=fs)


class WriteParts:
    """Pass 3: a shard's tokenized rows, each as many times as the mixture says, into per-split Parquet parts in
    the consumer's columns (``SPLIT/part-SSSSS-NNNNN.parquet``)."""

    def __init__(self, job: ClusterJob, work: str, out: str, schema: pa.Schema) -> None:
        self.job = job
        self.work = work
        self.out = out
        self.schema = schema

    def __call__(self, shards: pa.Table) -> pa.Table:
        written = [self.write(row) for row in shards.to_pylist()]
        return pa.table({"rows": pa.array(written, pa.int64())})

    def write(self, row: dict[str, Any]) -> int:
        import pyarrow.parquet as pq

        from dataprep import emit

        fs, root = filesystem(self.work)
        name = part_name(row["source"], row["index"], "arrow")
        with fs.open_input_file(f"{root}/tokens/{name}") as f:
            table = pa.ipc.open_file(f).read_all()
        counts = np.frombuffer(row["counts"], dtype=np.int64)
        if len(counts) != table.num_rows:
            raise AssertionError(f"{name}: {table.num_rows} rows but {len(counts)} counts")
        if not bool((counts == 1).all()):
            table = table.take(pa.array(np.repeat(np.arange(table.num_rows), counts)))
        out_fs, out_root = filesystem(self.out)
        splits = table.column("split").to_numpy(zero_copy_only=False)
        written = 0
        for split in sorted(set(splits.tolist())):
            part = table.filter(pa.array(splits == split)).select(self.schema.names).combine_chunks()
            if self.job.tokenize.task == "causal":
                batch = emit.columns_for(self.job.tokenize.emit_for, part.to_batches()[0]) if part.num_rows else None
                part = pa.Table.from_batches([batch]) if batch is not None else part
            out_fs.create_dir(f"{out_root}/{split}", recursive=True)
            pq.write_table(part, f"{out_root}/{split}/{part_name(row['source'], row['index'])}", filesystem=out_fs)
            written += part.num_rows
        return written


def merge_facts(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' stage counts and encoder facts added up (numbers summed, the rest from the first shard)."""
    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a.get(k), b.get(k)) if k in a and k in b else (a.get(k) if k in a else b[k])
                    for k in {**a, **b}}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return a + b
        return a if a is not None else b

    total: dict[str, Any] = {}
    for fact in facts:
        total = add(total, fact) if total else fact
    return total


def shard_row(shard: Shard, **extra: Any) -> dict[str, Any]:
    return {**asdict(shard), **extra}

