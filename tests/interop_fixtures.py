"""Session fixtures of the interop tests (a pytest plugin: ``pytest_plugins = ("tests.interop_fixtures",)``):
the fixture data tokenized once per session, a tiny model for it, and the real alpaca_en_demo when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES, SHARED_DATA
from tests.interop_data import TINY_BPE, tiny_model_dir, tokenize_folder


@pytest.fixture
def one_torch_thread():
    """torch on one thread while a trainer's loader runs, as the interop study ran (set back afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fixture_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fixtures/data/alpaca.json with the tiny BPE tokenizer, in the default layout."""
    return tokenize_folder(tmp_path_factory.mktemp("interop") / "default", FIXTURES / "data" / "alpaca.json",
                           TINY_BPE)


@pytest.fixture(scope="session")
def fixture_model(fixture_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(fixture_folder, tmp_path_factory.mktemp("interop") / "model")


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LLaMA-Factory's alpaca_en_demo.json with the Qwen2.5 tokenizer (skipped without ../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return tokenize_folder(tmp_path_factory.mktemp("interop-real") / "default",
                           SHARED_DATA / "llamafactory" / "alpaca_en_demo.json", SHARED_DATA / "tokenizers" / "qwen2.5")
