"""Tokenize canonical records into a dataset folder.

* :mod:`~dataprep.tokenize.layout`: the token-batch layout, ``IGNORE_INDEX`` and the ``Encoder`` protocol (light:
  ``inspect`` and ``train`` import from it);
* :mod:`~dataprep.tokenize.causal`: the causal-LM encoder (chat template, masked labels, truncation);
* :mod:`~dataprep.tokenize.pair`: the sequence(-pair) classification encoder;
* :mod:`~dataprep.tokenize.job`: the run (cache check, the stage under ``stage.run``, manifest, atomic commit).
"""

from dataprep.tokenize.causal import CausalOptions, CausalTokenizer, supervised_mask
from dataprep.tokenize.job import TokenizeJob, TokenizeResult, TokenizeStage, parse_input, tokenize_to_disk
from dataprep.tokenize.layout import (
    CAUSAL_SCHEMA,
    IGNORE_INDEX,
    BatchResult,
    Encoder,
    TokenizedBatch,
)
from dataprep.tokenize.pair import ClassifyOptions, PairClassifier

__all__ = [
    "CAUSAL_SCHEMA", "IGNORE_INDEX", "BatchResult", "CausalOptions", "CausalTokenizer", "ClassifyOptions", "Encoder",
    "PairClassifier", "TokenizeJob", "TokenizeResult", "TokenizeStage", "TokenizedBatch",
    "parse_input", "supervised_mask", "tokenize_to_disk",
]
