"""``dataprep render`` through the CLI, and the render stage function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataprep import records
from dataprep.errors import UsageProblem
from dataprep.io import read_records
from dataprep.render import render_records
from dataprep.template import load_template
from tests.conftest import FIXTURES, invoke

CANONICAL = FIXTURES / "data" / "canonical.jsonl"
TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
TOOL_RECORDS = 4  # canonical.jsonl has 4 records with tool calls (fixtures/README.md)


def rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_render_with_the_tokenizer_template_matches_apply_chat_template() -> None:
    from transformers import AutoTokenizer

    result = invoke("render", CANONICAL, "--tokenizer", TINY_BPE)
    assert result.exit_code == 0
    assert result.stderr == "render: 20 in, 20 out, 0 rejected; template: tokenizer\n"
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_BPE))
    source = read_records(str(CANONICAL))
    out = rows(result.stdout)
    assert [r["id"] for r in out] == [r["id"] for r in source]
    for row, record in zip(out, source, strict=True):
        assert list(row) == ["id", "text", "spans", "inserted"] and row["inserted"] == []
        expected = tokenizer.apply_chat_template(records.to_messages(record),
                                                 tools=records.parse_tools(record.get("tools")), tokenize=False)
        assert row["text"] == expected
        assert len(row["spans"]) == len(record["history"]) + 1
        assert row["text"][slice(*row["spans"][-1])] == record["response"] + "<|im_end|>"


def test_render_builtin_without_tokenizer_rejects_tool_records(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = invoke("render", CANONICAL, "--template", "chatml", "--rejects", rejects)
    assert result.exit_code == 0
    assert result.stderr == (f"render: 20 in, {20 - TOOL_RECORDS} out, {TOOL_RECORDS} rejected "
                             f"(template_error: {TOOL_RECORDS}); template: chatml\n")
    out = rows(result.stdout)
    assert len(out) == 20 - TOOL_RECORDS
    first = out[0]
    assert first["text"] == ("<|im_start|>user\nName the largest planet in the Solar System.<|im_end|>\n"
                             "<|im_start|>assistant\nJupiter.<|im_end|>\n")
    assert [first["text"][s:e] for s, e in first["spans"]] == ["Jupiter.<|im_end|>"]
    bad = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(bad) == TOOL_RECORDS
    assert {(r["stage"], r["reason"]) for r in bad} == {("render", "template_error")}
    assert all("tools" in r and "no tool format" in r["detail"] for r in bad)


@pytest.mark.slow
def test_render_reports_default_system_prompt_rows(shared_data: Path) -> None:
    result = invoke("render", CANONICAL, "--tokenizer", shared_data / "tokenizers" / "qwen2.5", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    unprefixed = sum(1 for r in read_records(str(CANONICAL)) if not r.get("prefix"))
    result = invoke("render", CANONICAL, "--tokenizer", shared_data / "tokenizers" / "qwen2.5")
    assert result.stderr == ("render: 20 in, 20 out, 0 rejected; template: tokenizer, "
                             f"rows given the template's default system prompt: {unprefixed}\n")


def test_render_to_file_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for target in (first, second):
        assert invoke("render", CANONICAL, "--tokenizer", TINY_BPE, "-o", target, "-q").exit_code == 0
    assert first.read_bytes() == second.read_bytes() and first.stat().st_size > 0


def test_render_reads_stdin() -> None:
    line = json.dumps(records.make_record(prompt="Hi", response="Hello"))
    result = invoke("render", "-", "--template", "chatml", "-q", input=line + "\n")
    assert result.exit_code == 0
    row = rows(result.stdout)[0]
    assert [row["text"][s:e] for s, e in row["spans"]] == ["Hello<|im_end|>"]


def test_render_usage_errors_exit_2() -> None:
    result = invoke("render", CANONICAL, "--template", "llama3")
    assert result.exit_code == 2
    assert result.stderr == ("Error: template 'llama3' writes bos_token, but no --tokenizer was given "
                             "(pass --tokenizer DIR: special tokens come from the tokenizer)\n")
    result = invoke("render", CANONICAL)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no chat template to render with: no --tokenizer was given")
    result = invoke("render", CANONICAL, "--template", "nonesuch")
    assert result.exit_code == 2 and "unknown template 'nonesuch'" in result.stderr
    assert result.stdout == ""


def test_render_missing_input_exit_2() -> None:
    result = invoke("render", "no/such/file.jsonl", "--template", "chatml")
    assert result.exit_code == 2
    assert result.stderr == "Error: no/such/file.jsonl: no such file\n"


def test_render_records_rejects_non_canonical_rows() -> None:
    template = load_template("chatml", None)
    good = records.make_record(prompt="q", response="a")
    bad = [{**good, "history": "ab"}, {**good, "response": None}, {**good, "roles": ["user<|im_end|>", "assistant"]},
           {"instruction": "raw alpaca"}]
    kept, rejected = render_records(template, [*bad, good])
    assert len(kept) == 1 and [kept[0]["text"][s:e] for s, e in kept[0]["spans"]] == ["a<|im_end|>"]
    assert [r.reason for r in rejected] == ["bad_history", "null_field", "bad_roles", "missing_field"]


def test_render_stops_on_raw_source_data() -> None:
    with pytest.raises(UsageProblem, match="not canonical records: run `dataprep normalize` first"):
        render_records(load_template("chatml", None), [{"instruction": "i", "input": "", "output": "o"}])
    result = invoke("render", FIXTURES / "data" / "alpaca.jsonl", "--template", "chatml")
    assert result.exit_code == 2
    assert "not canonical records: run `dataprep normalize` first" in result.stderr


def test_render_shows_the_inserted_think_block(shared_data: Path) -> None:
    line = json.dumps(records.make_record(prompt="Hi", response="Hello", history=[["Q", "A"]],
                                          reasoning=["", "greet back"]))
    plain = json.dumps(records.make_record(prompt="Hi", response="Hello"))
    result = invoke("render", "-", "--tokenizer", shared_data / "tokenizers" / "qwen3", "-q",
                    input=line + "\n" + plain + "\n")
    assert result.exit_code == 0, result.stderr
    with_reasoning, without = rows(result.stdout)
    assert [with_reasoning["text"][s:e] for s, e in with_reasoning["spans"]] == [
        "A<|im_end|>", "<think>\ngreet back\n</think>\n\nHello<|im_end|>"]
    assert with_reasoning["inserted"] == []
    assert [without["text"][s:e] for s, e in without["inserted"]] == ["<think>\n\n</think>\n\n"]
