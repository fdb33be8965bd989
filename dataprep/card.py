"""The dataset card (``README.md``) written into every dataset folder: the manifest's facts, for people."""

from __future__ import annotations

import json
from pathlib import Path

from dataprep.manifest import CARD, Manifest


def dataset_card(manifest: Manifest) -> str:
    tok = manifest.tokenizer
    lines = [
        "# Tokenized dataset",
        "",
        f"Written by dataprep {manifest.dataprep_version}, task **{manifest.task}**.",
        "Load it with `datasets.load_from_disk(<this folder>)`; the tokenizer is in `tokenizer/`.",
        "",
        "## Splits",
        "",
        "| split | rows | tokens | supervised tokens | truncated |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in manifest.splits.items():
        supervised = "n/a" if s.supervised_tokens is None else f"{s.supervised_tokens:,}"
        lines.append(f"| {name} | {s.rows:,} | {s.tokens:,} | {supervised} | {s.truncated:,} |")
    totals = manifest.totals
    lines += ["", "## Rows", "",
              f"{totals.rows_in:,} rows in, {totals.rows_out:,} written, {totals.rejected:,} rejected."]
    if manifest.rejected:
        lines.append("")
        lines += [f"- `{reason}`: {n:,}" for reason, n in manifest.rejected.items()]
    if manifest.packing:
        lines += packing_lines(manifest.packing)
    lines += ["", "## How it was made", ""]
    lines += [f"- {k}: `{json.dumps(v, ensure_ascii=False)}`" for k, v in manifest.options.items()]
    template = manifest.template
    if template:
        lines.append(f"- template: `{template['name']}` (text sha256 `{template['sha256'][:16]}…`)")
        system = template.get("default_system")
        lines.append(f"- default system prompt: {json.dumps(system, ensure_ascii=False) if system else 'none'}")
    if manifest.encoder:
        lines.append(f"- encoder: `{manifest.encoder.get('name')}` {manifest.encoder.get('version', '')}".rstrip())
    if manifest.self_check:
        check = manifest.self_check
        lines.append(f"- self-check against the reference render: {check.get('passed', 0):,} of "
                     f"{check.get('checked', 0):,} sampled rows identical")
    if manifest.labels:
        lines.append("- labels: " + ", ".join(f"{i} = `{n}`" for i, n in enumerate(manifest.label_names)))
    lines += ["", "## Tokenizer", ""]
    lines.append(f"- class `{tok.class_name}`, len {tok.len:,} (vocab {tok.vocab_size or 0:,})")
    lines.append(f"- pad id {tok.pad_token_id}, eos id {tok.eos_token_id}, bos id {tok.bos_token_id}")
    lines += [f"- `{name}` sha256 `{sha}`" for name, sha in tok.files_sha256.items()]
    lines += ["", "## Inputs", ""]
    lines += [
        f"- `{i['name']}`" + (f" → split `{i['split']}`" if i.get("split") else "") + f": {i['bytes']:,} bytes, "
        f"sha256 `{i['sha256']}`"
        for i in manifest.inputs
    ]
    lines += ["", f"Cache key: `{manifest.key}`", ""]
    return "\n".join(lines)


def packing_lines(packing: dict) -> list[str]:
    """The card's packing section (``dataprep pack``): what a packed row is, and how full the packs are."""
    n = packing["max_length"]
    lines = ["", "## Packing", "",
             f"{packing['rows_packed']:,} rows packed into {packing['packs']:,} rows of at most {n:,} tokens "
             f"({packing['strategy']}), efficiency {100 * packing['efficiency']:.1f}% (real tokens / (packs x {n:,})).",
             "Each row holds `input_ids`, `labels`, `position_ids` (restarting at 0 for each original row), "
             "`seq_lengths`, `ids` and `source_rows`; there is no `attention_mask`: keep the examples apart with "
             "`position_ids` (varlen attention) or a block-diagonal mask built from `seq_lengths`. In TRL: "
             "`SFTConfig(padding_free=True, max_length=None)`, which reads `seq_lengths` (exact with TRL 1.16; "
             "`dataprep pack --emit-for trl` adds the `assistant_masks`/`completion_mask` TRL 0.17-1.6 read "
             "instead of `labels`).",
             "", "| split | rows in | packed | rejected | packs | efficiency |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in packing["splits"].items():
        lines.append(f"| {name} | {s['rows_in']:,} | {s['rows_packed']:,} | {s['rejected']:,} | {s['packs']:,} | "
                     f"{100 * s['efficiency']:.1f}% |")
    return lines


def write_card(folder: Path, manifest: Manifest, outdir: str) -> None:
    """The card (facts, then how to train on the folder in each consumer) and a consumer's ready config file.

    The card names the folder ``path/to/this/folder``, not where it was written, so the same inputs give the same
    bytes wherever the folder goes; a config file (``llamafactory.yaml``) holds the real path, as it must.
    """
    from dataprep import consumers

    facts = manifest.to_dict()
    card = dataset_card(manifest)
    if manifest.task == "causal":
        card += "\n" + consumers.card_section(facts)
        for name, text in consumers.config_files(manifest.emit_for, facts, outdir).items():
            (folder / name).write_text(text, encoding="utf-8")
    (folder / CARD).write_text(card, encoding="utf-8")
