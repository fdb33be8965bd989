"""The how-to-train text: each Python snippet, exactly as the card and README print it, trains on a real folder
with a tiny model (the label guard inside it passes); the traps carry the folder's own numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dataprep import consumers
from tests.interop_data import layout_of

pytest_plugins = ("tests.interop_fixtures",)  # the tokenized folder, the tiny model

PYTHON_SNIPPETS = [s for s in consumers.SNIPPETS if s.language == "python"]


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "dataprep.json").read_text())


@pytest.mark.parametrize("snippet", PYTHON_SNIPPETS, ids=lambda s: s.consumer)
@pytest.mark.parametrize("layout", ["dataprep", "plain"])
def test_python_snippet_trains_as_printed(snippet: consumers.Snippet, layout: str, fixture_folder: Path,
                                         fixture_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for package in snippet.requires:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    folder = layout_of(fixture_folder, layout)
    code = snippet.render(data=str(folder), model=str(fixture_model), output=str(tmp_path / "out"), longest=0)
    if snippet is consumers.TRL and not torch.cuda.is_available():
        assert code.count("SFTConfig(\"") == 1
        code = code.replace('SFTConfig("', 'SFTConfig(bf16=False, output_dir="')  # TRL defaults to bf16 (GPU)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "snippet"}
    exec(compile(code, f"<{snippet.consumer} snippet>", "exec"), namespace)
    if snippet is consumers.TORCH:
        report = namespace["guard"].report
        assert report.batches == len(namespace["train"]) // 8 + 1 and not report.findings and report.targets > 0
    else:
        assert namespace["trainer"].state.global_step > 0
        assert "label guard: " in capfd.readouterr().err


def test_card_shows_the_snippets_of_the_folder_layout(fixture_folder: Path) -> None:
    default = consumers.card_section(manifest_of(fixture_folder), "tok")
    assert default.startswith("## How to train on it")
    assert "### transformers Trainer" in default and "### TRL SFTTrainer" in default and "```yaml" not in default
    assert "LLaMA-Factory (tokenized_path): `--emit-for llamafactory`" in default
    assert 'data = "tok"' in default
    lf = consumers.card_section(manifest_of(layout_of(fixture_folder, "llamafactory")), "tok")
    assert "tokenized_path: tok" in lf and "val_size: 0.1" in lf  # the fixture has a validation split


def test_traps_print_the_longest_row_against_trl_default() -> None:
    short = {"splits": {"train": {"longest": 213}}, "totals": {"tokens": 300, "supervised_tokens": 100}}
    long = {"splits": {"train": {"longest": 3588}, "validation": {"longest": 900}}, "totals": {}}
    short_traps, long_traps = consumers.traps(short), consumers.traps(long)
    assert "here +200% tokens" in short_traps[0]
    assert "the longest row here: 213 tokens" in short_traps[1]
    assert "**TRL cuts rows again.**" in long_traps[1] and "**3,588 tokens**" in long_traps[1]
    assert "longest row here: not recorded" in consumers.traps({"splits": {}})[1]


def test_config_files_point_at_the_folder(fixture_folder: Path) -> None:
    yaml = pytest.importorskip("yaml")
    folder = layout_of(fixture_folder, "axolotl")
    manifest = manifest_of(folder)
    config = yaml.safe_load((folder / "axolotl.yaml").read_text())
    assert config["datasets"] == [{"path": str(folder.resolve()), "split": "train", "type": None}]
    assert config["sequence_len"] == consumers.longest_row(manifest) == max(
        s["longest"] for s in manifest["splits"].values())
    lf = yaml.safe_load(consumers.config_files("llamafactory", manifest, folder, model="m")["llamafactory.yaml"])
    assert lf["tokenized_path"] == str(folder.resolve()) and lf["model_name_or_path"] == "m"
    assert consumers.config_files("trl", manifest, folder) == {}
