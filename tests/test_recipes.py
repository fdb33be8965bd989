"""Every shipped recipe (one per seed workflow) runs end to end on the bundled fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow
RECIPES = sorted((REPO / "recipes").glob("*.sh"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_on_fixtures(recipe: Path, tmp_path: Path) -> None:
    if "llamafactory" in recipe.name and not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data/llamafactory/dataset_info.json")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "STEPS": "4", "EVAL_STEPS": "2", "VAL": "0.2",
           "MAX_LENGTH": "512", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(recipe)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    run = tmp_path / "out" / "run"
    assert (run / "train_log.jsonl").is_file() and (run / "loss.png").is_file()
