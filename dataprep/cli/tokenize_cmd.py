"""``dataprep tokenize``: canonical JSONL → an Arrow DatasetDict for SFT (causal LM) or classification."""

from __future__ import annotations

import click

from dataprep.cli.options import progress
from dataprep.errors import UsageProblem
from dataprep.io import INPUT_FORMATS


@click.command("tokenize")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", "outdir", required=True, metavar="OUTDIR",
              help="Folder to write (datasets.save_to_disk layout + tokenizer/ + dataprep.json + README.md).")
@click.option("--tokenizer", required=True, metavar="DIR", help="Tokenizer folder (AutoTokenizer, fast backend).")
@click.option("--template", metavar="NAME|PATH", default=None,
              help="Chat template: 'tokenizer' (its own; the default), a built-in, or a Jinja file.")
@click.option("--max-length", type=click.IntRange(min=1), metavar="N", help="Longest row in tokens.")
@click.option("--mask-history", is_flag=True,
              help="Supervise only the last assistant turn (default: every assistant turn).")
@click.option("--train-on-prompt", is_flag=True, help="Supervise every token, prompt included.")
@click.option("--truncation", type=click.Choice(["history", "drop"]), default="history", show_default=True,
              help="Rows over --max-length: drop oldest history pairs, then cut the response's end; or reject.")
@click.option("--special-tokens", type=click.Choice(["reject", "text"]), default="reject", show_default=True,
              help="Special tokens inside data (content, reasoning, tool calls, tools): reject the row, or encode "
                   "them as plain text.")
@click.option("--reasoning", type=click.Choice(["template", "expand"]), default="template", show_default=True,
              help="template: train what the template renders for the whole conversation (Qwen3 keeps reasoning "
                   "only after the last user turn, R1 drops it). expand: one row per assistant turn, each rendered "
                   "as the final turn so its reasoning is kept; tokens grow with the square of the turns.")
@click.option("--template-inserts", "inserted", type=click.Choice(["mask", "train"]), default="mask",
              show_default=True,
              help="Text a template writes inside a turn from no data (Qwen3's empty <think></think> block): leave "
                   "it unsupervised, or train on it.")
@click.option("--encoder", type=click.Choice(["auto", "hf", "fast"]), default="auto", show_default=True,
              help="auto: the fast encoder (dataprep[fast]) once it has matched the reference on this run's text, "
                   "else HF tokenizers; hf: the reference only; fast: require the fast one. Ids are the same.")
@click.option("--emit-for", type=click.Choice(["dataprep", "trl", "llamafactory", "axolotl", "plain"]),
              default="dataprep", show_default=True,
              help="The columns a consumer trains on correctly: dataprep (ids, labels, length: Trainer, TRL >= 1.7, "
                   "plain torch, dataprep train), trl (+ assistant_masks/completion_mask for TRL 0.20-1.6), "
                   "llamafactory / axolotl (their three columns, ids beside, a ready config), plain.")
@click.option("--task", type=click.Choice(["causal", "classification"]), default="causal", show_default=True,
              help="Causal-LM SFT rows (chat template, masked labels) or sequence(-pair) classification rows.")
@click.option("--text", "text_field", metavar="FIELD", help="classification: the text field.")
@click.option("--text-pair", "pair_field", metavar="FIELD", help="classification: the second text field.")
@click.option("--label", "label_field", metavar="FIELD", help="classification: the label field.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a tokenizer folder's own Python code to run.")
@click.option("--force", is_flag=True, help="Redo the work even if OUTDIR is up to date (a folder dataprep did not write is never replaced).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Rows per tokenizer call.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
              help="Input format; by default taken from the file name (stdin: sniffed).")
@click.option("--rejects", metavar="FILE", default=None,
              help='Write rejected rows to FILE (JSONL) with {"stage", "reason", "detail", "location"}.')
@click.option("--on-error", type=click.Choice(["fail", "reject"]), default="fail", show_default=True,
              help="Malformed input lines: stop with exit 2, or send them to --rejects and carry on.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: on a Ray cluster (dataprep[ray]); OUTDIR (a path or a pyarrow.fs "
                   "URI) gets Parquet parts per split, the manifest and the tokenizer; --rejects names a folder.")
@click.option("--ray-address", metavar="ADDR", default=None,
              help="With --engine ray: the cluster to join (auto: the one `ray start` runs here).")
@click.option("--save-to-disk", metavar="DIR", default=None,
              help="With --engine ray: also write the save_to_disk folder the local engine writes, byte for byte.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(
    inputs: tuple[str, ...], outdir: str, tokenizer: str, template: str | None, max_length: int | None,
    mask_history: bool, train_on_prompt: bool, truncation: str, special_tokens: str, reasoning: str,
    inserted: str, encoder: str, emit_for: str, task: str, text_field: str | None,
    pair_field: str | None, label_field: str | None, trust_remote_code: bool, force: bool, batch_size: int,
    input_format: str | None, rejects: str | None, on_error: str, engine: str, ray_address: str | None,
    save_to_disk: str | None, quiet: bool,
) -> None:
    """Tokenize records into a datasets.DatasetDict folder, one split per `split` value (default `train`).

    Causal (default): each row is rendered by the chat template and encoded once, so input_ids equal
    apply_chat_template's; labels are -100 except on assistant turns (content + end-of-turn token). A token is
    supervised iff its first character lies inside an assistant turn. Rows with nothing to learn are rejected.

    Classification: --text FIELD [--text-pair FIELD] --label FIELD; the tokenizer adds its own [CLS]/[SEP];
    labels are ids into the sorted label values (written in OUTDIR/dataprep.json).

    An INPUT written NAME=PATH puts all rows of PATH in split NAME. OUTDIR appears only when the run
    succeeds. Run again with the same inputs and options and it is found up to date (content hashes, not
    paths or times); --force redoes it.

    \b
    Examples:
      dataprep tokenize data.jsonl -o out/ --tokenizer ./qwen2.5 --max-length 2048
      dataprep split data.jsonl --val-size 0.1 | dataprep tokenize - -o out/ --tokenizer ./tok --mask-history
      dataprep tokenize data.jsonl -o out/ --tokenizer ./gpt2 --template alpaca --truncation drop
      dataprep tokenize train=mrpc/train.tsv validation=mrpc/dev.tsv -o mrpc/ --tokenizer ./bert \\
          --task classification --text '#1 String' --text-pair '#2 String' --label Quality
    """
    from dataprep.tokenize import CausalOptions, TokenizeJob, tokenize_to_disk

    if mask_history and train_on_prompt:
        raise UsageProblem("--mask-history and --train-on-prompt cannot be used together")
    mask = "last" if mask_history else "prompt" if train_on_prompt else None
    causal_only = {"--template": template, "--mask-history/--train-on-prompt": mask,
                   "--special-tokens text": special_tokens if special_tokens != "reject" else None,
                   "--reasoning expand": reasoning if reasoning != "template" else None,
                   "--template-inserts train": inserted if inserted != "mask" else None}
    class_only = {"--text": text_field, "--text-pair": pair_field, "--label": label_field}
    job = TokenizeJob(inputs=list(inputs), outdir=outdir, tokenizer=tokenizer, task=task, template=template,
                      trust_remote_code=trust_remote_code, force=force, batch_size=batch_size,
                      input_format=input_format, rejects=rejects, on_error=on_error,
                      emit_for=emit_for)
    if task == "classification":
        from dataprep.tokenize import ClassifyOptions

        _refuse(causal_only, "--task causal")
        if not text_field:
            raise UsageProblem("--task classification needs --text FIELD", hint="and usually --label FIELD")
        job.classify = ClassifyOptions(text=text_field, text_pair=pair_field, label=label_field,
                                       max_length=max_length, truncation=truncation)
    else:
        _refuse(class_only, "--task classification")
        job.causal = CausalOptions(max_length=max_length, mask=mask or "all", truncation=truncation,
                                   special_tokens=special_tokens, reasoning=reasoning, inserted=inserted,
                                   encoder=encoder)
    if engine == "ray":
        _on_ray(job, ray_address, save_to_disk, quiet)
        return
    if ray_address or save_to_disk:
        raise UsageProblem("--ray-address and --save-to-disk go with --engine ray")
    bar = progress(quiet, "tokenize")
    try:
        result = tokenize_to_disk(job, progress=bar)
    finally:
        bar.close()
    if not quiet:
        click.echo(result.summary, err=True)


def _refuse(options: dict[str, object], needs: str) -> None:
    given = [name for name, value in options.items() if value]
    if given:
        raise UsageProblem(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with {needs}")


def _on_ray(job: object, address: str | None, save_to_disk: str | None, quiet: bool) -> None:
    from dataprep.cluster.engine import execute
    from dataprep.cluster.job import Settings, from_tokenize

    cluster, old = from_tokenize(job, Settings(address=address), save_to_disk)  # type: ignore[arg-type]
    if old is not None:
        if not quiet:
            click.echo(f"tokenize: {cluster.output} is up to date (key {cluster.key[:12]}; --force to redo)", err=True)
        return
    result = execute(cluster)
    if not quiet:
        for line in result.lines:
            click.echo(line, err=True)
