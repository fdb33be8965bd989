"""Running a :class:`~dataprep.cluster.job.ClusterJob` on Ray Data: the only module of dataprep that imports ray.

The steps, each a Ray Data operation (Ray schedules them, shuffles the groupbys, spills what does not fit):

1. the driver lists the inputs in recipe order and plans shards (:mod:`dataprep.shards`); a ``map_batches``
   counts each JSONL shard's lines so every shard knows its first line's number;
2. :class:`~dataprep.cluster.work.Scan` (``map_batches`` over an actor pool) reads every shard and keeps the keys;
3. duplicates: ``groupby(source, content hash)`` names each row's representative; the representatives' band keys
   are exploded and ``groupby(source, band)`` verifies candidate pairs; the driver keeps the first of each chain
   (:func:`~dataprep.cluster.decide.keep_first`, over the verified pairs only);
4. split: ``groupby(stratum).count()``, the quotas on the driver, ``groupby(group)`` ranks each group's rows;
5. :class:`~dataprep.cluster.work.Produce` (actors that open the tokenizer once) applies the decisions and
   tokenizes each shard; the driver mixes (:func:`dataprep.mix.mix`, a pure function of ids and the seed);
6. :class:`~dataprep.cluster.work.WriteParts` writes the per-split Parquet parts; the driver writes the manifest,
   the card and the tokenizer, and, when asked, the ``save_to_disk`` folder byte-identical to the local engine's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import shards as shardlib
from dataprep.cluster import decide
from dataprep.cluster.job import ClusterJob
from dataprep.cluster.output import Target, assemble, manifest_for, write_folder
from dataprep.cluster.work import (
    Decisions,
    Produce,
    Scan,
    WriteParts,
    merge_facts,
    rebuild_error,
    shard_row,
    stratum_key,
    worker_env,
)
from dataprep.errors import DataprepError, MissingExtra
from dataprep.shards import Shard

SHUFFLE_PARTITIONS = 64


@dataclass
class ClusterResult:
    lines: list[str]
    manifest: Any
    output: str
    parts: dict[str, list[str]]


def connect(address: str | None) -> Any:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs here), or reuse the session's."""
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray") from None
    if not ray.is_initialized():
        import logging

        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def _actors(job: ClusterJob, ray: Any, cpus: float = 1) -> Any:
    """An actor pool as large as the cluster's CPUs allow (or ``settings.workers``)."""
    available = int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1))
    size = max(1, min(job.settings.workers or available, available))
    return ray.data.ActorPoolStrategy(min_size=1, max_size=size)


def _tables(ds: Any) -> pa.Table | None:
    """A (small) dataset gathered on the driver as one table (None when it has no rows)."""
    import ray

    tables = [t for t in ray.get(ds.materialize().to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables) if tables else None


def _partitions(rows: int) -> int:
    """Hash partitions for a groupby over ``rows`` key rows: about 100,000 rows each, at most
    :data:`SHUFFLE_PARTITIONS`. Ray's default (200) costs seconds of scheduling on small inputs; the output
    never depends on it."""
    return max(1, min(SHUFFLE_PARTITIONS, rows // 100_000))


def _first_error(table: pa.Table | None, order: list[str]) -> None:
    """Stop with the user error a single reader meets first: of the shard that comes first in input order."""
    if table is None:
        return
    errors = table.filter(table.column("error").is_valid())
    if errors.num_rows:
        errors = errors.sort_by([(c, "ascending") for c in order])
        raise rebuild_error(errors.column("error")[0].as_py())


def plan(job: ClusterJob, ray: Any) -> list[Shard]:
    """Every input's shards, in recipe and file order, with JSONL line numbers counted on the cluster."""
    planned = [shardlib.plan_shards(s.index, s.path, s.input_format, split=s.split,
                                    shard_bytes=job.settings.shard_bytes) for s in job.sources]
    flat = [s for shards in planned for s in shards]
    jsonl = [s for s in flat if s.fmt == "jsonl" and s.end >= 0]
    counts: dict[tuple[int, int], int] = {}
    if len(jsonl) > 1:
        ds = ray.data.from_items([shard_row(s) for s in jsonl], override_num_blocks=len(jsonl))
        counted = _tables(ds.map_batches(_count_lines, batch_format="pyarrow", batch_size=1))
        for row in counted.to_pylist():
            counts[(row["source"], row["index"])] = row["lines"]
    out = []
    for shards in planned:
        if len(shards) > 1 and shards[0].fmt == "jsonl":
            shards = shardlib.number_lines(shards, [counts[(s.source, s.index)] for s in shards])
        out += shards
    return out


def _count_lines(batch: pa.Table) -> pa.Table:
    rows = batch.to_pylist()
    lines = [shardlib.count_lines(Shard(**{k: r[k] for k in Shard.__dataclass_fields__})) for r in rows]
    return pa.table({"source": [r["source"] for r in rows], "index": [r["index"] for r in rows], "lines": lines})


def resolve_formats(job: ClusterJob, shards: list[Shard]) -> list[str]:
    """``normalize.from: auto`` is decided from a source's first record, as the local stage does: the driver
    reads it, so every shard of the source normalizes the same way. Returns the formats detected."""
    detected = []
    for spec in job.sources:
        if spec.normalize is None or spec.normalize.source != "auto":
            continue
        first = None
        on_bad = (lambda *_: None) if job.on_error == "reject" else None
        for shard in (s for s in shards if s.source == spec.index):
            batch = next((b for b in shardlib.read_shard(shard, batch_size=16, on_bad=on_bad) if len(b)), None)
            if batch is not None:
                first = batch
                break
        if first is None:
            continue
        from dataprep.errors import UsageProblem

        try:
            spec.normalize = spec.normalize.resolved(first.records[0])
        except UsageProblem as exc:
            raise UsageProblem(f"{first.location(0)}: {exc}", hint=exc.hint) from None
        detected.append(spec.normalize.source)
    return detected


def decide_rows(job: ClusterJob, scanned: Any, ray: Any) -> tuple[dict[tuple[int, int], Decisions], dict[str, Any]]:
    """Duplicates and splits for every row, by shard; and the split's facts for the summary."""
    decisions: dict[tuple[int, int], Decisions] = {}
    facts: dict[str, Any] = {}

    def at(source: int, pos: int) -> tuple[Decisions, int]:
        key = (source, pos >> decide.SHARD_SHIFT)
        return decisions.setdefault(key, Decisions()), pos & ((1 << decide.SHARD_SHIFT) - 1)

    rows = scanned
    parts = _partitions(scanned.count())
    if job.filter is not None and job.filter.dedup:
        rows = scanned.groupby(["source", "chash"], num_partitions=parts).map_groups(
            decide.exact_group, batch_format="pyarrow").materialize()
        near: dict[tuple[int, int], tuple[str, int]] = {}
        if job.filter.dedup == "near":
            import math

            from dataprep.dedup import NUM_PERM

            need = math.ceil(job.filter.threshold * NUM_PERM - 1e-9)
            bands = rows.map_batches(_reps, batch_format="pyarrow").map_batches(decide.explode_bands,
                                                                                batch_format="pyarrow")
            edges = _tables(bands.groupby(["source", "band"], num_partitions=parts).map_groups(
                decide.band_pairs, batch_format="pyarrow", fn_kwargs={"need": need}))
            near = decide.keep_first(edges) if edges is not None else {}
        copies = _tables(rows.map_batches(_copies, batch_format="pyarrow"))
        for (source, pos), finding in decide.findings(copies, near).items():
            d, i = at(source, pos)
            d.drop[i] = finding
        dropped = {(s, (k << decide.SHARD_SHIFT) | i) for (s, k), d in decisions.items() for i in d.drop}
    else:
        dropped = set()
    if job.split is not None:
        facts = _split(job, rows, dropped, at, parts)
    return decisions, facts


def _reps(batch: pa.Table) -> pa.Table:
    return batch.filter(np.asarray(batch.column("rep_pos")) == -1)


def _copies(batch: pa.Table) -> pa.Table:
    return batch.filter(np.asarray(batch.column("rep_pos")) != -1).select(["source", "pos", "rep_pos", "rep_id"])


def _split(job: ClusterJob, rows: Any, dropped: set[tuple[int, int]],
           at: Callable[[int, int], tuple[Decisions, int]], parts: int) -> dict[str, Any]:
    from dataprep.split import plan_quotas

    assert job.split is not None
    keep = _Keep(dropped)
    placed = rows.map_batches(keep, batch_format="pyarrow").materialize()
    counted = _tables(placed.groupby("stratum", num_partitions=parts).count())
    strata = {} if counted is None else {stratum_key(k): int(n) for k, n in zip(
        counted.column("stratum").to_pylist(), counted.column("count()").to_pylist(), strict=True)}
    quotas = plan_quotas(strata, job.split)
    groups = {json.dumps(list(key), ensure_ascii=False): g for key, g in quotas.group_of.items()}
    if sum(quotas.val) + sum(quotas.test):
        grouped = placed.map_batches(_Group(groups), batch_format="pyarrow")
        held = _tables(grouped.groupby("group", num_partitions=parts).map_groups(
            decide.rank_group, batch_format="pyarrow", fn_kwargs={"val": quotas.val, "test": quotas.test}))
        if held is not None:
            for source, pos, code in zip(*(held.column(c).to_pylist() for c in ("source", "pos", "code")),
                                         strict=True):
                d, i = at(source, pos)
                d.held[i] = decide.HELD_OUT[code]
    facts: dict[str, Any] = dict(quotas.counts)
    if quotas.merges:
        facts["merged"] = "; ".join(quotas.merges)
    return facts


class _Keep:
    """Rows that reach split: not dropped as duplicates, with a stratum."""

    def __init__(self, dropped: set[tuple[int, int]]) -> None:
        self.dropped = dropped

    def __call__(self, batch: pa.Table) -> pa.Table:
        batch = batch.select(["source", "pos", "stratum", "primary", "tie"])
        mask = [s is not None and (src, p) not in self.dropped for src, p, s in zip(
            batch.column("source").to_pylist(), batch.column("pos").to_pylist(), batch.column("stratum").to_pylist(),
            strict=True)]
        return batch.filter(pa.array(mask, pa.bool_()))


class _Group:
    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.append_column("group", pa.array([self.groups[s] for s in batch.column("stratum").to_pylist()],
                                                     pa.int32()))


def execute(job: ClusterJob) -> ClusterResult:
    """Run ``job`` on the cluster; see the module docstring for the steps."""
    ray = connect(job.settings.address)
    started = time.perf_counter()
    if job.tokenize.task != "causal":
        raise DataprepError("--engine ray runs causal-LM tokenize jobs; classification runs on the local engine")
    shards = plan(job, ray)
    detected = resolve_formats(job, shards)
    descriptors = [shard_row(s) for s in shards]

    scanned = ray.data.from_items(descriptors, override_num_blocks=len(descriptors)).map_batches(
        Scan, batch_format="pyarrow", batch_size=1, fn_constructor_kwargs={"job": job},
        compute=_actors(job, ray)).materialize()
    _first_error(_tables(scanned.map_batches(_errors, batch_format="pyarrow")), ["source", "pos"])
    decisions, split_facts = decide_rows(job, scanned, ray)

    target = Target(job.output)
    try:
        fs, work = shardlib.filesystem(target.work)
        fs.create_dir(f"{work}/tokens", recursive=True)
        for d in descriptors:
            d["decisions"] = decisions.get((d["source"], d["index"]), Decisions()).to_json()
        env = worker_env(job.settings.cpus_per_worker)
        produced = _tables(ray.data.from_items(descriptors, override_num_blocks=len(descriptors)).map_batches(
            Produce, batch_format="pyarrow", batch_size=1,
            fn_constructor_kwargs={"job": job, "work": target.work},
            compute=_actors(job, ray, job.settings.cpus_per_worker), num_cpus=job.settings.cpus_per_worker,
            runtime_env={"env_vars": env}))
        _first_error(produced, ["source", "shard"])
        result = _finish(job, target, shards, produced, split_facts, detected, ray, started)
    except BaseException:
        target.abort()
        raise
    return result


def _errors(batch: pa.Table) -> pa.Table:
    return batch.filter(batch.column("error").is_valid())


def _finish(job: ClusterJob, target: Target, shards: list[Shard], produced: pa.Table, split_facts: dict[str, Any],
            detected: list[str], ray: Any, started: float) -> ClusterResult:
    from dataprep import emit
    from dataprep.mix import SourceRows, mix
    from dataprep.tokenize.job import encoder_for
    from dataprep.tokenizer_io import open_tokenizer

    facts = produced.filter(np.asarray(produced.column("n")) == -1)
    rows = produced.filter(np.asarray(produced.column("n")) >= 0).sort_by(
        [("source", "ascending"), ("shard", "ascending"), ("n", "ascending")])
    stage_facts = merge_facts([json.loads(f) for f in facts.column("facts").to_pylist()])
    source_of = np.asarray(rows.column("source"))
    mixture_rows = []
    for spec in job.sources:
        mine = rows.filter(pa.array(source_of == spec.index))
        mixture_rows.append(SourceRows(spec.name, mine.column("id").to_pylist(), mine.column("split").to_pylist(),
                                       np.asarray(mine.column("length"), dtype=np.int64), spec.target))
    mixture = mix(mixture_rows, job.mix_seed, job.mix_rows)
    counts = np.concatenate([m.counts for m in mixture]) if mixture else np.zeros(0, dtype=np.int64)

    tokenizer = open_tokenizer(job.tokenize.tokenizer, trust_remote_code=job.tokenize.trust_remote_code)
    encoder, template = encoder_for(job.tokenize, tokenizer)
    schema = emit.schema_for(job.tokenize.emit_for, encoder.schema)
    shard_of = np.asarray(rows.column("shard"))
    write = []
    for s in shards:
        mine = (source_of == s.source) & (shard_of == s.index)
        write.append({"source": s.source, "index": s.index, "counts": counts[mine].astype(np.int64).tobytes()})
    ray.get(ray.data.from_items(write, override_num_blocks=len(write)).map_batches(
        WriteParts, batch_format="pyarrow", batch_size=1,
        fn_constructor_kwargs={"job": job, "work": target.work, "out": target.root, "schema": encoder.schema},
        compute=_actors(job, ray)).to_arrow_refs())

    manifest, report = manifest_for(job, tokenizer, encoder, template, rows, counts, mixture, stage_facts)
    parts = write_folder(job, target, tokenizer, manifest, rows, counts, schema)
    target.commit()
    if job.save_to_disk is not None:
        assemble(job.output, job.save_to_disk)
    elapsed = time.perf_counter() - started
    lines = _summary(job, stage_facts, split_facts, detected, mixture, manifest, report, elapsed)
    return ClusterResult(lines, manifest, job.output, parts)


def _summary(job: ClusterJob, stage_facts: dict[str, Any], split_facts: dict[str, Any], detected: list[str],
             mixture: list[Any], manifest: Any, report: Any, elapsed: float) -> list[str]:
    lines = []
    for stage in job.stages:
        counts = stage_facts.get("stages", {}).get(stage)
        if counts is None:
            continue
        reasons = counts["reasons"]
        text = f"{stage}: {counts['rows_in']:,} in, {counts['rows_out']:,} out, {sum(reasons.values()):,} rejected"
        if reasons:
            text += " (" + ", ".join(f"{r}: {n:,}" for r, n in sorted(reasons.items())) + ")"
        extra = {}
        if stage == "normalize" and len(set(detected)) == 1:
            extra["format"] = detected[0]
        if stage == "split":
            extra.update(split_facts)
        if stage == "tokenize":
            extra["tokens"] = f"{manifest.totals.tokens:,}"
        if extra:
            text += "; " + ", ".join(f"{k}: {v}" for k, v in extra.items())
        lines.append(text)
    splits = " ".join(f"{name}={s.rows:,}" for name, s in manifest.splits.items())
    command = "run" if job.mixture else "tokenize"
    lines.append(f"{command}: wrote {job.output} on ray ({splits}; {manifest.totals.tokens:,} tokens) in {elapsed:.1f}s")
    return lines


