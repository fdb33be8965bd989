"""Fine-tuning on a tokenized dataset folder, built on transformers' ``Trainer``.

Why ``Trainer`` and not a loop over ``accelerate``: everything the issue asks beyond the loop itself is already in
``Trainer`` and tested there: checkpoints with optimizer, scheduler and RNG state (so ``--resume`` continues with
the same data order), best-checkpoint tracking and rotation, gradient accumulation with the loss normalised by the
number of supervised tokens across accumulated micro-batches, length-grouped sampling, bf16 autocast, activation
checkpointing, peft models, reporting integrations, and DDP/FSDP under ``torchrun`` or ``accelerate launch``
(``Trainer`` runs on ``accelerate`` underneath). A home-made loop would re-implement all of it with fewer tests.
What dataprep adds is the edges: reading the dataset exactly as tokenize wrote it, refusing a model that does
not match its tokenizer, a collator that tells padding from EOS by length (and keeps packed rows apart), the label
guard on the first batches, stderr-only progress, the JSONL log and the loss plot.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from dataprep.errors import DataprepError, UsageProblem
from dataprep.io import AtomicFile
from dataprep.train.callbacks import JsonlLog, StderrProgress, write_log
from dataprep.train.collate import PadCollator
from dataprep.train.data import TokenizedData, load_tokenized
from dataprep.train.guard import LabelGuard
from dataprep.train.metrics import compute_classification_metrics, perplexity
from dataprep.train.model import TINY, apply_lora, build_model
from dataprep.train.packed import packed_collator
from dataprep.train.plot import plot_losses

SCHEDULERS = ("cosine", "linear")
REPORTERS = ("none", "tensorboard", "wandb")
DEFAULT_SAVE_STEPS = 500


@dataclass
class TrainOptions:
    """Everything a run depends on; the CLI fills it from its flags."""

    data: str
    model: str
    output: str
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    eval_batch_size: int | None = None
    grad_accum: int = 1
    lr: float | None = None
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_steps: int | None = None
    logging_steps: int = 10
    save_steps: int | None = None
    save_total_limit: int | None = None
    load_best: bool = False
    resume: bool = False
    group_by_length: bool = False
    gradient_checkpointing: bool = False
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_target: list[str] = field(default_factory=list)
    merge: bool = False
    report_to: str = "none"
    quiet: bool = False


@dataclass
class TrainResult:
    """What the one-line summary and ``train_result.json`` report."""

    output: str
    task: str
    device: str
    precision: str
    steps: int
    epochs: float
    train_tokens: int
    runtime_s: float
    tokens_per_second: float
    first_loss: float | None
    final_loss: float | None
    eval: dict[str, float]
    written: list[str]

    def summary(self) -> str:
        parts = [f"train: {self.steps} steps ({self.epochs:.2f} epochs) on {self.device} {self.precision} "
                 f"in {self.runtime_s:.1f}s, {self.tokens_per_second:,.0f} tokens/s"]
        if self.final_loss is not None:
            start = f"{self.first_loss:.4f} -> " if self.first_loss is not None else ""
            parts.append(f"train loss {start}{self.final_loss:.4f}")
        if "eval_loss" in self.eval:
            shown = f"eval loss {self.eval['eval_loss']:.4f}"
            if "eval_perplexity" in self.eval:
                shown += f" (ppl {self.eval['eval_perplexity']:.2f})"
            if "eval_accuracy" in self.eval:
                shown += f", accuracy {self.eval['eval_accuracy']:.3f}, F1 {self.eval['eval_f1']:.3f}"
            parts.append(shown)
        parts.append(f"wrote {', '.join(self.written)} to {self.output}")
        return "; ".join(parts)


class _Trainer(Trainer):
    """Adds perplexity next to every causal eval loss, so the log, the best-model choice and the summary agree."""

    add_perplexity = False

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.add_perplexity and "eval_loss" in logs:
            logs["eval_perplexity"] = perplexity(logs["eval_loss"])
        super().log(logs, start_time)


def default_lr(opts: TrainOptions) -> float:
    """A fresh tiny model needs a large step; LoRA adapters a medium one; full fine-tuning a small one."""
    if opts.lr is not None:
        return opts.lr
    if opts.lora_r:
        return 2e-4
    return 1e-3 if opts.model == TINY else 2e-5


def check_options(opts: TrainOptions, data: TokenizedData) -> None:
    if opts.scheduler not in SCHEDULERS:
        raise UsageProblem(f"--scheduler must be one of {', '.join(SCHEDULERS)}")
    if opts.report_to not in REPORTERS:
        raise UsageProblem(f"--report-to must be one of {', '.join(REPORTERS)}")
    if opts.load_best and data.eval_split is None:
        raise UsageProblem(f"--load-best needs a validation split and {data.path} has none")
    if opts.load_best and not opts.eval_steps:
        raise UsageProblem("--load-best needs --eval-steps (checkpoints are compared at evaluation steps)")
    if opts.merge and not opts.lora_r:
        raise UsageProblem("--merge only makes sense with --lora-r")
    if opts.max_steps <= 0 and opts.epochs <= 0:
        raise UsageProblem("give --epochs > 0 or --max-steps > 0")
    if opts.save_steps and opts.load_best and opts.eval_steps and opts.save_steps % opts.eval_steps:
        raise UsageProblem("with --load-best, --save-steps must be a multiple of --eval-steps")


def setup_reporting(report_to: str) -> list[str]:
    """Integrations only when installed; wandb goes offline unless it has a key or a mode, so no run hangs."""
    if report_to == "none":
        return []
    if report_to == "tensorboard":
        if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
            raise DataprepError("tensorboard is not installed", hint="install it with: pip install tensorboard")
        return ["tensorboard"]
    if not importlib.util.find_spec("wandb"):
        raise DataprepError("wandb is not installed", hint="install it with: pip install wandb")
    if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"
    return ["wandb"]


def prepare_split(ds: Any, keep_length: bool) -> Any:
    """Drop what the model never sees; ``length`` stays only as the sampler's key for --group-by-length."""
    drop = [c for c in ("id", "length") if c in ds.column_names and not (c == "length" and keep_length)]
    return ds.remove_columns(drop) if drop else ds


def device_precision() -> tuple[str, bool]:
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return f"cuda ({torch.cuda.get_device_name(0)})", bf16
    return ("mps" if torch.backends.mps.is_available() else "cpu"), False


def training_arguments(opts: TrainOptions, data: TokenizedData, bf16: bool, report_to: list[str]) -> Any:
    evaluating = data.eval_split is not None and bool(opts.eval_steps)
    save_steps = opts.save_steps or (opts.eval_steps if opts.load_best else DEFAULT_SAVE_STEPS)
    return TrainingArguments(
        output_dir=opts.output,
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps if opts.max_steps > 0 else -1,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.eval_batch_size or opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=default_lr(opts),
        lr_scheduler_type=opts.scheduler,
        warmup_steps=opts.warmup_ratio,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        seed=opts.seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available() and not torch.backends.mps.is_available(),
        activation_checkpointing=opts.gradient_checkpointing or None,
        train_sampling_strategy="group_by_length" if opts.group_by_length else "random",
        length_column_name="length",
        eval_strategy="steps" if evaluating else "no",
        eval_steps=opts.eval_steps if evaluating else None,
        prediction_loss_only=data.task == "causal",
        logging_strategy="steps",
        logging_steps=opts.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=opts.save_total_limit,
        load_best_model_at_end=opts.load_best,
        metric_for_best_model="loss" if opts.load_best else None,
        greater_is_better=False if opts.load_best else None,
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="non_padding",
        report_to=report_to or "none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def guard_callbacks(data: TokenizedData, quiet: bool) -> list[Any]:
    """The label guard on the train split of a causal dataset: dataprep train checks itself like any trainer."""
    if data.task != "causal":
        return []
    return [LabelGuard.from_folder(data.path, "train").callback(verbose=not quiet)]


def _find_checkpoint(opts: TrainOptions) -> str | None:
    out = Path(opts.output)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if opts.resume and last is None:
        raise DataprepError(f"{out}: no checkpoint-* folder to resume from")
    if not opts.resume and last is not None:
        raise DataprepError(f"{out} already holds checkpoints of another run",
                            hint="pass --resume to continue it, or choose another -o")
    return last


def _kept_eval(trainer: Trainer, load_best: bool) -> dict[str, float]:
    """The evaluation already made of the weights being saved: the best checkpoint's, or the last step's."""
    step = trainer.state.global_step
    if load_best and trainer.state.best_model_checkpoint:
        step = int(Path(trainer.state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry and entry["step"] == step:
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return {}


@contextlib.contextmanager
def _hushed_transformers(quiet: bool) -> Iterator[None]:
    """transformers' own warnings off with --quiet, its save/load bars off unless stderr is a terminal."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    if quiet:
        transformers.logging.set_verbosity_error()
    if quiet or not sys.stderr.isatty():
        transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


def train(opts: TrainOptions, callbacks: list[Any] | None = None) -> TrainResult:
    """Train on ``opts.data`` and write the model, tokenizer, ``train_log.jsonl`` and ``loss.png`` to ``opts.output``.

    ``callbacks`` are extra ``TrainerCallback`` objects (the benchmark times steps with one).
    """
    with _hushed_transformers(opts.quiet):
        return _train(opts, callbacks or [])


def _train(opts: TrainOptions, callbacks: list[Any]) -> TrainResult:
    data = load_tokenized(opts.data)
    check_options(opts, data)
    report_to = setup_reporting(opts.report_to)
    checkpoint = _find_checkpoint(opts)
    tokenizer = AutoTokenizer.from_pretrained(str(data.tokenizer_dir))
    if len(tokenizer) != data.tokenizer_len:
        raise DataprepError(f"{data.tokenizer_dir}: the tokenizer has {len(tokenizer)} entries but the manifest "
                            f"says {data.tokenizer_len}; the dataset folder was changed after tokenize")
    set_seed(opts.seed)
    model = build_model(opts.model, data, tokenizer)
    out = Path(opts.output)
    written = ["model", "tokenizer", "train_log.jsonl", "loss.png"]
    if opts.lora_r:
        base = copy.deepcopy(model) if opts.model == TINY else None
        model = apply_lora(model, data.task, opts.lora_r, opts.lora_alpha, opts.lora_target or None)
        if base is not None:  # a random base exists nowhere else: keep it, or the adapter means nothing
            if int(os.environ.get("RANK", "0")) == 0:
                base.save_pretrained(out / "base")
            model.peft_config["default"].base_model_name_or_path = str((out / "base").resolve())
            written.append("base/")
        if opts.gradient_checkpointing:
            model.enable_input_require_grads()
        written[0] = "adapter"

    device, bf16 = device_precision()
    args = training_arguments(opts, data, bf16, report_to)
    eval_name = data.eval_split
    pad_id = data.pad_token_id if data.pad_token_id is not None else (tokenizer.pad_token_id or 0)
    multiple = 8 if device.startswith("cuda") else None
    collator = (packed_collator(model, pad_id, multiple) if data.packed  # dataprep pack output: dataprep.train.packed
                else PadCollator(pad_id, pad_to_multiple_of=multiple))
    trainer = _Trainer(
        model=model,
        args=args,
        train_dataset=prepare_split(data.splits["train"], opts.group_by_length),
        eval_dataset=prepare_split(data.splits[eval_name], opts.group_by_length) if eval_name else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_classification_metrics if data.task == "classification" else None,
        callbacks=[JsonlLog(out / "train_log.jsonl"), *guard_callbacks(data, opts.quiet), *callbacks],
    )
    trainer.add_perplexity = data.task == "causal"
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not opts.quiet:
        trainer.add_callback(StderrProgress())

    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - started
    session_tokens = trainer.state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0)
    eval_metrics: dict[str, float] = {}
    if eval_name:
        eval_metrics = _kept_eval(trainer, opts.load_best) or trainer.evaluate()

    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        rows = write_log(trainer.state.log_history, out / "train_log.jsonl")
        title = f"{data.task} · {opts.model if opts.model == TINY else Path(opts.model).name} · {data.path.name}"
        ylabel = "cross-entropy per supervised token" if data.task == "causal" else "cross-entropy per row"
        plot_losses(rows, out / "loss.png", title=title, ylabel=ylabel)
        if opts.lora_r and opts.merge:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
            written.append("merged/")
        losses = [r["loss"] for r in rows if r.get("loss") is not None]
        result = TrainResult(
            output=str(out), task=data.task, device=device, precision="bf16" if bf16 else "fp32",
            steps=trainer.state.global_step, epochs=float(trainer.state.epoch or 0.0),
            train_tokens=int(session_tokens), runtime_s=runtime,
            tokens_per_second=session_tokens / runtime if runtime > 0 else 0.0,
            first_loss=losses[0] if losses else None, final_loss=losses[-1] if losses else None,
            eval={k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))},
            written=written + ["train_result.json"],
        )
        result.eval.pop("epoch", None)
        with AtomicFile(out / "train_result.json") as f:
            f.handle.write(json.dumps({**asdict(result), "train_metrics": output.metrics}, indent=2) + "\n")
        return result
    return TrainResult(str(out), data.task, device, "bf16" if bf16 else "fp32", trainer.state.global_step,
                       float(trainer.state.epoch or 0.0), int(session_tokens), runtime, 0.0, None, None, {}, [])
