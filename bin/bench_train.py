#!/usr/bin/env python3
"""Training throughput of ``dataprep train``: tokens/s for the tiny model on the CPU and, when CUDA is present,
for a ~0.5B-parameter Llama-style model (Qwen2.5-0.5B's shape, random init) in bf16; then packed vs padded.

Both runs go through the real ``dataprep.train.train`` on a dataset folder in tokenize's layout (synthetic rows:
the content does not change the arithmetic). A callback stamps every optimizer step; after the warm-up steps the
rest is cut into windows of equal length and the reported number is the median window's supervised-and-prompt
(non-padding) tokens per second, so start-up, the first compiled kernels and the final save are left out.

Packed vs padded: the same rows of varied length (log-normal, median ``--pack-median`` tokens, clipped to
``--pack-length``) trained padded per batch (``PadCollator``) and packed by ``dataprep pack`` into rows
of ``--pack-length`` (``PackedCollator``: flash-attention varlen when ``flash_attn`` is installed on a bf16 GPU,
else SDPA with the mask built from ``position_ids``). The packed batch holds as many packs as make about the same
real tokens per step as the padded batch. The two runs alternate ``--pack-repeats`` times and each figure is the
median of all its windows. Both are real (non-padding) tokens/s, so their ratio is what packing buys: no compute
on padding, at the price of a mask or varlen attention.

    python bin/bench_train.py                  # CPU tiny model; + the 0.5B model if CUDA is there
    python bin/bench_train.py --threads 1      # torch intra-op threads for the CPU run

On a GPU machine (with ``pip install flash-attn`` for the varlen path), the packed vs padded figures that matter:

    python bin/bench_train.py --pack-length 2048 --pack-median 300
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaForCausalLM, TrainerCallback  # noqa: E402

from dataprep.pack import PackJob, pack_to_disk  # noqa: E402
from dataprep.train import TrainOptions, train  # noqa: E402
from dataprep.train.model import tiny_causal_config  # noqa: E402
from dataprep.train.packed import flash_attention_available  # noqa: E402
from dataprep.train.synthetic import random_rows, write_tokenized  # noqa: E402

TINY_BPE = ROOT / "fixtures" / "tokenizers" / "tiny-bpe"
HALF_B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
          "intermediate_size": 4864, "tie_word_embeddings": True}
HALF_B_VOCAB = 151_936


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.stamps: list[tuple[float, int]] = []

    def on_step_end(self, args: object, state: Any, control: object, **kwargs: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stamps.append((time.perf_counter(), state.num_input_tokens_seen))

    def windows(self, warmup: int, count: int) -> list[float]:
        timed = self.stamps[warmup - 1:]
        size = max(1, (len(timed) - 1) // count)
        rates = []
        for i in range(0, len(timed) - size, size):
            (t0, n0), (t1, n1) = timed[i], timed[i + size]
            rates.append((n1 - n0) / (t1 - t0))
        return rates


def run(data: Path, model: str, out: Path, steps: int, batch_size: int, warmup: int, windows: int) -> dict:
    clock = StepClock()
    opts = TrainOptions(data=str(data), model=model, output=str(out), max_steps=steps, batch_size=batch_size,
                        logging_steps=steps, save_steps=10 * steps, quiet=True)
    result = train(opts, callbacks=[clock])
    rates = clock.windows(warmup, windows)
    return {"tokens_per_s": statistics.median(rates), "windows": rates, "device": result.device,
            "precision": result.precision, "final_loss": result.final_loss}


def bench_tiny(tmp: Path, args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
    data = write_tokenized(tmp / "tiny-data", tokenizer, {"train": random_rows(
        args.tiny_steps * args.tiny_batch, args.tiny_length, len(tokenizer), tokenizer.eos_token_id, seed=0)})
    return run(data, "tiny", tmp / "tiny-run", args.tiny_steps, args.tiny_batch, args.warmup, args.windows)


def make_half_b(tmp: Path, args: argparse.Namespace) -> tuple[Path, int, int]:
    """The ~0.5B model saved once (random init): its folder, parameter count and layers."""
    folder = tmp / "half-b"
    sizes = {**HALF_B, "num_hidden_layers": args.large_layers or HALF_B["num_hidden_layers"]}
    if not folder.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
        config = tiny_causal_config(HALF_B_VOCAB, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                                    eos_token_id=tokenizer.eos_token_id,
                                    max_positions=max(args.large_length, args.pack_length), **sizes)
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    params = sum(p.numel() for p in LlamaForCausalLM.from_pretrained(folder).parameters())
    return folder, params, sizes["num_hidden_layers"]


def bench_half_b(tmp: Path, args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
    folder, params, layers = make_half_b(tmp, args)
    data = write_tokenized(tmp / "half-b-data", tokenizer, {"train": random_rows(
        args.large_steps * args.large_batch, args.large_length, len(tokenizer), tokenizer.eos_token_id, seed=0)})
    result = run(data, str(folder), tmp / "half-b-run", args.large_steps, args.large_batch, args.warmup,
                 args.windows)
    return {**result, "params": params, "layers": layers}


def varied_rows(n: int, median: int, longest: int, vocab_size: int, tokenizer: Any, seed: int) -> list[dict]:
    """Rows of log-normal length, all supervised, ids never the pad id (so non-padding counts are exact)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), 0.9, n).astype(np.int64), 2, longest)
    rows = []
    for i, length in enumerate(lengths.tolist()):
        ids = rng.integers(0, vocab_size - 1, length)
        ids[ids >= tokenizer.pad_token_id] += 1
        ids[-1] = tokenizer.eos_token_id
        rows.append({"id": str(i), "input_ids": ids.tolist(), "attention_mask": [1] * length,
                     "labels": ids.tolist(), "length": length})
    return rows


def bench_packing(tmp: Path, args: argparse.Namespace, model: str, steps: int, batch: int) -> dict:
    """One epoch of the same rows padded (``batch`` rows a step) and packed (as many packs a step as hold about the
    same real tokens), on ``model`` (``tiny`` or a saved model folder): real tokens/s of each."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
    rows = varied_rows(steps * batch, args.pack_median, args.pack_length, len(tokenizer), tokenizer, seed=1)
    padded = write_tokenized(tmp / "varied", tokenizer, {"train": rows})
    packed = tmp / "varied-packed"
    stats = pack_to_disk(PackJob(str(padded), str(packed), args.pack_length)).splits["train"]
    mean = sum(r["length"] for r in rows) / len(rows)
    pack_batch = max(1, round(batch * mean / (stats.tokens / stats.packs)))
    pack_steps = max(args.warmup + args.windows + 1, -(-stats.packs // pack_batch))
    runs: dict[str, Any] = {"efficiency": stats.tokens / (stats.packs * args.pack_length), "mean_length": mean}
    for repeat in range(args.pack_repeats):  # alternated, so a change in the machine's load hits both alike
        for name, data, size, n in (("padded", padded, batch, steps), ("packed", packed, pack_batch, pack_steps)):
            result = run(data, model, tmp / f"run-{name}-{repeat}", n, size, args.warmup, args.windows)
            windows = runs.get(name, {}).get("windows", []) + result["windows"]
            runs[name] = {**result, "batch": size, "windows": windows,
                          "tokens_per_s": statistics.median(windows)}
    runs["packed"]["attention"] = "flash-attention varlen" if flash_attention_available() else "SDPA, mask from positions"
    return runs


def print_packing(label: str, result: dict, args: argparse.Namespace) -> None:
    padded, packed = result["padded"], result["packed"]
    print(f"{label}, {padded['device']} {padded['precision']}, rows of mean {result['mean_length']:.0f} tokens: "
          f"padded (batch {padded['batch']} rows) {padded['tokens_per_s']:,.0f} real tokens/s, packed "
          f"(batch {packed['batch']} x {args.pack_length}, {100 * result['efficiency']:.1f}% full, "
          f"{packed['attention']}) {packed['tokens_per_s']:,.0f} real tokens/s: "
          f"{packed['tokens_per_s'] / padded['tokens_per_s']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the CPU run (default: torch's)")
    parser.add_argument("--tiny-steps", type=int, default=60)
    parser.add_argument("--tiny-batch", type=int, default=8)
    parser.add_argument("--tiny-length", type=int, default=256)
    parser.add_argument("--large-steps", type=int, default=40)
    parser.add_argument("--large-batch", type=int, default=8)
    parser.add_argument("--large-length", type=int, default=1024)
    parser.add_argument("--large-layers", type=int, default=None, help="fewer layers, for a smoke test")
    parser.add_argument("--large", action="store_true", help="run the 0.5B part even without CUDA")
    parser.add_argument("--pack-length", type=int, default=512, help="packed row length (padded rows: at most it)")
    parser.add_argument("--pack-median", type=int, default=100, help="median row length of the packing comparison")
    parser.add_argument("--pack-repeats", type=int, default=2, help="padded/packed runs, alternated")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out before timing")
    parser.add_argument("--windows", type=int, default=5, help="timed windows; the median is reported")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as name:
        tmp = Path(name)
        tiny = bench_tiny(tmp, args)
        print(f"tiny Llama (64 hidden, 2 layers), {tiny['device']} {tiny['precision']}, {torch.get_num_threads()} "
              f"threads, batch {args.tiny_batch} x {args.tiny_length} tokens: {tiny['tokens_per_s']:,.0f} tokens/s "
              f"(median of {len(tiny['windows'])} windows: "
              f"{', '.join(f'{r:,.0f}' for r in tiny['windows'])})")
        if torch.cuda.is_available() or args.large:
            big = bench_half_b(tmp, args)
            print(f"{big['params'] / 1e6:,.0f}M-parameter Llama-style (Qwen2.5-0.5B shape, {big['layers']} layers), "
                  f"{big['device']} "
                  f"{big['precision']}, batch {args.large_batch} x {args.large_length} tokens: "
                  f"{big['tokens_per_s']:,.0f} tokens/s (median of {len(big['windows'])} windows)")
        else:
            print("no CUDA device: the ~0.5B bf16 run was skipped")
        with tempfile.TemporaryDirectory(prefix="tiny-", dir=tmp) as sub:
            print_packing("packed vs padded, tiny Llama", bench_packing(Path(sub), args, "tiny", args.tiny_steps,
                                                                        args.tiny_batch), args)
        if torch.cuda.is_available() or args.large:
            folder, params, _ = make_half_b(tmp, args)
            with tempfile.TemporaryDirectory(prefix="large-", dir=tmp) as sub:
                print_packing(f"packed vs padded, {params / 1e6:,.0f}M-parameter Llama-style",
                              bench_packing(Path(sub), args, str(folder), args.large_steps, args.large_batch), args)


if __name__ == "__main__":
    main()
