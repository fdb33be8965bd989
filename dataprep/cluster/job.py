"""What a cluster run does, in one shape for ``dataprep run`` (a recipe's plan) and ``dataprep tokenize``.

Everything here is plain data (options dataclasses, paths, numbers) so that it travels to the workers by pickle;
the tokenizer itself does not travel: each worker opens it from ``tokenize.tokenizer``, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataprep.filter import FilterOptions
from dataprep.normalize import NormalizeOptions
from dataprep.shards import SHARD_BYTES
from dataprep.split import SplitOptions
from dataprep.tokenize.options import TokenizeJob


@dataclass
class SourceSpec:
    """One input: where it is, how it is read, its split (``NAME=PATH`` or the recipe's ``split``), its target."""

    index: int
    name: str
    path: str
    input_format: str | None = None
    split: str | None = None
    normalize: NormalizeOptions | None = None
    target: tuple[str, float] | None = None
    sha256: str = ""
    bytes: int = 0


@dataclass
class Settings:
    """How the cluster is used; none of it changes a byte of the output.

    ``shard_bytes`` sets the JSONL shards (and so the part files' names), ``workers`` caps the actors of each
    step (default: what the cluster offers), ``cpus_per_worker`` is what a tokenize actor asks for and the
    number of encoder threads it runs.
    """

    address: str | None = None
    shard_bytes: int = SHARD_BYTES
    workers: int | None = None
    cpus_per_worker: int = 1


@dataclass
class ClusterJob:
    """A whole preparation for :func:`dataprep.cluster.engine.execute`."""

    sources: list[SourceSpec]
    tokenize: TokenizeJob
    output: str
    key: str
    inputs: list[dict[str, Any]]
    filter: FilterOptions | None = None
    split: SplitOptions | None = None
    on_error: str = "fail"
    rejects: str | None = None  # a folder: one Parquet part per stage and shard
    mix_seed: int = 42
    mix_rows: int | None = None
    mixture: bool = True  # dataprep run records the realised mixture in the manifest; tokenize does not
    save_to_disk: str | None = None
    settings: Settings = field(default_factory=Settings)

    @property
    def stages(self) -> list[str]:
        """The stages rows pass, in order; the first one also counts unreadable lines."""
        names = []
        if any(s.normalize is not None for s in self.sources):
            names.append("normalize")
        if self.filter is not None:
            names.append("filter")
        if self.split is not None:
            names.append("split")
        return [*names, "tokenize"]


def from_plan(plan: Any, settings: Settings, save_to_disk: str | None = None) -> ClusterJob:
    """The cluster job of a ``dataprep run`` plan (:func:`dataprep.runner.plan`): the same sources, stage options,
    mixture and output key, so the manifest is the one the local engine writes."""
    from dataprep.errors import UsageProblem

    recipe = plan.recipe
    if plan.tokenizing is None:
        raise UsageProblem("--engine ray writes datasets: the recipe needs a tokenize stage",
                           hint="records output (normalize/filter/split only) runs on the local engine")
    sources = [SourceSpec(s.index, s.name, s.path, s.input_format, s.split, s.normalize, s.target, s.sha256,
                          s.bytes) for s in plan.sources]
    inputs = [{"name": s.path, "source": s.name, "split": s.split, "bytes": s.bytes, "sha256": s.sha256}
              for s in plan.sources]
    return ClusterJob(
        sources=sources, tokenize=plan.tokenizing.job, output=recipe.output, key=plan.output_key, inputs=inputs,
        filter=recipe.filter.options() if recipe.filter is not None else None,
        split=recipe.split.options() if recipe.split is not None else None,
        on_error=recipe.on_error, rejects=recipe.rejects, mix_seed=recipe.mix.seed, mix_rows=recipe.mix.rows,
        mixture=True, save_to_disk=save_to_disk, settings=settings)


def from_tokenize(job: TokenizeJob, settings: Settings, save_to_disk: str | None = None) -> tuple[ClusterJob, Any]:
    """The cluster job of ``dataprep tokenize --engine ray`` (inputs ``PATH`` or ``NAME=PATH``), and the old
    manifest when the output is already up to date (then nothing needs to run)."""
    from dataprep import manifest as mf
    from dataprep.errors import UsageProblem
    from dataprep.shards import hash_file, is_uri
    from dataprep.tokenize.job import encoder_for, job_options, parse_input
    from dataprep.tokenizer_io import open_tokenizer, tokenizer_files_sha256

    parsed = [parse_input(a) for a in job.inputs]
    if any(path == "-" for _, path in parsed):
        raise UsageProblem("--engine ray reads files, not stdin", hint="give the input as a path or URI")
    tokenizer = open_tokenizer(job.tokenizer, trust_remote_code=job.trust_remote_code)
    encoder, template = encoder_for(job, tokenizer)
    files = []
    for split, path in parsed:
        sha, size = hash_file(path)
        files.append(mf.InputFile(path, path, sha, size, split))
    key = mf.cache_key(mf.key_parts(task=job.task, options=job_options(job, encoder), inputs=files,
                                    tokenizer_sha256=tokenizer_files_sha256(job.tokenizer, tokenizer),
                                    template=template))
    old = None if is_uri(job.outdir) or job.force else mf.read_manifest(job.outdir)
    sources = [SourceSpec(i, f.name, f.path, job.input_format, f.split, sha256=f.sha256, bytes=f.bytes)
               for i, f in enumerate(files)]
    cluster = ClusterJob(sources=sources, tokenize=job, output=job.outdir, key=key, inputs=[f.fact() for f in files],
                         on_error=job.on_error, rejects=job.rejects, mixture=False, save_to_disk=save_to_disk,
                         settings=settings)
    return cluster, old if old is not None and old.key == key else None
