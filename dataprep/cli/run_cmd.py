"""``dataprep run``: a whole preparation from one YAML recipe, in one process, with a cache per stage."""

from __future__ import annotations

from pathlib import Path

import click

CACHE_DIR = ".dataprep-cache"


@click.command("run")
@click.argument("recipe", metavar="RECIPE.yaml")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and what the cache would reuse; run nothing.")
@click.option("--cache-dir", metavar="DIR", default=None,
              help=f"Where stage outputs are cached. Default: {CACHE_DIR}/ beside the output.")
@click.option("--no-cache", is_flag=True, help="Neither read nor keep cached stage outputs.")
@click.option("--force", is_flag=True, help="Recompute every stage and rewrite the output, even if cached.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: the same stages on a Ray cluster (dataprep[ray]); the output is "
                   "Parquet parts per split plus the manifest, identical in content.")
@click.option("--ray-address", metavar="ADDR", default=None,
              help="The Ray cluster to join (auto: the one `ray start` runs here). Default: a local one.")
@click.option("--save-to-disk", metavar="DIR", default=None,
              help="With --engine ray: also write the save_to_disk folder dataprep train reads (as the local "
                   "engine writes it, byte for byte).")
@click.option("--shard-mb", type=click.IntRange(min=1), default=64, show_default=True,
              help="With --engine ray: MiB of JSONL per shard (sets the part files; never the cluster's size).")
@click.option("--workers", type=click.IntRange(min=0, max=1), default=None, metavar="0|1",
              help="1: read and normalize each source in a second process (another core); 0: all in this one. "
                   "Default: 1 where it pays for handing the rows over: a file of 8 MiB or more, a second CPU, "
                   "and a run that tokenizes or rows that are not alpaca. The output is the same.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(recipe: str, overrides: tuple[str, ...], dry_run: bool, cache_dir: str | None, no_cache: bool,
            force: bool, engine: str, ray_address: str | None, save_to_disk: str | None, shard_mb: int,
            workers: int | None, quiet: bool) -> None:
    """Run the stages of RECIPE.yaml (validate, normalize, filter, split, tokenize) on its inputs, mix them and
    write the output, then pack and describe it (pack, stats), all in one process; KEY=VALUE overrides any
    field of the recipe.

    Batches go from stage to stage without being encoded; each stage keeps its own counts (in = out +
    rejected) and rejects. Every stage's output is cached under a hash of its input, its options, the
    tokenizer and template, and dataprep's version: a run after changing tokenize options reuses normalize,
    filter and split, a new mixture weight redoes only the mixing, and the summary says what was reused.
    The same recipe gives the same bytes.

    \b
    Examples:
      dataprep run recipes/alpaca_sft.yaml
      dataprep run recipes/alpaca_sft.yaml tokenize.max_length=4096 output=out/alpaca_4k
      dataprep run recipes/mixture_tokens.yaml inputs.0.tokens=20000 --dry-run
      dataprep run recipe.yaml --no-cache -q
    """
    from dataprep.cache import Cache
    from dataprep.cli.options import progress
    from dataprep.errors import UsageProblem
    from dataprep.offload import can_fork
    from dataprep.recipe import load_recipe
    from dataprep.runner import execute, plan

    if no_cache and cache_dir:
        raise UsageProblem("--no-cache and --cache-dir exclude each other")
    loaded = load_recipe(recipe, overrides)
    later = [name for name in ("pack", "stats") if getattr(loaded.recipe, name) is not None]
    if engine == "ray" and later:
        raise UsageProblem(f"{' and '.join(later)} run{'s' if len(later) == 1 else ''} with --engine local; "
                           f"with --engine ray, run `dataprep {later[0]}` on the output afterwards")
    # --engine ray keeps no stage cache: its workers read the inputs, and the output may be a URI
    root = None if no_cache or engine == "ray" else cache_dir or str(Path(loaded.recipe.output).parent / CACHE_DIR)
    cache = Cache(root)
    the_plan = plan(loaded, cache, force=force)
    if dry_run:
        try:
            click.echo(_dry_run(the_plan), nl=False)
        finally:
            cache.close()
        return
    if engine == "ray":
        _on_ray(the_plan, ray_address, save_to_disk, shard_mb, quiet)
        return
    if ray_address or save_to_disk:
        raise UsageProblem("--ray-address and --save-to-disk go with --engine ray")
    if workers and not can_fork():
        raise UsageProblem("--workers 1 needs fork(), which this system does not have; use --workers 0")
    result = execute(the_plan, echo=lambda line: click.echo(line, err=True),
                     progress=lambda name: progress(quiet, f"run {name}"), workers=workers)
    if not quiet:
        for line in result.lines:
            click.echo(line, err=True)
    if result.report is not None:
        click.echo(result.report, nl=False)


def _dry_run(the_plan: object) -> str:
    import yaml

    from dataprep.runner import Plan

    assert isinstance(the_plan, Plan)
    text = "# resolved recipe (every default filled in)\n"
    text += yaml.safe_dump(the_plan.loaded.resolved(), sort_keys=False, allow_unicode=True, width=110)
    where = the_plan.cache.root if the_plan.cache.persistent else "none (--no-cache)"
    text += f"# plan (cache: {where})\n"
    for stage, source, state in the_plan.actions():
        text += f"#   {stage:<10} {source:<24} {state}\n"
    text += f"#   {'output':<10} {the_plan.recipe.output:<24} {_output_state(the_plan)}\n"
    return text


def _output_state(the_plan: object) -> str:
    from dataprep.manifest import read_manifest
    from dataprep.runner import Plan

    assert isinstance(the_plan, Plan)
    if the_plan.tokenizing is None or the_plan.force:
        return "write"
    old = read_manifest(the_plan.dataset_dir)
    state = "up to date" if old is not None and old.key == the_plan.output_key else "write"
    if the_plan.recipe.pack is not None:  # pack decides its own output's state, from the dataset it reads
        return f"pack the dataset ({state} in the cache)"
    return state


def _on_ray(the_plan: object, address: str | None, save_to_disk: str | None, shard_mb: int, quiet: bool) -> None:
    """The plan on a Ray cluster: no stage cache (each run reads its inputs), the same output key."""
    from dataprep.cluster.engine import execute
    from dataprep.cluster.job import Settings, from_plan
    from dataprep.manifest import read_manifest
    from dataprep.runner import Plan
    from dataprep.shards import is_uri

    assert isinstance(the_plan, Plan)
    try:
        job = from_plan(the_plan, Settings(address=address, shard_bytes=shard_mb << 20), save_to_disk)
        old = None if the_plan.force or is_uri(job.output) else read_manifest(job.output)
        if old is not None and old.key == job.key:
            if not quiet:
                click.echo(f"run: {job.output} is up to date (key {job.key[:12]}; --force to redo)", err=True)
            return
        if not is_uri(job.output):
            from dataprep.manifest import MANIFEST
            from dataprep.paths import check_paths, check_replaceable_folder

            check_paths([s.path for s in job.sources if not is_uri(s.path)], None, None,
                        replaced_folders=[job.output])
            check_replaceable_folder(job.output, MANIFEST)
        if the_plan.recipe.validate_ is not None:
            from dataprep.runner import Execution

            validate = Execution(the_plan, lambda line: click.echo(line, err=True))
            for source in the_plan.sources:
                validate.validate(source)
        result = execute(job)
    finally:
        the_plan.cache.close()
    if not quiet:
        for line in result.lines:
            click.echo(line, err=True)
