"""The dataset card: the manifest's facts, as a README."""

from __future__ import annotations

from dataprep.card import dataset_card
from tests.test_manifest import sample_manifest


def test_dataset_card_has_the_manifest_facts():
    card = dataset_card(sample_manifest())
    assert "| train | 3 | 30 | n/a | 1 |" in card
    assert "- `too_long`: 2" in card
    assert "0 = `0`, 1 = `1`" in card
    assert "`train.tsv` → split `train`" in card and f"`{'k' * 64}`" in card
