"""Every shipped recipe loads (a cheap test) and runs end to end on the bundled fixtures (slow), and its output
trains; the real-data variants run when ../shared/data is present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataprep.recipe import load_recipe
from tests.conftest import FIXTURES, REPO, SHARED_DATA, invoke

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
ALPACA = FIXTURES / "data" / "alpaca.json"
SHARED_RECIPES = {"llamafactory_lora", "qwen3_multiturn"}  # their own inputs are real data


def test_the_recipes_folder_holds_the_seed_workflows() -> None:
    assert {r.stem for r in RECIPES} == {"alpaca_sft", "llamafactory_lora", "mrpc_classification",
                                         "sharegpt_tools_chatml", "mixture_tokens", "qwen3_multiturn",
                                         "packed_clean"}
    assert not list((REPO / "recipes").glob("*.sh"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_loads(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if recipe.stem in SHARED_RECIPES and not SHARED_DATA.is_dir():
        pytest.skip(f"reads {SHARED_DATA}")
    monkeypatch.chdir(REPO)
    loaded = load_recipe(str(recipe))
    assert loaded.recipe.output.startswith("out/") and loaded.recipe.tokenize is not None


def fixture_registry(tmp_path: Path) -> Path:
    """A dataset_info.json whose entry reads the alpaca fixture with LLaMA-Efficient-Tuning's history column."""
    info = tmp_path / "dataset_info.json"
    (tmp_path / ALPACA.name).write_bytes(ALPACA.read_bytes())  # a registry names files beside it
    info.write_text(json.dumps({"fixture": {"file_name": ALPACA.name, "columns": {
        "prompt": "instruction", "query": "input", "response": "output", "history": "history"}}}))
    return info


FIXTURE_OVERRIDES = {
    "alpaca_sft": ["split.val_size=0.2"],
    "llamafactory_lora": ["split.val_size=0.1"],  # and the fixture registry below
    "mrpc_classification": [],
    "sharegpt_tools_chatml": [],
    "mixture_tokens": [],
    "packed_clean": [],  # and the stats files below
}
TRAIN = {"alpaca_sft", "llamafactory_lora", "mrpc_classification", "sharegpt_tools_chatml", "packed_clean"}


def run_recipe(recipe: Path, tmp_path: Path, *overrides: str) -> str:
    result = invoke("run", recipe, f"output={tmp_path / 'data'}", f"rejects={tmp_path / 'rejects'}", *overrides)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURE_OVERRIDES))
def test_recipe_runs_on_fixtures_and_trains(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    overrides = list(FIXTURE_OVERRIDES[name])
    if name == "llamafactory_lora":
        overrides += [f"inputs.0.dataset_info={fixture_registry(tmp_path)}", "inputs.0.dataset=fixture"]
    if name == "packed_clean":
        overrides += [f"stats.html={tmp_path / 'stats.html'}", f"stats.json={tmp_path / 'stats.json'}"]
    summary = run_recipe(REPO / "recipes" / f"{name}.yaml", tmp_path, *overrides)
    manifest = json.loads((tmp_path / "data" / "dataprep.json").read_text())
    rows = sum(s["rows"] for s in manifest["splits"].values())  # packed: rows of the output are packs
    assert manifest["totals"]["rows_out"] == (manifest["packing"]["rows_packed"] if name == "packed_clean" else rows)
    assert rows > 0 and set(manifest["mixture"]["sources"]) and any(line.startswith("run: wrote") for line in summary.splitlines())
    if name == "packed_clean":
        assert manifest["packing"]["max_length"] == 512 and manifest["packing"]["efficiency"] > 0.9
        assert json.loads((tmp_path / "stats.json").read_text())["packing"]["rows"] == manifest["packing"]["packs"]
    if name in ("alpaca_sft", "llamafactory_lora", "sharegpt_tools_chatml", "packed_clean"):
        assert sorted(manifest["splits"]) == ["train", "validation"]
    if name == "llamafactory_lora":
        assert manifest["template"]["name"] == "default"
    if name == "mixture_tokens":
        for source, budget in (("alpaca", 3000), ("chats", 6000)):
            assert manifest["mixture"]["sources"][source]["tokens"] <= budget
    if name in TRAIN:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-m", "dataprep", "train", "--data", str(tmp_path / "data"),
                               "--model", "tiny", "-o", str(tmp_path / "run"), "--max-steps", "3",
                               "--eval-steps", "3", "--batch-size", "4"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (tmp_path / "run" / "train_log.jsonl").is_file()


@pytest.mark.slow
def test_seed_003_recipe_on_lima(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    summary = run_recipe(REPO / "recipes" / "llamafactory_lora.yaml", tmp_path)
    assert summary.startswith("normalize: 1,029 in, 1,029 out, 0 rejected")
    manifest = json.loads((tmp_path / "data" / "dataprep.json").read_text())
    assert manifest["splits"]["validation"]["rows"] + manifest["rejected"].get("no_supervised_tokens", 0) >= 10


@pytest.mark.slow
def test_qwen3_recipe_writes_only_exact_rows(shared_data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen3's template is not prefix-preserving for multi-turn rows; each is located in one render, none is
    rejected for its template, and the rows written equal apply_chat_template's ids."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from dataprep.cache import Cache
    from dataprep.records import parse_tools, to_messages

    monkeypatch.chdir(REPO)
    summary = run_recipe(REPO / "recipes" / "qwen3_multiturn.yaml", tmp_path, f"--cache-dir={tmp_path / 'cache'}")
    tokenize = next(line for line in summary.splitlines() if line.startswith("tokenize:"))
    rows_in, rows_out, rejected = (int(tokenize.split(" ")[i].rstrip(",").replace(",", "")) for i in (1, 3, 5))
    assert rows_in == rows_out + rejected == 1329 and rejected <= 1
    assert rejected == 0 or "(no_supervised_tokens: 1)" in tokenize  # a reply that is empty, not the template
    records = {}
    cache = Cache(tmp_path / "cache")
    for part in sorted((tmp_path / "cache" / "split").glob("*/rows-*.jsonl.zst")):
        for batch in cache.read_split(part.parent.name, int(part.name.split("-")[1].split(".")[0])):
            records.update((r["id"], r) for r in batch.records)
    tok = AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / "qwen3"))
    dataset = load_from_disk(str(tmp_path / "data"))
    checked = 0
    for row in dataset["train"].select(range(0, len(dataset["train"]), 25)):
        record = records[row["id"]]
        ids = tok.apply_chat_template(to_messages(record), tools=parse_tools(record.get("tools")), tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # transformers 5 returns a BatchEncoding
        if len(ids) <= 4096:
            assert row["input_ids"] == list(ids), row["id"]
            checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_the_readme_recipe_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("```yaml\ninputs:") + len("```yaml\n"):]
    recipe = tmp_path / "readme.yaml"
    recipe.write_text(block[:block.index("```")])
    monkeypatch.chdir(REPO)
    summary = run_recipe(recipe, tmp_path)
    assert summary.startswith("validate: 1 file, 40 records") and "mix: alpaca 30 rows from 40" in summary
