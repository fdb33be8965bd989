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
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(recipe: str, overrides: tuple[str, ...], dry_run: bool, cache_dir: str | None, no_cache: bool,
            force: bool, quiet: bool) -> None:
    """Run the stages of RECIPE.yaml (validate, normalize, filter, split, tokenize) on its inputs, mix them and
    write the output, all in one process; KEY=VALUE overrides any field of the recipe.

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
    from dataprep.recipe import load_recipe
    from dataprep.runner import execute, plan

    if no_cache and cache_dir:
        raise UsageProblem("--no-cache and --cache-dir exclude each other")
    loaded = load_recipe(recipe, overrides)
    root = None if no_cache else cache_dir or str(Path(loaded.recipe.output).parent / CACHE_DIR)
    cache = Cache(root)
    the_plan = plan(loaded, cache, force=force)
    if dry_run:
        try:
            click.echo(_dry_run(the_plan), nl=False)
        finally:
            cache.close()
        return
    result = execute(the_plan, echo=lambda line: click.echo(line, err=True),
                     progress=lambda name: progress(quiet, f"run {name}"))
    if not quiet:
        for line in result.lines:
            click.echo(line, err=True)


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
    old = read_manifest(the_plan.recipe.output)
    return "up to date" if old is not None and old.key == the_plan.output_key else "write"
