"""What a cluster run leaves behind, and the ``save_to_disk`` folder made from it (no ray import).

A cluster run's output folder (a local path or a ``pyarrow.fs`` URI) holds ``SPLIT/part-SOURCE-SHARD.parquet``
(the consumer's columns), ``dataprep.json``, ``README.md`` and ``tokenizer/`` (and ``ids/`` for layouts without
ids): what ``datasets.load_dataset("parquet", ...)`` reads. :func:`assemble` turns it into the folder the local
engine writes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import shards as shardlib
from dataprep.cluster.job import ClusterJob

WORK = "_work"


class Target:
    """Where the parts go: a hidden folder beside a local output (swapped in whole at the end), or the URI itself
    (object stores have no rename: the manifest is written last, so a folder without it is unfinished)."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.staging = None
        if shardlib.is_uri(output):
            self.root = output.rstrip("/")
        else:
            from dataprep.outdir import Staging

            self.staging = Staging(output)
            self.root = str(self.staging.path)
        self.work = f"{self.root}/{WORK}"

    def commit(self) -> None:
        fs, root = shardlib.filesystem(self.work)
        with contextlib.suppress(OSError):
            fs.delete_dir(root)
        if self.staging is not None:
            self.staging.commit()

    def abort(self) -> None:
        if self.staging is not None:
            self.staging.abort()


def manifest_for(job: ClusterJob, tokenizer: Any, encoder: Any, template: Any, rows: pa.Table, counts: np.ndarray,
              mixture: list[Any], stage_facts: dict[str, Any]) -> tuple[Any, Any]:
    from dataprep.manifest import SplitStats, Totals
    from dataprep.stage import StageReport
    from dataprep.tokenize.job import dataset_manifest

    manifest = dataset_manifest(job.tokenize, tokenizer, encoder, key=job.key,
                                tokenizer_sha256=_tokenizer_sha(job, tokenizer), template_facts=template,
                                inputs=job.inputs)
    if job.mixture:
        manifest.mixture = {"seed": job.mix_seed, "sources": {m.name: m.fact() for m in mixture}}
    splits = np.asarray(rows.column("split").to_pylist(), dtype=object)
    lengths = np.asarray(rows.column("length"), dtype=np.int64)
    truncated = np.asarray(rows.column("truncated"), dtype=bool)
    supervised = np.asarray(rows.column("supervised"), dtype=np.int64)
    from dataprep.manifest import split_order

    stats = {}
    for name in split_order(sorted({s for s, c in zip(splits.tolist(), counts.tolist(), strict=True) if c})):
        mine = (splits == name) & (counts > 0)
        c = counts[mine]
        stats[name] = SplitStats(rows=int(c.sum()), tokens=int((c * lengths[mine]).sum()),
                                 supervised_tokens=int((c * supervised[mine]).sum()),
                                 truncated=int((c * truncated[mine]).sum()), longest=int(lengths[mine].max()))
    manifest.splits = stats
    tok = stage_facts.get("stages", {}).get("tokenize", {"rows_in": 0, "rows_out": 0, "created": 0, "reasons": {}})
    report = StageReport("tokenize")
    report.rows_in = tok["rows_in"]
    report.reasons = Counter(tok["reasons"])
    report.rows_out = int(counts.sum())
    report.created = tok.get("created", 0)
    manifest.rejected = dict(sorted(report.reasons.items()))
    values = list(stats.values())
    manifest.totals = Totals(rows_in=report.rows_in, rows_out=report.rows_out, rejected=report.rejected,
                             truncated=sum(s.truncated for s in values), tokens=sum(s.tokens for s in values),
                             supervised_tokens=sum(s.supervised_tokens or 0 for s in values))
    describe = stage_facts.get("describe") or encoder.describe()
    manifest.encoder = describe.get("encoder")
    manifest.self_check = describe.get("self_check")
    return manifest, report


def _tokenizer_sha(job: ClusterJob, tokenizer: Any) -> dict[str, str]:
    from dataprep.tokenizer_io import tokenizer_files_sha256

    return tokenizer_files_sha256(job.tokenize.tokenizer, tokenizer)


def write_folder(job: ClusterJob, target: Target, tokenizer: Any, manifest: Any, rows: pa.Table,
                  counts: np.ndarray, schema: pa.Schema) -> dict[str, list[str]]:
    """The driver's files beside the parts: ids (for layouts without them), tokenizer, card, manifest last."""
    from dataprep import emit
    from dataprep import manifest as mf
    from dataprep.card import write_card
    from dataprep.tokenizer_io import save_tokenizer

    fs, root = shardlib.filesystem(target.root)
    with tempfile.TemporaryDirectory(prefix="dataprep-ray-") as tmp:
        local = Path(tmp)
        if emit.layout(job.tokenize.emit_for).ids_beside:
            (local / emit.IDS_DIR).mkdir()
            splits = rows.column("split").to_pylist()
            ids = rows.column("id").to_pylist()
            for name in manifest.splits:
                repeated = [i for i, s, c in zip(ids, splits, counts.tolist(), strict=True) if s == name
                            for _ in range(c)]
                (local / emit.IDS_DIR / f"{name}.jsonl").write_text(emit.ids_lines(repeated), encoding="utf-8")
        save_tokenizer(tokenizer, local / mf.TOKENIZER_DIR)
        write_card(local, manifest, job.output)
        _upload(local, fs, root)
        mf.write_manifest(local, manifest)  # last: on an object store, a folder without it is unfinished
        _upload_file(local / mf.MANIFEST, fs, f"{root}/{mf.MANIFEST}")
    import pyarrow.fs as pafs

    return {name: sorted(Path(i.path).name for i in fs.get_file_info(pafs.FileSelector(f"{root}/{name}")))
            for name in manifest.splits}


def _upload(local: Path, fs: Any, root: str) -> None:
    for path in sorted(local.rglob("*")):
        rel = path.relative_to(local).as_posix()
        if path.is_dir():
            fs.create_dir(f"{root}/{rel}", recursive=True)
        else:
            _upload_file(path, fs, f"{root}/{rel}")


def _upload_file(path: Path, fs: Any, where: str) -> None:
    with open(path, "rb") as src, fs.open_output_stream(where) as dst:
        shutil.copyfileobj(src, dst)


def assemble(parts_folder: str, outdir: str) -> Path:
    """The ``save_to_disk`` DatasetDict folder ``dataprep train`` reads, from a cluster run's Parquet parts: the
    same files, byte for byte, as the local engine writes for the same recipe (the parts are read in name order,
    which is input order, and :class:`~dataprep.outdir.OutputDir` cuts batches by row count alone)."""
    import pyarrow.parquet as pq

    from dataprep import emit
    from dataprep import manifest as mf
    from dataprep.outdir import OutputDir
    from dataprep.paths import check_replaceable_folder

    fs, root = shardlib.filesystem(parts_folder)
    with fs.open_input_stream(f"{root}/{mf.MANIFEST}") as f:
        manifest = mf.Manifest.from_dict(json.loads(f.read().decode("utf-8")))
    import pyarrow.fs as pafs

    from dataprep.tokenize.layout import CAUSAL_SCHEMA

    check_replaceable_folder(outdir, mf.MANIFEST)
    schema = emit.schema_for(manifest.emit_for, CAUSAL_SCHEMA)  # Parquet names list items "element"
    files = {}
    for name in manifest.splits:
        infos = fs.get_file_info(pafs.FileSelector(f"{root}/{name}"))
        files[name] = sorted(i.path for i in infos if i.path.endswith(".parquet"))
    out = OutputDir(outdir, schema)
    try:
        for name, paths in files.items():
            for path in paths:
                for batch in pq.ParquetFile(path, filesystem=fs).iter_batches():
                    out.write(name, batch.cast(schema))
        out.finish_splits(manifest.key)
        for extra in (mf.TOKENIZER_DIR, emit.IDS_DIR):
            _download(fs, f"{root}/{extra}", out.staging / extra)
        for name in (mf.MANIFEST, mf.CARD):
            _download_file(fs, f"{root}/{name}", out.staging / name)
    except BaseException:
        out.abort()
        raise
    out.commit()
    return Path(outdir)


def _download(fs: Any, where: str, local: Path) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(where).type == pafs.FileType.NotFound:
        return
    for info in fs.get_file_info(pafs.FileSelector(where, recursive=True)):
        rel = info.path[len(where):].lstrip("/")
        if info.type == pafs.FileType.Directory:
            (local / rel).mkdir(parents=True, exist_ok=True)
        else:
            _download_file(fs, info.path, local / rel)


def _download_file(fs: Any, where: str, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    with fs.open_input_stream(where) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst)
