"""``--engine ray`` against ``--engine local``: the same dataset folder byte for byte, the same rejects, the same
counts; Parquet parts that ``datasets`` loads. One small local Ray cluster serves the whole session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dataprep.cache import Cache
from dataprep.cluster.engine import execute
from dataprep.cluster.job import Settings, from_plan
from dataprep.recipe import load_recipe
from dataprep.runner import plan
from tests.conftest import FIXTURES, invoke

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, about its own settings

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
RUN_FACTS = ("encoder", "self_check")  # how the encoder was fed (batches, sampled rows): not what the rows are


@pytest.fixture(scope="session", autouse=True)
def cluster() -> object:
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 << 20, log_to_driver=False)
    yield ray
    ray.shutdown()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_identical(local: Path, cluster: Path, also: tuple[str, ...] = ()) -> None:
    """Every file byte for byte, but the manifest's and card's encoder facts (batch counts, self-check sample)
    and the manifest entries ``also``."""
    a, b = files(local), files(cluster)
    assert sorted(a) == sorted(b)
    for name in a:
        if name not in ("dataprep.json", "README.md"):
            assert a[name] == b[name], name
    ma, mb = (json.loads(x["dataprep.json"]) for x in (a, b))
    skip = (*RUN_FACTS, *also)
    assert {k: v for k, v in ma.items() if k not in skip} == {k: v for k, v in mb.items() if k not in skip}


def counts(lines: list[str]) -> dict[str, str]:
    """``stage -> "N in, M out, K rejected (reasons)"`` from summary lines."""
    out = {}
    for line in lines:
        stage, _, rest = line.partition(": ")
        if " in, " in rest:
            out[stage] = rest.split(";")[0]
    return out


def local_rejects(folder: Path) -> list[str]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.dumps(json.loads(line), sort_keys=True) for line in path.read_text().splitlines()]
    return sorted(rows)


def cluster_rejects(folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(folder.rglob("*.parquet")):
        for r in pq.read_table(path).to_pylist():
            row = {**json.loads(r["record"]), "stage": r["stage"], "reason": r["reason"], "detail": r["detail"]}
            if r["location"]:
                row["location"] = r["location"]
            rows.append(json.dumps(row, sort_keys=True))
    return sorted(rows)


def mixed_input(tmp_path: Path) -> Path:
    """alpaca rows as JSONL with exact and near copies, a malformed line, and an evaluation row to decontaminate."""
    rows = [json.loads(line) for line in (FIXTURES / "data" / "alpaca.jsonl").read_text().splitlines()]
    lines = [json.dumps(r) for r in rows]
    lines.insert(7, json.dumps(rows[2]))  # exact copy
    near = dict(rows[5], output=rows[5]["output"] + " Indeed.")
    lines.insert(20, json.dumps(near))
    lines.insert(11, "{not json")
    lines += [json.dumps(dict(r, instruction=r["instruction"] + "!")) for r in rows[:6]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recipe_for(tmp_path: Path, output: str, rejects: str) -> Path:
    path = tmp_path / f"{Path(output).name}.yaml"
    path.write_text(yaml.safe_dump({
        "inputs": [{"name": "mixed", "path": str(mixed_input(tmp_path)), "format": "alpaca", "rows": 60},
                   {"name": "chat", "path": str(FIXTURES / "data" / "sharegpt.json")}],
        "normalize": {}, "filter": {"min_response_chars": 5, "dedup": "near", "threshold": 0.8},
        "split": {"val_size": 0.2, "test_size": 3, "seed": 3},
        "tokenize": {"tokenizer": str(TINY_BPE), "template": "chatml", "max_length": 48},
        "on_error": "reject", "output": output, "rejects": rejects}, sort_keys=False))
    return path


def on_cluster(recipe: Path, shard_bytes: int, save_to_disk: Path | None = None) -> object:
    loaded = load_recipe(str(recipe))
    the_plan = plan(loaded, Cache(None))
    try:
        return execute(from_plan(the_plan, Settings(shard_bytes=shard_bytes), str(save_to_disk) if save_to_disk
                                 else None))
    finally:
        the_plan.cache.close()


def test_a_recipe_on_ray_writes_the_local_engines_folder_byte_for_byte(tmp_path: Path) -> None:
    local = invoke("run", recipe_for(tmp_path, str(tmp_path / "local"), str(tmp_path / "local-rejects")),
                   "--no-cache")
    assert local.exit_code == 0, local.stderr
    recipe = recipe_for(tmp_path, str(tmp_path / "parts"), str(tmp_path / "ray-rejects"))
    result = on_cluster(recipe, shard_bytes=1500, save_to_disk=tmp_path / "ray")
    assert_identical(tmp_path / "local", tmp_path / "ray")
    assert counts(result.lines) == counts(local.stderr.splitlines())
    assert counts(result.lines)["normalize"] == "69 in, 68 out, 1 rejected (malformed_json: 1)"
    assert counts(result.lines)["filter"] == "68 in, 60 out, 8 rejected (duplicate: 1, near_duplicate: 7)"
    assert cluster_rejects(tmp_path / "ray-rejects") == local_rejects(tmp_path / "local-rejects")
    assert any(json.loads(r)["reason"] == "malformed_json" for r in cluster_rejects(tmp_path / "ray-rejects"))
    assert len(result.parts["train"]) > 2  # several shards, one part each

    import datasets

    parts = {split: sorted(str(p) for p in (tmp_path / "parts" / split).glob("*.parquet"))
             for split in ("train", "validation", "test")}
    loaded = datasets.load_dataset("parquet", data_files=parts, cache_dir=str(tmp_path / "hf"))
    saved = datasets.load_from_disk(str(tmp_path / "ray"))
    for split in parts:
        assert loaded[split].to_list() == saved[split].to_list()
    manifest = json.loads((tmp_path / "parts" / "dataprep.json").read_text())
    assert manifest["splits"] == json.loads((tmp_path / "ray" / "dataprep.json").read_text())["splits"]


def test_tokenize_on_ray_reads_uris_and_equals_tokenize(tmp_path: Path) -> None:
    data = FIXTURES / "data" / "canonical.jsonl"
    common = ["--tokenizer", TINY_BPE, "--template", "chatml", "--max-length", "40", "-q"]
    local = invoke("tokenize", f"validation={data}", str(FIXTURES / "data" / "canonical.jsonl"), "-o",
                   tmp_path / "local", *common)
    assert local.exit_code == 0, local.stderr
    uri = (tmp_path / "parts").as_uri()
    result = invoke("tokenize", f"validation={data.as_uri()}", str(data), "-o", uri, *common,
                    "--engine", "ray", "--save-to-disk", tmp_path / "ray")
    assert result.exit_code == 0, result.stderr
    assert_identical(tmp_path / "local", tmp_path / "ray", also=("inputs",))  # named by URI, same sha256
    manifest = json.loads((tmp_path / "ray" / "dataprep.json").read_text())
    assert manifest["inputs"][0]["name"] == data.as_uri()
    again = invoke("tokenize", f"validation={data.as_uri()}", str(data), "-o", uri, *common, "--engine", "ray")
    assert again.exit_code == 0 and (tmp_path / "parts" / "validation").is_dir()


def test_a_malformed_line_stops_the_cluster_with_the_local_message(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text((FIXTURES / "data" / "canonical.jsonl").read_text() * 5 + "{oops\n", encoding="utf-8")
    args = ["tokenize", data, "--tokenizer", TINY_BPE, "--template", "chatml", "-q"]
    local = invoke(*args, "-o", tmp_path / "local")
    cluster = invoke(*args, "-o", tmp_path / "ray", "--engine", "ray")
    assert local.exit_code == cluster.exit_code == 2
    assert cluster.stderr == local.stderr and f"{data}:101: malformed JSON" in cluster.stderr
    assert not (tmp_path / "ray").exists()


@pytest.mark.slow
def test_real_data_on_ray_equals_local(tmp_path: Path, shared_data: Path) -> None:
    rows = json.loads((shared_data / "alpaca" / "code_alpaca_2k.json").read_text())
    jsonl = tmp_path / "code_alpaca.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = tmp_path / "real.yaml"
    body = {"inputs": [{"path": str(jsonl), "format": "alpaca"},
                       {"path": str(shared_data / "llamafactory" / "glaive_toolcall_en_demo.json"),
                        "format": "sharegpt"}],
            "normalize": {}, "filter": {"dedup": "near"}, "split": {"val_size": 0.05},
            "tokenize": {"tokenizer": str(shared_data / "tokenizers" / "qwen2.5"), "max_length": 1024}}
    recipe.write_text(yaml.safe_dump({**body, "output": str(tmp_path / "local")}))
    local = invoke("run", recipe, "--no-cache")
    assert local.exit_code == 0, local.stderr
    recipe.write_text(yaml.safe_dump({**body, "output": str(tmp_path / "parts")}))
    result = on_cluster(recipe, shard_bytes=100_000, save_to_disk=tmp_path / "ray")
    assert_identical(tmp_path / "local", tmp_path / "ray")
    assert counts(result.lines) == counts(local.stderr.splitlines())


def test_run_on_ray_from_the_command_line_and_up_to_date_the_second_time(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "inputs": [{"path": str(FIXTURES / "data" / "alpaca.jsonl"), "format": "alpaca"}], "normalize": None,
        "split": {"val_size": 0.1},
        "tokenize": {"tokenizer": str(TINY_BPE), "template": "plain"}, "output": str(tmp_path / "parts")}))
    first = invoke("run", recipe, "--engine", "ray", "--save-to-disk", tmp_path / "data")
    assert first.exit_code == 0, first.stderr
    assert first.stderr.splitlines()[-1].startswith(f"run: wrote {tmp_path / 'parts'} on ray (train=36 validation=4")
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "README.md", "dataprep.json", "tokenizer", "train", "validation"]
    again = invoke("run", recipe, "--engine", "ray")
    assert again.exit_code == 0 and "is up to date" in again.stderr
    assert not (tmp_path / ".dataprep-cache").exists()
    wrong = invoke("run", recipe, "--save-to-disk", tmp_path / "x")
    assert wrong.exit_code == 2 and "go with --engine ray" in wrong.stderr
