"""What a tokenize run is asked to do: the option dataclasses of both tasks and the job.

Kept apart from the encoders so that reading a recipe or parsing a command line does not import the template
engine, jinja2 and pyarrow's compute functions (about a tenth of a second of start-up for a run that never
tokenizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MASK_MODES = ("all", "last", "prompt")
TRUNCATION_MODES = ("history", "drop")
SPECIAL_TOKEN_MODES = ("reject", "text")
REASONING_MODES = ("template", "expand")
INSERTED_MODES = ("mask", "train")


@dataclass(frozen=True)
class CausalOptions:
    max_length: int | None = None
    mask: str = "all"
    truncation: str = "history"
    special_tokens: str = "reject"
    reasoning: str = "template"
    inserted: str = "mask"
    encoder: str = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (("mask", MASK_MODES), ("truncation", TRUNCATION_MODES),
                              ("special_tokens", SPECIAL_TOKEN_MODES), ("reasoning", REASONING_MODES),
                              ("inserted", INSERTED_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be at least 1")

    def key(self) -> dict[str, Any]:
        """What shapes the output (the encoder does not: every encoder gives the reference's ids)."""
        return {"max_length": self.max_length, "mask": self.mask, "truncation": self.truncation,
                "special_tokens": self.special_tokens, "reasoning": self.reasoning, "inserted": self.inserted}


@dataclass(frozen=True)
class ClassifyOptions:
    text: str
    text_pair: str | None = None
    label: str | None = None
    max_length: int | None = None
    truncation: str = "history"

    def __post_init__(self) -> None:
        if self.truncation not in ("history", "drop"):
            raise ValueError("truncation must be 'history' (longest_first for pairs) or 'drop'")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be at least 1")


@dataclass
class TokenizeJob:
    """What ``dataprep tokenize`` was asked to do; ``inputs`` are paths, ``-``, or ``NAME=PATH`` (split per file)."""

    inputs: list[str]
    outdir: str
    tokenizer: str
    task: str = "causal"
    template: str | None = None
    causal: CausalOptions = field(default_factory=CausalOptions)
    classify: Any = None  # a ClassifyOptions for task="classification"
    trust_remote_code: bool = False
    force: bool = False
    batch_size: int = 1024
    input_format: str | None = None
    rejects: str | None = None
    on_error: str = "fail"
    emit_for: str = "dataprep"  # the consumer layout of the splits (dataprep.emit)
