"""``loss.png``: training and evaluation loss against the optimizer step, drawn headless (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataprep.io import AtomicFile


def plot_losses(rows: list[dict[str, Any]], path: str | Path, title: str = "loss", ylabel: str = "loss") -> Path:
    """Draw ``rows`` (train_log.jsonl lines) to ``path`` atomically; eval loss as markers, since it is sparse."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", linewidth=1.5)
    if evals:
        ax.plot(*zip(*evals, strict=True), label="eval loss", color="tab:orange", marker="o", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if train or evals:
        ax.legend()
    fig.tight_layout()
    target = Path(path)
    with AtomicFile(target, "wb") as out:
        fig.savefig(out.handle, format="png")
    return target
