"""Trainer callbacks: the run's JSONL log, and progress on stderr (the Trainer's own printers use stdout).

``train_log.jsonl`` is rewritten from ``TrainerState.log_history`` whenever a checkpoint is saved and at the end;
the history is part of every checkpoint, so after ``--resume`` the file again matches the steps actually kept.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from dataprep.io import AtomicFile

LOG_KEYS = {"learning_rate": "lr", "num_input_tokens_seen": "tokens_seen"}
SKIP_KEYS = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
             "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_tokens_per_second"}
QUIET_KEYS = {"epoch", "num_input_tokens_seen", "grad_norm"}


def log_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step: training numbers and the evaluation made at that step merged."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in history:
        if "total_flos" in entry:
            continue
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        for key, value in entry.items():
            if key in SKIP_KEYS or key == "step":
                continue
            row[LOG_KEYS.get(key, key)] = _json_number(value)
    return [rows[s] for s in sorted(rows)]


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_log(history: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    rows = log_rows(history)
    with AtomicFile(path) as out:
        for row in rows:
            out.handle.write(json.dumps(row) + "\n")
    return rows


class JsonlLog(TrainerCallback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            write_log(state.log_history, self.path)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            write_log(state.log_history, self.path)


class StderrProgress(TrainerCallback):
    """A tqdm bar on stderr when it is a terminal; otherwise one short line per logging step."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.tty = sys.stderr.isatty()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                            file=sys.stderr, dynamic_ncols=True, leave=False)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "total_flos" in logs:
            return
        shown = [f"{LOG_KEYS.get(k, k)} {v:.4g}" for k, v in logs.items()
                 if k not in SKIP_KEYS and k not in QUIET_KEYS and isinstance(v, (int, float))]
        line = f"train: step {state.global_step}/{state.max_steps} " + " ".join(shown)
        if self.bar is not None:
            self.bar.set_postfix_str(" ".join(shown), refresh=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
