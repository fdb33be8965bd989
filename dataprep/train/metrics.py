"""Evaluation numbers computed with numpy, so their definition is on the page rather than in a metrics package."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def perplexity(loss: float) -> float:
    """exp(mean token cross-entropy); ``inf`` rather than an overflow error when a fresh model is far off."""
    return math.exp(loss) if loss < 700 else math.inf


def accuracy_f1(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 over the classes present in labels or predictions (F1 of a class is 0 when
    precision + recall is 0); for two classes also the F1 of class 1, the number GLUE reports for MRPC."""
    predictions = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(labels)
    classes = np.union1d(labels, predictions)
    tp = np.array([np.sum((predictions == c) & (labels == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum((predictions == c) & (labels != c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum((predictions != c) & (labels == c)) for c in classes], dtype=np.float64)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    result = {"accuracy": float(np.mean(predictions == labels)) if len(labels) else 0.0,
              "f1": float(f1.mean()) if len(f1) else 0.0}
    if np.ndim(logits) == 2 and np.shape(logits)[1] == 2:
        positive = np.flatnonzero(classes == 1)
        result["f1_positive"] = float(f1[positive[0]]) if len(positive) else 0.0
    return result


def compute_classification_metrics(eval_prediction: Any) -> dict[str, float]:
    """The Trainer's ``compute_metrics`` hook for sequence classification."""
    logits = eval_prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    return accuracy_f1(logits, eval_prediction.label_ids)
