"""dataprep normalize: every source format, auto detection, --map, --dataset-info, every reject reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataprep.errors import UsageProblem
from dataprep.formats import detect_schema
from dataprep.io import dumps, read_records
from dataprep.normalize import NormalizeOptions, normalize_batch, parse_map
from dataprep.records import CANONICAL_FIELDS, content_id, make_record
from tests.conftest import FIXTURES, invoke

DATA = FIXTURES / "data"
CALL = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def run_one(row: dict, source: str = "auto", **options: object) -> tuple[list, list]:
    opts = NormalizeOptions(source, **options).resolved(row)  # type: ignore[arg-type]
    return normalize_batch([row], opts)


# --- every source format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpaca.json", "alpaca.jsonl", "alpaca.jsonl.gz", "alpaca.parquet", "alpaca_saved"])
def test_alpaca_files(name: str) -> None:
    result = invoke("normalize", DATA / name)
    assert result.exit_code == 0
    assert result.stderr == "normalize: detected format alpaca\nnormalize: 40 in, 40 out, 0 rejected\n"
    out = rows(result.stdout)
    assert len(out) == 40
    first = out[0]
    assert list(first) == [*CANONICAL_FIELDS, "meta"]
    assert first["prompt"] == "Give three tips for staying focused while studying."
    assert (first["query"], first["prefix"], first["history"]) == ("", "", [])
    assert first["response"].startswith("1. Put your phone in another room.")
    assert first["meta"] == {"category": "advice"}
    assert first["id"] == content_id(first)
    assert out[1]["query"] == "The library opens at nine."
    assert out[3]["prefix"] == "你是一名专业的翻译助手。"
    assert all(r["meta"]["category"] for r in out)


def test_alpaca_csv_and_json_agree() -> None:
    """Same records in two containers give the same canonical rows (CSV has no nulls: empty system is "")."""
    from_csv = {r["id"]: r for r in rows(invoke("normalize", DATA / "alpaca.csv").stdout)}
    from_json = {r["id"]: r for r in rows(invoke("normalize", DATA / "alpaca.json").stdout)}
    assert len(from_csv) == 35
    assert all(from_json[key] == row for key, row in from_csv.items())


def test_alpaca_history_and_system() -> None:
    row = {"instruction": "And now?", "input": "", "output": "Done.", "system": "Be kind.",
           "history": [["Start", "Started."]]}
    (record,), _ = run_one(row)
    assert record["prefix"] == "Be kind."
    assert record["history"] == [["Start", "Started."]]
    assert "meta" not in record


def test_sharegpt_file() -> None:
    result = invoke("normalize", DATA / "sharegpt.json")
    assert result.exit_code == 0
    assert result.stderr == "normalize: detected format sharegpt\nnormalize: 20 in, 20 out, 0 rejected\n"
    out = rows(result.stdout)
    assert out[2]["prefix"] == "You are a patient Python tutor."
    assert out[2]["history"] == [["How do I read a file line by line?", out[2]["history"][0][1]]]
    weather = out[5]
    assert weather["roles"] == ["user", "function_call", "observation", "assistant"]
    assert weather["history"][0][1] == '{"name": "get_weather", "arguments": {"city": "Lisbon"}}'
    assert json.loads(weather["tools"])[0]["name"] == "get_weather"
    parallel = out[7]
    assert len(json.loads(parallel["history"][0][1])) == 2
    assert "roles" not in out[9] and "tools" in out[9]


def test_sharegpt_role_and_content_tags() -> None:
    row = {"conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    (record,), _ = run_one(row, "sharegpt")
    assert (record["prompt"], record["response"]) == ("Hi", "Hello")


def test_sharegpt_system_turn_and_equal_system_column() -> None:
    turns = [{"from": "system", "value": "S"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    (record,), _ = run_one({"conversations": turns, "system": "S"})
    assert record["prefix"] == "S"


def test_messages_file() -> None:
    result = invoke("normalize", DATA / "messages.jsonl")
    assert result.exit_code == 0
    assert result.stderr == "normalize: detected format messages\nnormalize: 20 in, 20 out, 0 rejected\n"
    out = rows(result.stdout)
    assert out[1]["prefix"] == "You are a terse assistant."
    with_tools = [r for r in out if "roles" in r]
    assert with_tools and all("function_call" in r["roles"] and r["tools"].startswith("[") for r in with_tools)


def test_messages_tool_call_ids_are_not_needed() -> None:
    row = {"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "3"},
        {"role": "assistant", "content": "3 degrees."},
    ], "tools": [{"name": "get_weather"}]}
    (record,), rejected = run_one(row)
    assert rejected == []
    assert record["history"] == [["Weather in Oslo?", CALL]]
    assert record["tools"] == '[{"name": "get_weather"}]'


def test_canonical_is_idempotent_on_its_own_output(tmp_path: Path) -> None:
    first = invoke("normalize", DATA / "canonical.jsonl")
    assert first.exit_code == 0
    assert first.stderr == "normalize: detected format canonical\nnormalize: 20 in, 20 out, 0 rejected\n"
    assert rows(first.stdout) == read_records(str(DATA / "canonical.jsonl"))
    again = invoke("normalize", "-", "--from", "canonical", input=first.stdout)
    assert again.stdout == first.stdout


def test_canonical_extra_columns_join_meta() -> None:
    row = {**make_record(prompt="p", response="r", meta={"a": 1}), "b": 2}
    (record,), _ = run_one(row, "canonical")
    assert record["meta"] == {"a": 1, "b": 2}


def test_split_and_len_bucket_pass_through() -> None:
    row = {"instruction": "p", "output": "r", "split": "val", "len_bucket": 2}
    (record,), _ = run_one(row)
    assert list(record)[-2:] == ["len_bucket", "split"] and record["split"] == "val"


# --- auto detection -----------------------------------------------------------------------------------------


def test_quiet_silences_the_detection_message() -> None:
    result = invoke("normalize", DATA / "sharegpt.json", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"instruction": "i", "output": "o"}, "alpaca"),
        ({"conversations": []}, "sharegpt"),
        ({"messages": []}, "messages"),
        (make_record(prompt="p", response="r"), "canonical"),
    ],
)
def test_detect_schema(row: dict, fmt: str) -> None:
    assert detect_schema(row) == fmt


def test_detect_schema_uses_the_map() -> None:
    assert detect_schema({"question": "q", "answer": "a"}, {"prompt": "question", "response": "answer"}) == "alpaca"
    assert detect_schema({"dialog": [{"from": "human"}]}, {"messages": "dialog"}) == "sharegpt"
    assert detect_schema({"dialog": [{"role": "user"}]}, {"messages": "dialog"}) == "messages"


def test_auto_refuses_ambiguous_input() -> None:
    result = invoke("normalize", "-", input=jsonl({"instruction": "i", "output": "o", "messages": []}))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: <stdin>:1: the input fits several formats (alpaca, messages) by its keys (instruction, messages, "
        "output) (choose one with --from alpaca|messages)\n"
    )


def test_auto_refuses_unknown_keys() -> None:
    result = invoke("normalize", "-", input=jsonl({"text": "hello"}))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: <stdin>:1: cannot tell the input format from its keys (text) (name it with "
        "--from alpaca|sharegpt|messages|canonical, or rename columns with --map)\n"
    )


# --- --map --------------------------------------------------------------------------------------------------


def test_map_renames_columns() -> None:
    source = jsonl({"question": "Why?", "answer": "Because.", "sys": "S", "topic": "t"})
    result = invoke("normalize", "-", "--map", "prompt=question,response=answer,system=sys", input=source)
    assert result.exit_code == 0
    assert result.stderr == "normalize: detected format alpaca\nnormalize: 1 in, 1 out, 0 rejected\n"
    (record,) = rows(result.stdout)
    assert (record["prefix"], record["prompt"], record["response"]) == ("S", "Why?", "Because.")
    assert record["meta"] == {"topic": "t"}


def test_map_conversations_and_id() -> None:
    source = jsonl({"key": "k1", "dialog": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})
    result = invoke("normalize", "-", "--from", "sharegpt", "--map", "conversations=dialog,id=key", input=source)
    assert result.exit_code == 0
    (record,) = rows(result.stdout)
    assert record["id"] == "k1" and "meta" not in record


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--map", "prompt"], "Error: --map expects canonical=source pairs separated by commas, got 'prompt'\n"),
        (["--map", "label=y"], "Error: cannot map onto 'label'; canonical fields are prefix, prompt, query, response, "
                               "history, id, messages, tools (or system, conversations)\n"),
        (["--from", "alpaca", "--map", "messages=m"],
         "Error: --map messages=... does not apply to alpaca input; it maps history, id, prefix, prompt, query, "
         "response, tools\n"),
    ],
)
def test_bad_map(args: list[str], message: str) -> None:
    result = invoke("normalize", "-", *args, input=jsonl({"instruction": "i", "output": "o"}))
    assert result.exit_code == 2
    assert result.stderr == message


def test_parse_map_aliases() -> None:
    assert parse_map("system=s, conversations=c") == {"prefix": "s", "messages": "c"}
    assert parse_map(None) == {}


# --- --dataset-info -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dataset_info_glaive(shared_data: Path) -> None:
    info = shared_data / "llamafactory" / "dataset_info.json"
    for name in ("glaive_toolcall_en_demo", "glaive_toolcall_zh_demo"):
        result = invoke("normalize", "--dataset-info", info, "--dataset", name)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == "normalize: 300 in, 300 out, 0 rejected\n"
        out = rows(result.stdout)
        calls = [r for r in out if "function_call" in r.get("roles", [])]
        assert len(calls) > 100
        assert all(r["tools"] != "[]" for r in out if "tools" in r)


@pytest.mark.slow
def test_dataset_info_media_columns_go_to_meta(shared_data: Path) -> None:
    info = shared_data / "llamafactory" / "dataset_info.json"
    result = invoke("normalize", "--dataset-info", info, "--dataset", "mllm_demo")
    assert result.exit_code == 0
    out = rows(result.stdout)
    assert len(out) == 6
    assert out[0]["meta"] == {"images": ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"]}
    assert out[0]["history"][0][0] == "<image>Who are they?"


@pytest.mark.slow
def test_dataset_info_old_layout_history(shared_data: Path) -> None:
    info = shared_data / "llamafactory" / "dataset_info_2024-05.json"
    lima = invoke("normalize", "--dataset-info", info, "--dataset", "lima")
    assert lima.exit_code == 0
    assert lima.stderr == "normalize: 1029 in, 1029 out, 0 rejected\n"
    lengths = sorted(len(r["history"]) for r in rows(lima.stdout))
    assert lengths.count(0) == 1000 and lengths[-1] == 9
    example = invoke("normalize", "--dataset-info", info, "--dataset", "example")
    assert example.exit_code == 0
    assert [len(r["history"]) for r in rows(example.stdout)] == [2, 2]


@pytest.mark.slow
def test_dataset_info_input_overrides_file_name(shared_data: Path) -> None:
    info = shared_data / "llamafactory" / "dataset_info.json"
    glaive = shared_data / "llamafactory" / "glaive_toolcall_en_demo.json"
    result = invoke("normalize", glaive, "--dataset-info", info, "--dataset", "glaive_toolcall_en", "-q")
    assert result.exit_code == 0 and len(rows(result.stdout)) == 300


@pytest.mark.parametrize(
    ("registry", "name", "message"),
    [
        ("dataset_info.json", "kto_en_demo",
         "dataset 'kto_en_demo' is KTO data (column 'kto_tag'); normalize makes SFT records only"),
        ("dataset_info.json", "dpo_en_demo",
         "dataset 'dpo_en_demo' is preference (ranking) data; normalize makes SFT records only"),
        ("dataset_info_2024-05.json", "comparison_gpt4_en",
         "dataset 'comparison_gpt4_en' is preference (ranking) data; normalize makes SFT records only"),
        ("dataset_info.json", "alpaca_gpt4_en", "has no local file (hf_hub_url llamafactory/alpaca_gpt4_en)"),
        ("dataset_info_2024-05.json", "ultra_chat", "has no local file (script_url ultra_chat)"),
        ("dataset_info.json", "glaive_toolcall_en_dem", "no dataset 'glaive_toolcall_en_dem' (did you mean"),
    ],
)
@pytest.mark.slow
def test_dataset_info_refusals(shared_data: Path, registry: str, name: str, message: str) -> None:
    result = invoke("normalize", "--dataset-info", shared_data / "llamafactory" / registry, "--dataset", name)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stdout == ""


def test_dataset_info_with_tags(tmp_path: Path) -> None:
    (tmp_path / "chat.jsonl").write_text(jsonl({"dialog": [
        {"speaker": "me", "text": "q"}, {"speaker": "fn", "text": CALL}, {"speaker": "res", "text": "3"},
        {"speaker": "bot", "text": "a"}]}))
    entry = {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "dialog"},
             "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot",
                      "function_tag": "fn", "observation_tag": "res"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"chat": entry}))
    result = invoke("normalize", "--dataset-info", tmp_path / "dataset_info.json", "--dataset", "chat")
    assert result.exit_code == 0, result.stderr
    (record,) = rows(result.stdout)
    assert record["roles"] == ["user", "function_call", "observation", "assistant"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "x"], "Error: --dataset-info and --dataset go together\n"),
        (["--dataset-info", "nowhere.json", "--dataset", "x"], "Error: nowhere.json: no such file\n"),
    ],
)
def test_dataset_info_usage(args: list[str], message: str) -> None:
    result = invoke("normalize", *args)
    assert result.exit_code == 2
    assert result.stderr == message


def test_dataset_info_and_from_must_agree(tmp_path: Path) -> None:
    (tmp_path / "info.json").write_text(json.dumps({"d": {"file_name": "d.json", "formatting": "sharegpt"}}))
    result = invoke("normalize", "--dataset-info", tmp_path / "info.json", "--dataset", "d", "--from", "alpaca")
    assert result.exit_code == 2
    assert result.stderr == "Error: --from alpaca contradicts dataset 'd', which is sharegpt\n"


# --- rejects ------------------------------------------------------------------------------------------------

H, G = "human", "gpt"


def conv(*turns: tuple[str, str], **extra: object) -> dict:
    return {"conversations": [{"from": f, "value": v} for f, v in turns], **extra}


REJECTS = [
    ("alpaca", {"instruction": "i"}, "missing_field", "missing field 'output'"),
    ("alpaca", {"output": "o"}, "missing_field", "missing field 'instruction'"),
    ("alpaca", {"instruction": "i", "output": 5}, "wrong_type", "field 'output' must be a string, not int"),
    ("alpaca", {"instruction": "i", "output": "o", "history": "none"}, "wrong_type",
     "field 'history' must be a list of [user, assistant] pairs, not str"),
    ("alpaca", {"instruction": "i", "output": "o", "history": [["a"]]}, "wrong_type",
     "history[0] must be a [user, assistant] pair of strings"),
    ("alpaca", {"instruction": "i", "output": "o", "id": 1.5}, "wrong_type",
     "field 'id' must be a string or an integer, not float"),
    ("alpaca", {"instruction": "i", "output": "o", "tools": 3}, "wrong_type",
     "field 'tools' must be a JSON array (or its text), not int"),
    ("alpaca", {"instruction": "i", "output": "o", "tools": "[oops"}, "invalid_tools",
     "tools is not JSON: Expecting value"),
    ("alpaca", {"instruction": "i", "output": "o", "split": 1}, "wrong_type", "field 'split' must be a string, not int"),
    ("sharegpt", {"conversations": "hi"}, "wrong_type", "field 'conversations' must be a list of messages, not str"),
    ("sharegpt", {}, "missing_field", "missing field 'conversations'"),
    ("sharegpt", conv((H, "a"), (H, "b"), (G, "c")), "roles_not_alternating",
     "turn 1 is 'user' where a assistant-side turn was expected"),
    ("sharegpt", conv((G, "a"), (H, "b")), "roles_not_alternating",
     "turn 0 is 'assistant' where a user-side turn was expected"),
    ("sharegpt", conv((H, "a"), (G, "b"), (H, "c")), "ends_on_user_turn",
     "conversation ends on a user-side turn; there is nothing to learn"),
    ("sharegpt", conv((H, "a"), ("bot", "b")), "unknown_role", "turn 1 has unknown role 'bot' (key 'from')"),
    ("sharegpt", {"conversations": [{"from": H, "value": 1}]}, "wrong_type", "turn 0 'value' must be a string, not int"),
    ("sharegpt", {"conversations": [{"from": H, "value": "a", "weight": 0}]}, "unknown_message_key",
     "turn 0 has keys a canonical record cannot carry: weight"),
    ("sharegpt", conv((H, "a"), (G, "b"), system="S"), "no_error", ""),
    ("sharegpt", conv(("system", "T"), (H, "a"), (G, "b"), system="S"), "conflicting_system",
     "column 'system' and the conversation's system message differ; keep one"),
    ("sharegpt", conv((H, "a"), ("system", "T"), (G, "b")), "system_not_first",
     "system message at position 1; only a leading one is allowed"),
    ("sharegpt", conv(("system", "T")), "no_turns", "conversation has no user or assistant turns"),
    ("sharegpt", conv((H, "a"), ("function_call", "{bad"), ("observation", "r"), (G, "b")), "invalid_function_call",
     "function_call is not JSON: Expecting property name enclosed in double quotes"),
    ("messages", {"messages": [{"role": "user", "content": "q", "name": "x"}]}, "unknown_message_key",
     "message 0 has keys a canonical record cannot carry: name"),
    ("messages", {"messages": ["q"]}, "wrong_type", "message 0 must be an object, not str"),
    ("messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x",
                                                                  "tool_calls": [{"function": {"name": "f"}}]}]},
     "text_with_tool_calls", "message 1 has both text and tool_calls; split them into two turns"),
    ("messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"x": 1}]}]},
     "invalid_function_call", "message 1 tool_calls must be a list of {function: {name, arguments}}"),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}, {"role": "assistant"}]},
     "non_text_content", "message 0 has non-text content parts"),
    ("messages", {"messages": [{"role": "narrator", "content": "q"}]}, "unknown_role",
     "message 0 has unknown role 'narrator'"),
    ("canonical", {"prompt": "p"}, "missing_field", "missing field 'response'"),
    ("canonical", {"prompt": "p", "response": "r", "meta": [1]}, "wrong_type",
     "field 'meta' must be an object, not list"),
    ("canonical", {"prompt": "p", "response": "r", "meta": {"a": 1}, "a": 2}, "meta_conflict",
     "column 'a' is also a key of 'meta'"),
    ("canonical", {"prompt": "p", "response": "r", "roles": "user"}, "wrong_type",
     "field 'roles' must be a list of role names"),
    ("canonical", {"prompt": "p", "response": "r", "roles": ["user", "function_call", "user"]}, "bad_roles",
     "roles has 3 entries for 2 turns"),
    ("canonical", {"prompt": "p", "response": "r", "roles": ["observation", "user"]}, "bad_roles",
     "roles[1] is 'user', not a assistant-side role"),
    ("canonical", {"prompt": "r", "response": "{}", "roles": ["user", "function_call"]}, "invalid_function_call",
     "function_call needs a JSON object with a 'name'"),
]


@pytest.mark.parametrize(("fmt", "row", "reason", "detail"), REJECTS)
def test_reject_reasons(fmt: str, row: dict, reason: str, detail: str) -> None:
    kept, rejected = normalize_batch([row], NormalizeOptions(fmt))
    if reason == "no_error":
        assert len(kept) == 1 and rejected == []
        return
    assert kept == []
    assert [(r.record, r.reason, r.detail) for r in rejected] == [(row, reason, detail)]


def test_rejects_file(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = invoke("normalize", DATA / "broken" / "missing_fields.json", "--rejects", rejects)
    assert result.exit_code == 0
    assert result.stderr == (
        "normalize: detected format alpaca\nnormalize: 3 in, 1 out, 2 rejected (missing_field: 2)\n"
    )
    assert len(rows(result.stdout)) == 1
    source = str(DATA / "broken" / "missing_fields.json")
    assert rows(rejects.read_text()) == [
        {"instruction": "What is 2 + 2?", "input": "", "stage": "normalize", "reason": "missing_field",
         "detail": "missing field 'output'", "location": f"{source}:7"},
        {"input": "no instruction here", "output": "An answer without a question.", "stage": "normalize",
         "reason": "missing_field", "detail": "missing field 'instruction'", "location": f"{source}:11"},
    ]


@pytest.mark.parametrize(
    ("name", "summary", "reasons"),
    [
        ("not_alternating.json", "2 in, 1 out, 1 rejected (roles_not_alternating: 1)", ["roles_not_alternating"]),
        ("ends_on_user.json", "2 in, 1 out, 1 rejected (ends_on_user_turn: 1)", ["ends_on_user_turn"]),
        ("wrong_types.json", "4 in, 0 out, 4 rejected (wrong_type: 4)", ["wrong_type"] * 4),
    ],
)
def test_broken_fixtures(tmp_path: Path, name: str, summary: str, reasons: list[str]) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = invoke("normalize", DATA / "broken" / name, "--rejects", rejects, "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert [r["reason"] for r in rows(rejects.read_text())] == reasons
    assert invoke("normalize", DATA / "broken" / name).stderr.endswith(f"normalize: {summary}\n")


def test_malformed_fails_without_on_error_reject(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = invoke("normalize", DATA / "broken" / "malformed.jsonl", "-o", out)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {DATA / 'broken' / 'malformed.jsonl'}:4: malformed JSON at column 66: Expecting ',' delimiter\n"
    )
    assert not out.exists()


def test_on_error_reject_with_malformed_fixture(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    source = DATA / "broken" / "malformed.jsonl"
    result = invoke("normalize", source, "--on-error", "reject", "--rejects", rejects)
    assert result.exit_code == 0
    assert result.stderr.endswith("normalize: 7 in, 6 out, 1 rejected (malformed_json: 1)\n")
    assert len(rows(result.stdout)) == 6
    (bad,) = rows(rejects.read_text())
    assert bad == {"raw": '{"instruction": "Name a colour.", "input": "", "output": "Green."', "stage": "normalize",
                   "reason": "malformed_json", "detail": "malformed JSON at column 66: Expecting ',' delimiter",
                   "location": f"{source}:4"}


def test_empty_input() -> None:
    result = invoke("normalize", DATA / "broken" / "empty.jsonl")
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", "normalize: 0 in, 0 out, 0 rejected\n")


def test_options_refuse_unresolved_auto() -> None:
    with pytest.raises(UsageProblem):
        normalize_batch([{"instruction": "i", "output": "o"}], NormalizeOptions())


# --- properties ---------------------------------------------------------------------------------------------

text = st.text(max_size=20)
pairs = st.lists(st.lists(text, min_size=2, max_size=2), max_size=3)
canonical_records = st.builds(
    make_record,
    prompt=text, response=text, query=text, prefix=text, history=pairs,
    meta=st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | text, max_size=3)),
    id=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(canonical_records, max_size=5))
def test_canonical_bytes_are_a_fixed_point(records: list[dict]) -> None:
    source = "".join(dumps(r) + "\n" for r in records)
    kept, rejected = normalize_batch(records, NormalizeOptions("canonical"))
    assert rejected == []
    assert "".join(dumps(r) + "\n" for r in kept) == source


KEYS = ["instruction", "input", "output", "system", "history", "tools", "id", "conversations", "messages", "prompt",
        "response", "prefix", "query", "roles", "meta", "split", "from", "value", "role", "content", "tool_calls",
        "function", "name", "arguments", "x"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4),
                 st.sampled_from(["human", "gpt", "user", "assistant", "tool", "system", "function_call",
                                  "observation", "[]", '{"name": "f"}']))
values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                                         max_size=4), max_leaves=10)
random_rows = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_rows, st.sampled_from(["alpaca", "sharegpt", "messages", "canonical"]),
       st.sampled_from(["canonical", "messages", "sharegpt", "alpaca"]))
def test_random_rows_are_kept_or_rejected(batch: list[dict], fmt: str, to: str) -> None:
    kept, rejected = normalize_batch(batch, NormalizeOptions(fmt, to=to))
    assert len(kept) + len(rejected) == len(batch)
    assert all(r.reason and r.detail for r in rejected)
    if to == "canonical":
        again, refused = normalize_batch(kept, NormalizeOptions("canonical"))
        assert refused == [] and again == kept


def test_batches_do_not_change_results() -> None:
    records = read_records(str(DATA / "sharegpt.json"))
    options = NormalizeOptions("sharegpt")
    whole, _ = normalize_batch(records, options)
    one_by_one = [r for row in reversed(records) for r in normalize_batch([row], options)[0]]
    assert one_by_one == whole[::-1]


def test_output_through_a_link_keeps_the_link(tmp_path: Path) -> None:
    """``-o /dev/null`` or ``--rejects /dev/stdout`` must write through the node, never rename over it."""
    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    result = invoke("normalize", DATA / "broken" / "missing_fields.json", "-q", "--rejects", link)
    assert result.exit_code == 0
    assert link.is_symlink()
    assert [r["reason"] for r in rows(target.read_text())] == ["missing_field", "missing_field"]


def test_think_blocks_become_reasoning_and_go_back_on_export() -> None:
    from dataprep.normalize import NormalizeOptions, normalize_batch

    alpaca = [{"instruction": "2+2?", "input": "", "output": "<think>\nadd\n</think>\n\n4"}]
    (record,), rejected = normalize_batch(alpaca, NormalizeOptions("alpaca"))
    assert not rejected and record["reasoning"] == ["add"] and record["response"] == "4"
    for target in ("alpaca", "sharegpt", "messages"):
        (row,), _ = normalize_batch([record], NormalizeOptions("canonical", to=target))
        (back,), rejected = normalize_batch([row], NormalizeOptions(target))
        assert not rejected and back == record, target
    sharegpt = [{"conversations": [{"from": "human", "value": "hi"},
                                   {"from": "gpt", "value": "<think>greet</think>hello"}]}]
    (record,), _ = normalize_batch(sharegpt, NormalizeOptions("sharegpt"))
    assert record["reasoning"] == ["greet"] and record["response"] == "hello"


def test_lines_made_while_reading_are_the_lines_of_the_records():
    """Alpaca rows get their JSON line as they are read; rows that change after (reasoning split out of a reply,
    split's fields carried) or are not plain get theirs from the encoder; either way line == dumps(record)."""
    from dataprep.normalize import normalize_encoded

    rows = [{"instruction": "Say \"hi\"\n", "input": "é\u2028", "output": "hi\t\\"},
            {"instruction": "q", "output": "<think>why</think>because", "system": "s"},
            {"instruction": "q", "output": "a", "len_bucket": 2, "split": "train"},
            {"instruction": "q", "output": "a", "history": [["u", "v"]], "source": "web"},
            {"instruction": "q", "output": "a", "id": 7},
            {"score": 1.5, "instruction": "q", "output": "a", "tags": ["x", {"y": None}]},
            {"instruction": 1, "output": "a"}]
    options = NormalizeOptions(source="alpaca")
    kept, lines, rejected = normalize_encoded(rows, options)
    assert (kept, [r.index for r in rejected]) == (normalize_batch(rows, options)[0], [6])
    assert lines == [dumps(r) for r in kept]
    assert kept[1]["reasoning"] == ["why"] and kept[2]["split"] == "train" and kept[4]["id"] == "7"
    assert kept[5]["meta"] == {"score": 1.5, "tags": ["x", {"y": None}]}
    assert normalize_encoded(rows, NormalizeOptions(source="alpaca", to="alpaca"))[1] is None
