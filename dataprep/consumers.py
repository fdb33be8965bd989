"""How to train on a dataprep folder in the trainers people already use, and the traps that train on other tokens.

The text here is shown twice: in the dataset card of every folder (:func:`card_section`) and in the README. The
Python snippets are also run by the tests (``tests/test_consumers.py`` renders each one with a real folder and a
tiny model and executes it, the label guard included), and the LLaMA-Factory config is the one
``bin/check_llamafactory.py`` trains with; so the text people copy is code that ran.

Placeholders in the templates: ``$data`` (the folder), ``$model`` (the model it was tokenized for), ``$output``
(where the trainer writes) and ``$longest`` (the longest row of the folder, in tokens).

The traps are the rows of the study behind issue 13 that lose labels silently; each is printed with this
folder's own numbers (its longest row against TRL's 1,024 and axolotl's 512, its prompt share).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

TRL_DEFAULT_MAX_LENGTH = 1024
AXOLOTL_DEFAULT_SEQUENCE_LEN = 512
ALL_LAYOUTS = ("dataprep", "trl", "llamafactory", "axolotl", "plain")


@dataclass(frozen=True)
class Snippet:
    """One consumer's how-to: the code, the layouts it works on, and what must be installed to run it."""

    consumer: str
    title: str
    language: str
    layouts: tuple[str, ...]
    requires: tuple[str, ...]
    template: str

    def render(self, *, data: str, model: str, output: str, longest: int) -> str:
        return Template(self.template).substitute(data=data, model=model, output=output, longest=longest)


TRANSFORMERS = Snippet("transformers", "transformers Trainer", "python", ALL_LAYOUTS, ("transformers",), '''\
import datasets
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                          TrainingArguments)

from dataprep.train.guard import guard_callback  # optional: stops the run if the trainer changes labels

data = "$data"
trainer = Trainer(
    model=AutoModelForCausalLM.from_pretrained("$model"),
    args=TrainingArguments("$output", per_device_train_batch_size=8, num_train_epochs=1),
    train_dataset=datasets.load_from_disk(data)["train"],
    # pads labels with -100; DataCollatorForLanguageModeling would rebuild them from input_ids
    data_collator=DataCollatorForSeq2Seq(AutoTokenizer.from_pretrained(f"{data}/tokenizer")),
    callbacks=[guard_callback(data)],
)
trainer.train()
''')

TRL = Snippet("trl", "TRL SFTTrainer (>= 1.7; 0.20-1.6 with --emit-for trl)", "python", ALL_LAYOUTS,
              ("transformers", "trl"), '''\
import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from dataprep.train.guard import guard_callback  # optional: stops the run if the trainer changes labels

data = "$data"
trainer = SFTTrainer(
    model=AutoModelForCausalLM.from_pretrained("$model"),
    # max_length=None: the default 1024 cuts rows again (the longest row here has $longest tokens).
    # Packing: packing=True, max_length=$longest or more.
    args=SFTConfig("$output", max_length=None, per_device_train_batch_size=8, num_train_epochs=1),
    train_dataset=datasets.load_from_disk(data)["train"],
    processing_class=AutoTokenizer.from_pretrained(f"{data}/tokenizer"),
    callbacks=[guard_callback(data)],
)
trainer.train()
''')

TORCH = Snippet("torch", "plain PyTorch loop", "python", ALL_LAYOUTS, ("transformers",), '''\
import datasets
import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoModelForCausalLM

from dataprep.train.guard import LabelGuard  # optional: checks the first batches

data = "$data"
train = datasets.load_from_disk(data)["train"].with_format(
    "torch", columns=["input_ids", "attention_mask", "labels"])


def collate(rows):
    def pad(key, value):
        return pad_sequence([row[key] for row in rows], batch_first=True, padding_value=value).long()
    return {"input_ids": pad("input_ids", 0), "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100)}  # -100: padding is never a target


model = AutoModelForCausalLM.from_pretrained("$model")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
guard = LabelGuard.from_folder(data)
model.train()
for batch in torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, collate_fn=collate):
    if not guard.done:
        guard.check(batch)
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
''')

LLAMAFACTORY = Snippet("llamafactory", "LLaMA-Factory (tokenized_path)", "yaml", ("llamafactory",), ("llamafactory",),
                       '''\
# llamafactory-cli train this.yaml: the folder as it is, written with --emit-for llamafactory
model_name_or_path: $model
stage: sft
do_train: true
finetuning_type: lora
dataset: dataprep  # LLaMA-Factory insists on a name; with tokenized_path it is never read
tokenized_path: $data
output_dir: $output
per_device_train_batch_size: 8
num_train_epochs: 1.0
''')

LLAMAFACTORY_EVAL = '''\
val_size: 0.1  # any value > 0 lets LLaMA-Factory evaluate; it evaluates the folder's validation split
eval_strategy: steps
eval_steps: 100
per_device_eval_batch_size: 8
'''

AXOLOTL = Snippet("axolotl", "axolotl (pre-tokenized)", "yaml", ("axolotl",), ("axolotl",), '''\
# axolotl train this.yaml: the folder as it is, written with --emit-for axolotl
base_model: $model
datasets:
  - path: $data
    split: train
    type:  # empty: the rows are already tokenized
sequence_len: $longest  # the longest row; axolotl drops longer rows silently (default 512)
excess_length_strategy: raise
micro_batch_size: 8
num_epochs: 1
output_dir: $output
''')

SNIPPETS: tuple[Snippet, ...] = (TRANSFORMERS, TRL, TORCH, LLAMAFACTORY, AXOLOTL)


def longest_row(manifest: dict[str, Any]) -> int | None:
    """The longest row of any split, from the manifest's per-split ``longest`` (``None`` if it has none)."""
    values = [s.get("longest") for s in manifest.get("splits", {}).values()]
    values = [v for v in values if isinstance(v, int)]
    return max(values) if values else None


def traps(manifest: dict[str, Any]) -> list[str]:
    """The silent traps, worded with this folder's numbers; the first ones are the most likely to bite."""
    longest = longest_row(manifest)
    totals = manifest.get("totals", {})
    tokens, supervised = totals.get("tokens"), totals.get("supervised_tokens")
    prompt = (f" (here +{(tokens - supervised) / supervised:.0%} tokens)" if tokens and supervised else "")
    out = [
        "**Collators that rebuild labels.** transformers' `DataCollatorForLanguageModeling` copies `input_ids` "
        f"into `labels` and trains on every prompt token{prompt}; the default collator and "
        "`DataCollatorWithPadding` cannot pad `labels` and crash on batches of more than one row. Use "
        "`DataCollatorForSeq2Seq`, or dataprep's `PadCollator`.",
    ]
    if longest is not None and longest > TRL_DEFAULT_MAX_LENGTH:
        out.append(f"**TRL cuts rows again.** `SFTConfig(max_length=...)` defaults to {TRL_DEFAULT_MAX_LENGTH:,} "
                   f"and the longest row here has **{longest:,} tokens**: set `max_length=None` (or at least "
                   f"{longest:,}), or the rows over {TRL_DEFAULT_MAX_LENGTH:,} lose their ends, their end-of-turn "
                   "token included, and rows left with nothing to learn are dropped.")
    else:
        shown = f"{longest:,} tokens" if longest is not None else "not recorded"
        out.append(f"**TRL's `max_length`** defaults to {TRL_DEFAULT_MAX_LENGTH:,} and cuts longer rows again; the "
                   f"longest row here: {shown}. `max_length=None` is always safe without packing.")
    out += [
        "**TRL 0.20-1.6 with `packing=True` or `use_liger_kernel=True`** drops the `labels` column and rebuilds "
        "labels from `input_ids`, masked only by `assistant_masks`/`completion_mask`: write the folder with "
        "`--emit-for trl` (0.20-0.21 with liger also need `completion_only_loss=True`). TRL 0.19 packs and "
        "runs liger on `input_ids` alone: no layout helps, do not pack. TRL 0.17-0.18 ignore `labels` always: "
        "`--emit-for trl` with `completion_only_loss=True` and no packing. TRL >= 1.7 uses `labels` as they are.",
        "**TRL `assistant_only_loss=True`** needs conversational text and fails on tokenized rows; the labels "
        "already mask everything but the assistant. **`padding_free=True`** needs `max_length=None` (TRL 1.x "
        "refuses otherwise) and, on a GPU, flash-attention.",
        f"**axolotl** drops rows longer than `sequence_len` (default {AXOLOTL_DEFAULT_SEQUENCE_LEN}) without a "
        "word: set it to the longest row and `excess_length_strategy: raise`. **LLaMA-Factory** needs "
        "`--emit-for llamafactory` (its collator fails on the string `id` column) and a `dataset` name even "
        "with `tokenized_path`.",
        "**Reading the folder** needs datasets >= 4.0 unless it was written in the datasets-3 form.",
    ]
    return out


def available(layout: str) -> list[Snippet]:
    return [s for s in SNIPPETS if layout in s.layouts]


def card_section(manifest: dict[str, Any], data: str = "path/to/this/folder", *, model: str = "MODEL",
                 output: str = "out") -> str:
    """The dataset card's "How to train on it" section: the guard, the snippets for this folder's layout,
    the layouts others need, and the traps."""
    layout = manifest.get("emit_for", "dataprep")
    longest = longest_row(manifest)
    shown_longest = longest if longest is not None else TRL_DEFAULT_MAX_LENGTH
    lines = ["## How to train on it", "",
             f"Rows are final: `labels` are -100 except on the tokens to learn. Feed them to the model as they "
             f"are. Layout: `{layout}` (`--emit-for`).", "",
             "Any trainer: `callbacks=[dataprep.train.guard.guard_callback(folder)]` checks the first batches "
             "the model gets against these rows and stops the run, with the reason, when the trainer cut or "
             "rebuilt the labels.", ""]
    for snippet in available(layout):
        code = snippet.render(data=data, model=model, output=output, longest=shown_longest)
        if snippet is LLAMAFACTORY and "validation" in manifest.get("splits", {}):
            code += LLAMAFACTORY_EVAL
        lines += [f"### {snippet.title}", "", f"```{snippet.language}", code.rstrip("\n"), "```", ""]
    others = [s for s in SNIPPETS if layout not in s.layouts]
    if others:
        lines.append("Other trainers read another layout: " + "; ".join(
            f"{s.title}: `--emit-for {s.layouts[0]}`" for s in others) + ".")
        lines.append("")
    lines += ["### Traps that train on other tokens without an error", ""]
    lines += [f"- {t}" for t in traps(manifest)]
    lines.append("")
    return "\n".join(lines)


def config_files(target: str, manifest: dict[str, Any], folder: str | Path, *, model: str = "MODEL",
                 output: str = "out") -> dict[str, str]:
    """Ready configs written beside a folder of ``target``'s layout: ``llamafactory.yaml``, ``axolotl.yaml``."""
    longest = longest_row(manifest) or TRL_DEFAULT_MAX_LENGTH
    data = str(Path(folder).resolve())
    if target == "llamafactory":
        text = LLAMAFACTORY.render(data=data, model=model, output=output, longest=longest)
        if "validation" in manifest.get("splits", {}):
            text += LLAMAFACTORY_EVAL
        return {"llamafactory.yaml": text}
    if target == "axolotl":
        return {"axolotl.yaml": AXOLOTL.render(data=data, model=model, output=output, longest=longest)}
    return {}
