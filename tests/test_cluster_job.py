"""Cluster jobs from recipes and tokenize jobs, and the promise that a single machine never imports Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataprep.cache import Cache
from dataprep.cluster.job import Settings, from_plan
from dataprep.errors import UsageProblem
from dataprep.recipe import load_recipe
from dataprep.runner import plan
from tests.conftest import FIXTURES, REPO


def test_the_cli_and_a_local_run_never_import_ray(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "inputs": [{"path": str(FIXTURES / "data" / "alpaca.json"), "format": "alpaca"}], "normalize": None,
        "split": {"val_size": 0.2},
        "tokenize": {"tokenizer": str(FIXTURES / "tokenizers" / "tiny-bpe"), "template": "plain"},
        "output": str(tmp_path / "out")}))
    code = (
        "import sys\n"
        "import dataprep.cli\n"
        "from dataprep.cli import main\n"
        f"try:\n    main(['run', {str(recipe)!r}, '--no-cache', '-q'])\nexcept SystemExit as exc:\n    assert not exc.code\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.') or m.startswith('dataprep.cluster')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "dataprep.json").is_file()


def test_a_recipe_without_tokenize_stays_on_the_local_engine(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"inputs": [{"path": str(FIXTURES / "data" / "alpaca.json")}],
                                      "normalize": None, "output": str(tmp_path / "out.jsonl")}))
    the_plan = plan(load_recipe(str(recipe)), Cache(None))
    try:
        with pytest.raises(UsageProblem, match="needs a tokenize stage"):
            from_plan(the_plan, Settings())
    finally:
        the_plan.cache.close()


def test_a_recipe_may_name_its_inputs_by_uri(tmp_path: Path) -> None:
    data = FIXTURES / "data" / "alpaca.jsonl"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "inputs": [{"path": data.as_uri(), "format": "alpaca"}], "normalize": None,
        "tokenize": {"tokenizer": str(FIXTURES / "tokenizers" / "tiny-bpe"), "template": "plain"},
        "output": "s3://bucket/out"}))
    the_plan = plan(load_recipe(str(recipe)), Cache(None))
    try:
        job = from_plan(the_plan, Settings())
    finally:
        the_plan.cache.close()
    local = plan(load_recipe(str(recipe), [f"inputs.0.path={data}"]), Cache(None))
    local.cache.close()
    assert job.sources[0].path == data.as_uri()
    assert job.inputs[0]["sha256"] == local.sources[0].sha256  # the key names the path too (runner.plan)
