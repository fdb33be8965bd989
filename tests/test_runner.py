"""``dataprep run`` end to end on the fixtures: the same bytes as the shell pipe, the cache, mixing, rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES, REPO, invoke

ALPACA = FIXTURES / "data" / "alpaca.json"
SHAREGPT = FIXTURES / "data" / "sharegpt.json"
PAIRS = FIXTURES / "data" / "pairs.tsv"
TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
TINY_WORDPIECE = FIXTURES / "tokenizers" / "tiny-wordpiece"
RUN_ONLY = ("key", "inputs", "mixture")  # manifest entries that name how the folder was made, not what it holds


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run(recipe: Path, *args: object) -> tuple[int, str]:
    result = invoke("run", recipe, *args)
    return result.exit_code, result.stderr


def pipe(*commands: list[object]) -> bytes:
    """``dataprep A | dataprep B | ...`` in this process: each command's stdout is the next one's stdin."""
    data: bytes | None = None
    for args in commands:
        result = invoke(*map(str, args), input=data)
        assert result.exit_code == 0, result.stderr
        data = result.stdout_bytes
    return data or b""


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_dataset(ours: Path, theirs: Path) -> None:
    """Byte-identical Arrow data, tokenizer and dataset metadata; manifests equal but for how they were made."""
    a, b = files(ours), files(theirs)
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith("state.json"):  # its fingerprint is derived from the cache key
            sa, sb = json.loads(a[name]), json.loads(b[name])
            sa.pop("_fingerprint"), sb.pop("_fingerprint")
            assert sa == sb, name
        elif name not in ("dataprep.json", "README.md"):
            assert a[name] == b[name], name
    ma, mb = (json.loads(x["dataprep.json"]) for x in (a, b))
    assert {k: v for k, v in ma.items() if k not in RUN_ONLY} == {k: v for k, v in mb.items() if k not in RUN_ONLY}


ALPACA_RECIPE = {
    "inputs": [{"path": str(ALPACA), "format": "alpaca"}],
    "normalize": None,
    "filter": {"min_response_chars": 40},
    "split": {"val_size": 0.2, "seed": 7},
    "tokenize": {"tokenizer": str(TINY_BPE), "template": "plain", "max_length": 256},
}


def test_run_gives_the_bytes_of_the_shell_pipe(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "run")})
    code, err = run(recipe)
    assert code == 0, err
    records = pipe(["normalize", ALPACA, "--from", "alpaca", "-q"], ["filter", "-", "--min-response-chars", "40", "-q"],
                   ["split", "-", "--val-size", "0.2", "--seed", "7", "-q"])
    result = invoke("tokenize", "-", "-o", tmp_path / "pipe", "--tokenizer", TINY_BPE, "--template", "plain",
                    "--max-length", "256", "-q", input=records)
    assert result.exit_code == 0, result.stderr
    assert_same_dataset(tmp_path / "run", tmp_path / "pipe")
    lines = err.splitlines()
    assert lines[0] == "normalize: 40 in, 40 out, 0 rejected"
    assert lines[1] == "filter: 40 in, 24 out, 16 rejected (response_too_short: 16)"
    assert lines[2].startswith("split: 24 in, 24 out, 0 rejected; train: 19, validation: 5")
    assert lines[3].startswith("tokenize: 24 in, ")
    assert lines[-1].startswith(f"run: wrote {tmp_path / 'run'} (train=")


def test_records_output_is_the_pipe_output(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(SHAREGPT)}], "normalize": None, "filter": {"dedup": "exact"},
        "split": {"val_size": 3, "test_size": 0.1}, "output": str(tmp_path / "out.jsonl")})
    for extra in ([], ["--no-cache"], []):  # fresh, without a cache, then entirely from the cache
        code, err = run(recipe, *extra)
        assert code == 0, err
        assert (tmp_path / "out.jsonl").read_bytes() == pipe(
            ["normalize", SHAREGPT, "-q"], ["filter", "-", "--dedup", "exact", "-q"],
            ["split", "-", "--val-size", "3", "--test-size", "0.1", "-q"])
    assert "normalize: 20 in, 20 out, 0 rejected; format: sharegpt [reused]" in err


def test_classification_equals_tokenize_with_named_splits(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"name": "train", "path": str(PAIRS), "split": "train"},
                   {"name": "dev", "path": str(PAIRS), "split": "validation", "input_format": "tsv"}],
        "tokenize": {"tokenizer": str(TINY_WORDPIECE), "task": "classification", "text": "#1 String",
                     "text_pair": "#2 String", "label": "Quality", "max_length": 16},
        "output": str(tmp_path / "run")})
    code, err = run(recipe)
    assert code == 0, err
    result = invoke("tokenize", f"train={PAIRS}", f"validation={PAIRS}", "-o", tmp_path / "pipe", "--tokenizer",
                    TINY_WORDPIECE, "--task", "classification", "--text", "#1 String", "--text-pair", "#2 String",
                    "--label", "Quality", "--max-length", "16", "-q")
    assert result.exit_code == 0, result.stderr
    assert_same_dataset(tmp_path / "run", tmp_path / "pipe")


def test_same_recipe_twice_gives_identical_folders(tmp_path: Path) -> None:
    for name in ("a", "b"):
        recipe = write_recipe(tmp_path / f"{name}.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / name / "data")})
        code, err = run(recipe, "--no-cache")
        assert code == 0, err
    assert files(tmp_path / "a" / "data") == files(tmp_path / "b" / "data")


def test_tokenize_options_reuse_the_stages_before_and_cached_rows_give_the_same_bytes(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "out" / "data")})
    assert run(recipe)[0] == 0
    code, err = run(recipe)
    assert code == 0 and err.startswith(f"run: {tmp_path / 'out' / 'data'} is up to date"), err
    code, err = run(recipe, "tokenize.max_length=64", "tokenize.mask=last")
    assert code == 0, err
    assert "[reused]" in err.splitlines()[0] and "split: 24 in" in err and err.count("[reused]") == 3
    assert err.splitlines()[-1].endswith("reused: normalize, filter, split")
    assert "[reused]" not in err.splitlines()[3]  # tokenize ran
    # the same options without any cache: byte for byte the folder built from cached rows
    fresh = write_recipe(tmp_path / "fresh.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "fresh")})
    assert run(fresh, "--no-cache", "tokenize.max_length=64", "tokenize.mask=last")[0] == 0
    assert files(tmp_path / "out" / "data") == files(tmp_path / "fresh")


def test_a_changed_filter_reruns_filter_not_normalize_and_a_changed_input_reruns_all(tmp_path: Path) -> None:
    data = tmp_path / "alpaca.json"
    data.write_bytes(ALPACA.read_bytes())
    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "inputs": [{"path": str(data)}],
                                                "output": str(tmp_path / "out")})
    assert run(recipe)[0] == 0
    code, err = run(recipe, "filter.min_response_chars=10")
    assert code == 0, err
    assert err.splitlines()[0].endswith("[reused]") and not err.splitlines()[1].endswith("[reused]")
    rows = json.loads(data.read_text())
    data.write_text(json.dumps(rows[:-1], indent=2))
    plan = invoke("run", recipe, "filter.min_response_chars=10", "--dry-run").stdout
    assert [line.split()[-1] for line in plan.splitlines() if line.startswith("#   ")] == [
        "run", "run", "run", "run", "write"]
    code, err = run(recipe, "filter.min_response_chars=10")
    assert code == 0 and "normalize: 39 in" in err and "reused" not in err


def test_a_new_weight_redoes_only_the_mixture(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"name": "a", "path": str(ALPACA), "rows": 30}, {"name": "s", "path": str(SHAREGPT), "rows": 50}],
        "normalize": None, "filter": None, "split": {"val_size": 0.1},
        "tokenize": {"tokenizer": str(TINY_BPE), "max_length": 512}, "output": str(tmp_path / "out")})
    assert run(recipe)[0] == 0
    code, err = run(recipe, "inputs.a.rows=10", "inputs.s.rows=5")
    assert code == 0, err
    assert err.count("[reused]") == 4 and "mix: a 10 rows from 40" in err and "s 5 rows from 20" in err
    manifest = json.loads((tmp_path / "out" / "dataprep.json").read_text())
    assert {k: v["rows"] for k, v in manifest["mixture"]["sources"].items()} == {"a": 10, "s": 5}
    assert sum(s["rows"] for s in manifest["splits"].values()) == 15


def test_token_budgets_are_met_within_one_row_per_source(tmp_path: Path) -> None:
    from datasets import load_from_disk

    budgets = {"a": 2500, "s": 9000}  # s holds fewer tokens than its budget: it is repeated
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"name": n, "path": str(p), "tokens": budgets[n]} for n, p in (("a", ALPACA), ("s", SHAREGPT))],
        "normalize": None, "split": {"val_size": 0.2}, "tokenize": {"tokenizer": str(TINY_BPE)},
        "output": str(tmp_path / "out")})
    code, err = run(recipe)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "dataprep.json").read_text())
    dataset = load_from_disk(str(tmp_path / "out"))
    alpaca_ids = {r["id"] for r in _normalized(ALPACA)}
    longest = {n: 0 for n in budgets}
    for split in dataset:
        for row_id, length in zip(dataset[split]["id"], dataset[split]["length"], strict=True):
            name = "a" if row_id in alpaca_ids else "s"
            longest[name] = max(longest[name], length)
    for name, budget in budgets.items():
        realised = manifest["mixture"]["sources"][name]
        assert budget - longest[name] < realised["tokens"] <= budget, (name, realised, budget)
        assert sum(s["tokens"] for s in realised["splits"].values()) == realised["tokens"]
    assert manifest["mixture"]["sources"]["s"]["rows"] > 20  # up-sampled
    assert sum(s["tokens"] for s in manifest["splits"].values()) == sum(
        manifest["mixture"]["sources"][n]["tokens"] for n in budgets)


def _normalized(path: Path) -> list[dict]:
    out = invoke("normalize", path, "-q").stdout
    return [json.loads(line) for line in out.splitlines()]


def test_copies_never_cross_splits(tmp_path: Path) -> None:
    from datasets import load_from_disk

    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(ALPACA), "rows": 200}], "normalize": None, "split": {"val_size": 0.25},
        "tokenize": {"tokenizer": str(TINY_BPE)}, "output": str(tmp_path / "out")})
    assert run(recipe)[0] == 0
    dataset = load_from_disk(str(tmp_path / "out"))
    ids = {split: set(dataset[split]["id"]) for split in dataset}
    assert len(dataset["train"]) + len(dataset["validation"]) == 200
    assert len(dataset["validation"]) == 50  # the split's ratio survives the up-sampling, exactly
    assert not ids["train"] & ids["validation"]


def test_rejects_of_every_stage_keep_their_input_lines_even_from_the_cache(tmp_path: Path) -> None:
    broken = FIXTURES / "data" / "broken" / "not_alternating.json"
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(broken)}, {"path": str(SHAREGPT)}, {"path": str(ALPACA)}], "normalize": None,
        "filter": {"min_response_chars": 30}, "split": {"val_size": 0.1, "stratify_by": ["meta.category"]},
        "tokenize": {"tokenizer": str(TINY_BPE), "max_length": 24, "truncation": "drop"},
        "output": str(tmp_path / "out"), "rejects": str(tmp_path / "rejects")})
    assert run(recipe)[0] == 0
    first = {p.name: p.read_text() for p in (tmp_path / "rejects").iterdir()}
    assert sorted(first) == ["filter.jsonl", "normalize.jsonl", "split.jsonl", "tokenize.jsonl"]
    for name, text in first.items():
        rows = [json.loads(line) for line in text.splitlines()]
        assert rows, name
        assert all(r["stage"] == name.removesuffix(".jsonl") and r["location"].startswith(str(FIXTURES)) and
                   r["location"].split(":")[-1].isdigit() for r in rows), name
    assert {r["reason"] for r in map(json.loads, first["split.jsonl"].splitlines())} == {"missing_stratify_field"}
    code, err = run(recipe, "tokenize.max_length=32")  # tokenize reruns on split's cached rows
    assert code == 0 and err.count("[reused]") == 3, err
    again = [json.loads(line) for line in (tmp_path / "rejects" / "tokenize.jsonl").read_text().splitlines()]
    assert again and all(r["location"].startswith(str(ALPACA) + ":") for r in again)
    assert {r["location"] for r in again} <= {r["location"] for r in map(json.loads, first["tokenize.jsonl"].splitlines())}


def test_on_error_reject_keeps_going_and_validate_stops_bad_data(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(FIXTURES / "data" / "broken" / "malformed.jsonl"), "format": "alpaca"}],
        "normalize": None, "output": str(tmp_path / "out.jsonl"), "rejects": str(tmp_path / "rej")})
    code, err = run(recipe)
    assert code == 2 and "malformed.jsonl:4: malformed JSON" in err and "Traceback" not in err
    code, err = run(recipe, "on_error=reject")
    assert code == 0 and err.startswith("normalize: 7 in, 6 out, 1 rejected (malformed_json: 1)"), err
    bad = write_recipe(tmp_path / "bad.yaml", {
        "inputs": [{"path": str(FIXTURES / "data" / "broken" / "wrong_types.json"), "format": "alpaca"}],
        "validate": None, "normalize": None, "output": str(tmp_path / "bad.jsonl")})
    code, err = run(bad)
    assert code == 1 and "wrong_types.json:2 [record 0]: /output: 5 is not of type 'string'" in err
    assert "nothing was written" in err and not (tmp_path / "bad.jsonl").exists()


def test_dry_run_prints_the_resolved_recipe_and_the_plan(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "out")})
    result = invoke("run", recipe, "--dry-run", "tokenize.max_length=100")
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["tokenize"]["max_length"] == 100 and resolved["tokenize"]["mask"] == "all"
    assert "text" not in resolved["tokenize"] and resolved["split"]["stratify_by"] == ["len_bucket"]
    assert resolved["inputs"][0]["name"] == "alpaca" and not (tmp_path / "out").exists()
    assert "#   tokenize   alpaca                   run" in result.stdout
    assert run(recipe)[0] == 0
    again = invoke("run", recipe, "--dry-run", "tokenize.max_length=100").stdout
    assert [line.split()[-1] for line in again.splitlines() if line.startswith("#   ")] == [
        "reuse", "reuse", "reuse", "run", "write"]


def test_recipe_errors_name_the_field_and_line_all_at_once(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
inputs:
  - path: {ALPACA}
    wieght: 2
normalize:
filter:
  min_response_chars: lots
tokenize:
  tokenizer: {TINY_BPE}
pack:
output: {tmp_path / "out"}
""")
    code, err = run(recipe, "tokenize.max_length=-3", "split=")
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"Error: {recipe}: 5 problems in the recipe"
    assert lines[1] == f"{recipe}:3: inputs.0.wieght: unknown key; did you mean weight?"
    assert lines[2].startswith(f"{recipe}:6: filter.min_response_chars: Input should be a valid integer")
    assert lines[3] == f"{recipe}:7: tokenize: max_length must be at least 1"
    assert lines[4] == f"{recipe}:9: pack.max_length: required"
    assert lines[5] == f"{recipe} (override): split.val_size: required"


def test_a_missing_input_and_conflicts_are_reported_before_anything_runs(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(tmp_path / "nope.json"), "tokens": 10, "split": "train"},
                   {"path": str(ALPACA), "weight": 1}],
        "split": {"val_size": 0.1}, "output": str(tmp_path / "out")})
    code, err = run(recipe)
    assert code == 2
    for expected in ("inputs.0.path: no such file", "inputs.0.tokens: a token budget needs the tokenize stage",
                     "inputs.0.split: an input's split and the split stage exclude each other",
                     "inputs.0: weights are shares", "output: without tokenize the output is a records file"):
        assert expected in err, expected
    assert not (tmp_path / "out").exists()


def test_run_appears_in_the_command_list() -> None:
    result = invoke("--help")
    assert "run " in result.stdout and (REPO / "dataprep" / "cli" / "run_cmd.py").is_file()


PACKED_RECIPE = {**ALPACA_RECIPE, "filter": None, "pack": {"max_length": 256}}


def test_pack_stage_writes_what_dataprep_pack_makes_of_the_runs_dataset(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**PACKED_RECIPE, "output": str(tmp_path / "packed")})
    code, err = run(recipe)
    assert code == 0, err
    assert run(write_recipe(tmp_path / "plain.yaml", {**ALPACA_RECIPE, "filter": None,
                                                       "output": str(tmp_path / "data")}), "--no-cache")[0] == 0
    result = invoke("pack", tmp_path / "data", "-o", tmp_path / "by-hand", "--max-length", "256", "-q")
    assert result.exit_code == 0, result.stderr
    assert_same_dataset(tmp_path / "packed", tmp_path / "by-hand")
    manifest = json.loads((tmp_path / "packed" / "dataprep.json").read_text())
    assert manifest["packing"]["max_length"] == 256 and manifest["totals"]["rows_in"] == 40
    lines = err.splitlines()
    assert lines[-2].startswith("pack: 40 in, 40 out, 0 rejected; packs: ")
    assert lines[-1].startswith(f"run: wrote {tmp_path / 'packed'} (") and "efficiency" in lines[-1]


def test_a_new_pack_length_repacks_the_cached_dataset_and_a_rerun_is_up_to_date(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**PACKED_RECIPE, "output": str(tmp_path / "packed")})
    assert run(recipe)[0] == 0
    code, err = run(recipe)
    assert code == 0 and err.splitlines()[-1].startswith(f"run: {tmp_path / 'packed'} is up to date"), err
    code, err = run(recipe, "pack.max_length=512")
    assert code == 0, err
    assert err.splitlines()[0].startswith("tokenize: ") and err.splitlines()[0].endswith("[reused]")
    assert json.loads((tmp_path / "packed" / "dataprep.json").read_text())["packing"]["max_length"] == 512


def test_pack_rejects_go_beside_the_other_stages_rejects(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**PACKED_RECIPE, "pack": {"max_length": 100},
                                                "rejects": str(tmp_path / "rejects"), "output": str(tmp_path / "p")})
    code, err = run(recipe, "--no-cache")
    assert code == 0, err
    manifest = json.loads((tmp_path / "p" / "dataprep.json").read_text())
    rejected = [json.loads(line) for line in (tmp_path / "rejects" / "pack.jsonl").read_text().splitlines()]
    assert rejected and len(rejected) == manifest["totals"]["rejected"] == manifest["rejected"]["too_long"]
    assert {r["reason"] for r in rejected} == {"too_long"}
    assert manifest["totals"]["rows_in"] == 40 == manifest["totals"]["rows_out"] + len(rejected)


def test_stats_stage_describes_the_output(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {
        **PACKED_RECIPE, "stats": {"html": str(tmp_path / "page.html"), "json": str(tmp_path / "stats.json")},
        "output": str(tmp_path / "packed")})
    code, err = run(recipe)
    assert code == 0, err
    report = json.loads((tmp_path / "stats.json").read_text())
    manifest = json.loads((tmp_path / "packed" / "dataprep.json").read_text())
    assert report["input"]["kind"] == "packed" and report["rows"] == 40
    assert report["packing"]["efficiency"] == pytest.approx(manifest["packing"]["efficiency"], abs=1e-4)
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")
    assert err.splitlines()[-1] == (f"stats: 40 rows (packed); wrote {tmp_path / 'page.html'}, "
                                    f"{tmp_path / 'stats.json'}")
    records = write_recipe(tmp_path / "records.yaml", {"inputs": [{"path": str(SHAREGPT)}], "normalize": None,
                                                       "stats": None, "output": str(tmp_path / "out.jsonl")})
    result = invoke("run", records)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"dataprep stats: {tmp_path / 'out.jsonl'} (records")


def test_pack_needs_a_causal_dataset_in_its_one_layout_and_the_local_engine(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {"inputs": [{"path": str(ALPACA)}], "normalize": None,
                                                "pack": {"max_length": 64}, "output": str(tmp_path / "o.jsonl")})
    code, err = run(recipe)
    assert code == 2 and f"{recipe}:4: pack: packs the rows of a causal tokenize stage" in err, err
    recipe = write_recipe(tmp_path / "r.yaml", {**PACKED_RECIPE, "output": str(tmp_path / "p")})
    code, err = run(recipe, "tokenize.emit_for=trl")
    assert code == 2 and "tokenize.emit_for: pack reads the dataprep layout" in err, err
    code, err = run(recipe, "--engine", "ray")
    assert code == 2 and "pack runs with --engine local" in err, err
    assert not (tmp_path / "p").exists()


def test_the_tokenize_line_counts_the_same_from_the_entry_or_its_table(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "out"),
                                                "tokenize": {**ALPACA_RECIPE["tokenize"], "max_length": 64}})

    def tokenize_line(output: str) -> str:
        code, err = run(recipe, f"output={tmp_path / output}")
        assert code == 0, err
        return next(line for line in err.splitlines() if line.startswith("tokenize:"))

    fresh = tokenize_line("a")
    assert "truncated: " in fresh and "supervised: " in fresh and "truncated: 0" not in fresh
    assert tokenize_line("b") == fresh + " [reused]"  # counted when the entry was written
    (meta,) = (tmp_path / ".dataprep-cache" / "tokenize").glob("*/meta.json")
    entry = json.loads(meta.read_text())
    del entry["facts"]
    meta.write_text(json.dumps(entry))
    assert tokenize_line("c") == fresh + " [reused]"  # an entry without the counts: from its table


def test_a_run_that_tokenizes_does_not_import_pandas(tmp_path: Path) -> None:
    import subprocess
    import sys

    recipe = write_recipe(tmp_path / "r.yaml", {**ALPACA_RECIPE, "output": str(tmp_path / "out")})
    code = ("import sys; from dataprep.cli import main; sys.argv = ['dataprep', 'run', sys.argv[1], '-q']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]  # pyarrow's to_numpy and pa.array import it: 0.3 s of every run
    assert (tmp_path / "out" / "dataprep.json").is_file()


def test_split_rows_kept_as_derived_rows_give_the_same_output(tmp_path: Path) -> None:
    """Split's cache stores the rows of a source it rejected none of as derived from the entry before it, and the
    rows of a source it rejected some of whole; either way a run from the cache writes the same bytes."""
    rows = json.loads(ALPACA.read_text())
    tagged = tmp_path / "tagged.json"
    tagged.write_text(json.dumps([{**r, "src": "t"} for r in rows]))
    partly = tmp_path / "partly.json"
    partly.write_text(json.dumps([{**r, "src": "p"} if i % 3 else r for i, r in enumerate(rows)]))
    recipe = write_recipe(tmp_path / "r.yaml", {
        "inputs": [{"path": str(tagged)}, {"path": str(partly)}], "normalize": None,
        "filter": {"min_response_chars": 40}, "split": {"val_size": 0.25, "seed": 3, "stratify_by": ["meta.src"]},
        "output": str(tmp_path / "out.jsonl")})
    code, err = run(recipe, "--no-cache")
    assert code == 0, err
    expected = (tmp_path / "out.jsonl").read_bytes()
    assert "missing_stratify_field" in err
    for _ in range(2):  # computed into the cache, then read back from it
        code, err = run(recipe, "--cache-dir", tmp_path / "c")
        assert code == 0, err
        assert (tmp_path / "out.jsonl").read_bytes() == expected
    assert "[reused]" in next(line for line in err.splitlines() if line.startswith("split:")), err
    (entry,) = (tmp_path / "c" / "split").iterdir()
    meta = json.loads((entry / "meta.json").read_text())
    assert list(meta["sources_from"]) == ["0"]
    from dataprep.cache import Cache

    cache = Cache(tmp_path / "c")
    derived = [r for b in cache.read_split(entry.name, 0) for r in b.records]
    whole = [r for b in cache.read_split(entry.name, 1) for r in b.records]
    assert [json.loads(line) for line in expected.decode().splitlines()] == derived + whole
