"""The recipe model: built from the stages' option dataclasses, strict, every error with its path and line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dataprep.filter import FilterOptions
from dataprep.normalize import NormalizeOptions
from dataprep.recipe import (
    ELSEWHERE,
    TASK_FIELDS,
    FilterSection,
    NormalizeSection,
    RecipeError,
    SplitSection,
    TokenizeSection,
    load_recipe,
)
from dataprep.split import SplitOptions, parse_size
from dataprep.tokenize import CausalOptions, ClassifyOptions, TokenizeJob
from tests.conftest import FIXTURES

ALPACA = FIXTURES / "data" / "alpaca.json"
TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"


@pytest.mark.parametrize("cls, section", [
    (NormalizeOptions, NormalizeSection), (FilterOptions, FilterSection), (SplitOptions, SplitSection),
    (TokenizeJob, TokenizeSection), (CausalOptions, TokenizeSection), (ClassifyOptions, TokenizeSection),
])
def test_every_option_field_is_a_recipe_key_or_placed_elsewhere(cls: type, section: type) -> None:
    for f in dataclasses.fields(cls):
        assert f.name in section.model_fields or f.name in ELSEWHERE.get(cls, {}), f"{cls.__name__}.{f.name}"


def test_sections_build_the_dataclasses_the_commands_build() -> None:
    split = SplitSection(val_size="0.02", test_size=100, stratify_by=["len_bucket", "meta.source"]).options()
    assert split == SplitOptions(val_size=parse_size("0.02"), test_size=parse_size("100"),
                                 stratify_by=("len_bucket", "meta.source"))
    assert FilterSection(min_response_chars=6, drop_regex=["x+"]).options() == FilterOptions(
        min_response_chars=6, drop_regex=("x+",))
    job = TokenizeSection(tokenizer="tok", max_length=64, mask="last").job("out")
    assert job.causal == CausalOptions(max_length=64, mask="last") and job.outdir == "out"
    job = TokenizeSection(tokenizer="tok", task="classification", text="a", label="y", max_length=8).job("out")
    assert job.classify == ClassifyOptions(text="a", label="y", max_length=8)
    assert TASK_FIELDS["max_length"] == {"causal", "classification"}


def recipe_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def problems(path: str, *overrides: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, overrides)
    return caught.value.problems


def test_unknown_keys_wrong_types_and_dataclass_checks_at_once(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, f"""\
inputs:
  - path: {ALPACA}
    rows: 0
split:
  val_size: 2.5
  bucket_by: letters
tokenize:
  tokenizer: {TINY_BPE}
  task: classification
  mask: last
output: out/
extra: 1
""")
    assert problems(path) == [
        f"{path}:3: inputs.0.rows: Input should be greater than or equal to 1 (got 0)",
        f"{path}:5: split.val_size: must be a fraction between 0 and 1 or a whole count of rows, got '2.5'",
        f"{path}:7: tokenize: mask only applies with task causal",
        f"{path}:12: extra: unknown key (stages: validate, normalize, filter, split, tokenize, pack, stats; also "
        "inputs, mix, output, rejects, on_error)",
    ]


def test_dataclass_checks_speak_recipe_keys(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, f"inputs: [{{path: {ALPACA}}}]\nsplit: {{val_size: 0.6, test_size: 0.6}}\n"
                                 "filter: {dedup: fuzzy}\noutput: o.jsonl\n")
    assert problems(path) == [
        f"{path}:2: split: val_size and test_size together exceed all rows",
        f"{path}:3: filter: unknown dedup mode 'fuzzy'; use one of exact, near",
    ]


def test_overrides_are_typed_and_checked(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, f"inputs: [{{path: {ALPACA}}}]\nnormalize:\nsplit: {{val_size: 0.1}}\n"
                                 "output: o.jsonl\n")
    loaded = load_recipe(path, ["split.val_size=5", "inputs.alpaca.rows=3", "split.stratify_by=[len_bucket]",
                                "filter={min_response_chars: 2}", "normalize=false"])
    recipe = loaded.recipe
    assert recipe.split.val_size == 5 and recipe.inputs[0].rows == 3 and recipe.filter.min_response_chars == 2
    assert recipe.normalize is None and loaded.names == ["alpaca"]
    assert problems(path, "split.val_size=zero", "inputs.beta.rows=1", "novalue") == [
        "override 'inputs.beta.rows=1': no input named 'beta'",
        "override 'novalue': expected KEY=VALUE, e.g. tokenize.max_length=4096",
        f"{path} (override): split.val_size: must be a fraction between 0 and 1 or a whole count of rows, "
        "got 'zero'",
    ]


def test_yaml_that_is_not_a_recipe(tmp_path: Path) -> None:
    assert problems(recipe_file(tmp_path, "inputs: [\n")) [0].startswith(f"{tmp_path / 'r.yaml'}:2: not valid YAML")
    assert problems(recipe_file(tmp_path, "- a list\n")) == [f"{tmp_path / 'r.yaml'}:1: a recipe is a mapping "
                                                             "(inputs:, output:, stages...)"]
    path = recipe_file(tmp_path, "inputs: []\n!!python/object:os.system {}: 1\n")
    assert "not valid YAML" in problems(path)[0]  # the safe loader builds no objects


def test_dataset_info_entries_resolve_and_names_must_differ(tmp_path: Path) -> None:
    info = tmp_path / "dataset_info.json"
    (tmp_path / "alpaca.json").write_bytes(ALPACA.read_bytes())  # a registry names files beside it
    columns = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
    info.write_text(json.dumps({"mine": {"file_name": "alpaca.json", "columns": columns},
                                "remote": {"hf_hub_url": "x/y"}}))
    path = recipe_file(tmp_path, f"""\
inputs:
  - {{dataset_info: {info}, dataset: mine, format: sharegpt}}
  - {{dataset_info: {info}, dataset: remote}}
  - {{path: {ALPACA}, name: mine}}
output: o.jsonl
normalize:
""")
    assert problems(path) == [
        f"{path}:2: inputs.0.format: contradicts dataset 'mine', which is alpaca",
        f"{path}:3: inputs.1.dataset: dataset 'remote' has no local file (hf_hub_url x/y); download it and give "
        "its path",
        f"{path}:4: inputs.2.name: 'mine' already names inputs.0; give each input a name",
    ]
    loaded = load_recipe(path, ["inputs.0.format=auto", "inputs.1.path=" + str(ALPACA), "inputs.2.name=other"])
    assert loaded.names == ["mine", "remote", "other"] and loaded.entries[0].columns["history"] == "history"


def test_a_value_that_fits_no_member_of_a_union_is_one_problem(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, f"inputs: [{{path: {ALPACA}}}]\nsplit: {{val_size: [1], test_size: true}}\n"
                                 "output: o.jsonl\n")
    assert problems(path) == [f"{path}:2: split.val_size: expected a number or an integer or text",
                              f"{path}:2: split.test_size: expected a number or an integer or text (got True)"]
    path = recipe_file(tmp_path, f"inputs: [{{path: {ALPACA}}}]\ntokenize: {{tokenizer: t, max_length: true}}\n"
                                 "output: o\n")
    assert problems(path) == [f"{path}:2: tokenize.max_length: Input should be a valid integer (got True)"]
