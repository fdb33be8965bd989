"""Tokenize canonical records into a dataset folder.

* :mod:`~dataprep.tokenize.options`: what a run is asked to do (``CausalOptions``, ``ClassifyOptions``,
  ``TokenizeJob``), light enough for recipes and command lines;
* :mod:`~dataprep.tokenize.layout`: the token-batch layout, ``IGNORE_INDEX`` and the ``Encoder`` protocol (light:
  ``inspect`` and ``train`` import from it);
* :mod:`~dataprep.tokenize.causal`: the causal-LM encoder (chat template, masked labels, truncation);
* :mod:`~dataprep.tokenize.pair`: the sequence(-pair) classification encoder;
* :mod:`~dataprep.tokenize.job`: the run (cache check, the stage under ``stage.run``, manifest, atomic commit).

The names below are imported on first use, so importing one light module of the package does not load the
template engine with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "CausalOptions": "options", "ClassifyOptions": "options", "TokenizeJob": "options",
    "CausalTokenizer": "causal", "supervised_mask": "causal",
    "TokenizeResult": "job", "TokenizeStage": "job", "parse_input": "job", "tokenize_to_disk": "job",
    "CAUSAL_SCHEMA": "layout", "IGNORE_INDEX": "layout", "BatchResult": "layout", "Encoder": "layout",
    "TokenizedBatch": "layout",
    "PairClassifier": "pair",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
