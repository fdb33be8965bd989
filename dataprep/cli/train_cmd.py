"""``dataprep train``: fine-tune a model on a tokenized dataset folder (torch is imported only when it runs)."""

from __future__ import annotations

import click

from dataprep.errors import MissingExtra

TRAIN_EXTRA = ("torch", "accelerate", "peft", "matplotlib")


@click.command("train")
@click.option("--data", required=True, metavar="OUTDIR", help="A folder written by dataprep tokenize.")
@click.option("--model", required=True, metavar="DIR|tiny",
              help="A saved model (local folder; hub id when online), or 'tiny': a small random model sized to "
                   "the dataset's tokenizer (Llama-style for causal data, BERT-style for classification).")
@click.option("-o", "--output", required=True, metavar="RUNDIR", help="Where checkpoints and the final model go.")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="Passes over the train split.")
@click.option("--max-steps", type=int, default=-1, help="Stop after this many optimizer steps (overrides --epochs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Rows per device.")
@click.option("--eval-batch-size", type=click.IntRange(min=1), default=None, help="Default: --batch-size.")
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True,
              help="Micro-batches per optimizer step.")
@click.option("--lr", type=float, default=None,
              help="Peak learning rate. Default: 1e-3 for tiny, 2e-4 with --lora-r, 2e-5 otherwise.")
@click.option("--scheduler", type=click.Choice(["cosine", "linear"]), default="cosine", show_default=True)
@click.option("--warmup-ratio", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Share of the steps spent warming the learning rate up from 0.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--max-grad-norm", type=float, default=1.0, show_default=True, help="Gradient clipping (0: none).")
@click.option("--seed", type=int, default=42, show_default=True, help="Model init, data order, dropout.")
@click.option("--eval-steps", type=click.IntRange(min=1), default=None,
              help="Evaluate on the validation split every N steps (always once at the end when there is one).")
@click.option("--logging-steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--save-steps", type=click.IntRange(min=1), default=None,
              help="Checkpoint every N steps (and at the end). Default: 500, or --eval-steps with --load-best.")
@click.option("--save-total-limit", type=click.IntRange(min=1), default=None, help="Keep at most N checkpoints.")
@click.option("--load-best", is_flag=True, help="End with the checkpoint of lowest eval loss.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in RUNDIR, same data order.")
@click.option("--group-by-length", is_flag=True, help="Batch rows of similar length (less padding).")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations: less memory, ~20% slower.")
@click.option("--lora-r", type=click.IntRange(min=1), default=None, help="Train LoRA adapters of rank R (peft).")
@click.option("--lora-alpha", type=click.IntRange(min=1), default=None, help="LoRA scaling. Default: 2 * R.")
@click.option("--lora-target", metavar="MODULES", default=None,
              help="Comma-separated module names for LoRA (e.g. q_proj,v_proj). Default: every linear layer "
                   "but the output head.")
@click.option("--merge", is_flag=True, help="With --lora-r: also write merged full weights to RUNDIR/merged.")
@click.option("--report-to", type=click.Choice(["none", "tensorboard", "wandb"]), default="none",
              show_default=True, help="Experiment tracker (wandb runs offline unless WANDB_API_KEY/WANDB_MODE is set).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors on stderr.")
def command(**kwargs: object) -> None:
    """Fine-tune a causal LM (or a sequence classifier) on a tokenized dataset.

    Reads the Arrow splits of OUTDIR as they are (train, and validation for evaluation), checks the
    model against the dataset's tokenizer, trains with transformers' Trainer (GPU in bf16 when there is
    one, CPU in fp32 otherwise), and writes to RUNDIR the model (or LoRA adapter), the tokenizer,
    train_log.jsonl and loss.png. Multi-GPU: run the same command under torchrun or accelerate launch.

    \b
    Examples:
      dataprep train --data tok/ --model tiny -o runs/tiny --max-steps 60 --eval-steps 20
      dataprep train --data tok/ --model ./Qwen2.5-0.5B -o runs/qwen --epochs 2 --lr 2e-5 \\
        --batch-size 4 --grad-accum 8 --warmup-ratio 0.03 --eval-steps 200 --load-best
      dataprep train --data tok/ --model ./Qwen2.5-0.5B -o runs/lora --lora-r 16 --merge
      torchrun --nproc_per_node 4 -m dataprep train --data tok/ --model ./Qwen2.5-0.5B -o runs/ddp
    """
    try:
        from dataprep.train import TrainOptions, train
    except ImportError as exc:
        root = (exc.name or "").split(".")[0]
        if root in TRAIN_EXTRA:
            raise MissingExtra(root, "train") from None
        raise
    target = kwargs.pop("lora_target")
    options = TrainOptions(**kwargs, lora_target=[t.strip() for t in str(target).split(",") if t.strip()]
                           if target else [])  # type: ignore[arg-type]
    result = train(options)
    if not options.quiet and result.written:
        click.echo(result.summary(), err=True)
