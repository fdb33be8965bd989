"""normalize --to messages|sharegpt|alpaca: the export adapters, lossy rows, and round trips back to canonical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.io import dumps
from dataprep.normalize import NormalizeOptions, normalize_batch
from dataprep.records import make_record
from tests.conftest import FIXTURES, invoke

DATA = FIXTURES / "data"


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def canonical_of(path: Path, *args: str) -> str:
    result = invoke("normalize", path, "-q", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def export(record: dict, to: str) -> tuple[list, list]:
    return normalize_batch([record], NormalizeOptions("canonical", to=to))


def test_messages_export_of_tool_calls() -> None:
    result = invoke("normalize", DATA / "sharegpt.json", "--to", "messages")
    assert result.exit_code == 0
    assert result.stderr == "normalize: detected format sharegpt\nnormalize: 20 in, 20 out, 0 rejected; to: messages\n"
    out = rows(result.stdout)
    weather = out[5]
    assert list(weather) == ["id", "messages", "tools"]
    assert weather["tools"][0]["name"] == "get_weather"
    assert weather["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lisbon"}}}]}
    assert weather["messages"][2]["role"] == "tool"
    parallel = out[7]["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"]["city"] for c in parallel] == ["上海", "广州"]
    assert out[2]["messages"][0] == {"role": "system", "content": "You are a patient Python tutor."}


def test_messages_export_keeps_meta_and_joins_query() -> None:
    out = rows(invoke("normalize", DATA / "alpaca.json", "--to", "messages", "-q").stdout)
    assert out[1] == {"id": out[1]["id"], "messages": [
        {"role": "user", "content": "Translate the sentence into French.\nThe library opens at nine."},
        {"role": "assistant", "content": "La bibliothèque ouvre à neuf heures."}], "category": "translation"}


def test_sharegpt_export() -> None:
    out = rows(invoke("normalize", DATA / "messages.jsonl", "--to", "sharegpt", "-q").stdout)
    assert out[1]["system"] == "You are a terse assistant."
    assert out[1]["conversations"] == [{"from": "human", "value": "Capital of Canada?"},
                                       {"from": "gpt", "value": "Ottawa."}]
    tool_rows = [r for r in out if "tools" in r]
    assert tool_rows and all({"function_call", "observation"} <= {t["from"] for t in r["conversations"]}
                             for r in tool_rows if any(t["from"] == "function_call" for t in r["conversations"]))


def test_alpaca_export_and_lossy_rows(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    result = invoke("normalize", DATA / "sharegpt.json", "--to", "alpaca", "--rejects", rejects)
    assert result.exit_code == 0
    out, bad = rows(result.stdout), rows(rejects.read_text())
    assert result.stderr.endswith(
        f"normalize: 20 in, {len(out)} out, {len(bad)} rejected (lossy_export: {len(bad)}); to: alpaca\n")
    assert len(bad) == 4
    assert {r["reason"] for r in bad} == {"lossy_export"}
    assert bad[0]["detail"] == "alpaca cannot carry tool calls: the function_call and observation turns would be lost"
    assert bad[0]["conversations"][1]["from"] == "function_call"
    assert out[1]["history"] == [["Write a limerick about a cat.", out[1]["history"][0][1]]]
    assert list(out[2])[:5] == ["id", "instruction", "input", "output", "system"]


def test_meta_named_like_a_target_column_is_lossy() -> None:
    record = make_record(prompt="p", response="r", meta={"conversations": "x"})
    kept, rejected = export(record, "sharegpt")
    assert kept == []
    assert [(r.reason, r.detail) for r in rejected] == [
        ("lossy_export", "meta field 'conversations' would be read back as the sharegpt column 'conversations'")]
    assert export(record, "messages")[0][0]["conversations"] == "x"
    assert export(record, "alpaca")[0][0]["conversations"] == "x"


@pytest.mark.parametrize("to", ["sharegpt", "messages", "alpaca"])
def test_round_trip_through_each_format(to: str) -> None:
    """Every row a format accepts comes back byte-identical, except that messages and ShareGPT have one user
    turn where canonical has prompt and query: those come back joined by a newline, the id unchanged."""
    for source in (DATA / "sharegpt.json", DATA / "alpaca.json", DATA / "canonical.jsonl"):
        canonical = canonical_of(source).splitlines(keepends=True)
        exported = invoke("normalize", "-", "-q", "--to", to, input="".join(canonical))
        back = invoke("normalize", "-", "-q", "--from", to, input=exported.stdout)
        assert back.exit_code == 0
        returned = {json.loads(line)["id"]: line for line in back.stdout.splitlines(keepends=True)}
        lossy = sum("roles" in json.loads(line) for line in canonical) if to == "alpaca" else 0
        assert len(returned) == len(canonical) - lossy
        for line in canonical:
            record = json.loads(line)
            if record["id"] not in returned:
                assert "function_call" in record["roles"]
            elif record["query"] and to != "alpaca":
                joined = {**record, "prompt": f"{record['prompt']}\n{record['query']}", "query": ""}
                assert json.loads(returned[record["id"]]) == joined
            else:
                assert returned[record["id"]] == line


def test_split_fields_survive_export() -> None:
    record = make_record(prompt="p", response="r", meta={"k": 1})
    record.update(len_bucket=1, split="val")
    for to in ("messages", "sharegpt", "alpaca"):
        (row,), _ = export(record, to)
        assert list(row)[-3:] == ["k", "len_bucket", "split"]
        back, rejected = normalize_batch([row], NormalizeOptions(to))
        assert rejected == [] and back == [record]


@pytest.mark.slow
def test_glaive_to_messages_and_back(shared_data: Path) -> None:
    for lang in ("en", "zh"):
        source = shared_data / "llamafactory" / f"glaive_toolcall_{lang}_demo.json"
        canonical = canonical_of(source, "--from", "sharegpt")
        assert len(canonical.splitlines()) == 300
        for to in ("sharegpt", "messages"):
            exported = invoke("normalize", "-", "-q", "--to", to, input=canonical)
            assert len(exported.stdout.splitlines()) == 300
            back = invoke("normalize", "-", "-q", "--from", to, input=exported.stdout)
            assert back.stdout == canonical
    messages = rows(exported.stdout)
    calls = [m for r in messages for m in r["messages"] if "tool_calls" in m]
    assert len(calls) == 216
    assert all(isinstance(c["tool_calls"][0]["function"]["arguments"], dict) for c in calls)


@pytest.mark.slow
def test_messages_render_with_qwen_template(shared_data: Path) -> None:
    """What --to messages writes is what Qwen2.5's chat template reads: tool_calls and tool results render."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / "qwen2.5"))
    out = rows(invoke("normalize", DATA / "sharegpt.json", "--to", "messages", "-q").stdout)
    text = tokenizer.apply_chat_template(out[5]["messages"], tools=out[5]["tools"], tokenize=False)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>' in text
    assert '<tools>\n{"name": "get_weather", "description": ' in text
    assert '<tool_response>\n{"city": "Lisbon", "temperature": 21, "condition": "sunny"}\n</tool_response>' in text


text = st.text(max_size=12)
call = st.builds(lambda name, args: {"name": name, "arguments": args}, st.text(min_size=1, max_size=6),
                 st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.integers(), max_size=2))
call_text = st.one_of(call, st.lists(call, min_size=2, max_size=3)).map(lambda v: json.dumps(v, ensure_ascii=False))
TOOLS = json.dumps([{"name": "f", "parameters": {"type": "object"}}])


@st.composite
def tool_records(draw: st.DrawFn) -> dict:
    """Canonical records with single and parallel calls, their results, and plain turns, in any valid order."""
    turns: list[str] = []
    roles: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        roles.append("observation" if roles and roles[-1] == "function_call" else "user")
        turns.append(draw(text))
        calls = draw(st.booleans())
        roles.append("function_call" if calls else "assistant")
        turns.append(draw(call_text if calls else text))
    pairs = [turns[i:i + 2] for i in range(0, len(turns), 2)]
    return make_record(prefix=draw(text), prompt=pairs[-1][0], response=pairs[-1][1], history=pairs[:-1],
                       tools=draw(st.sampled_from([None, TOOLS])), roles=roles,
                       meta=draw(st.sampled_from([None, {"source": "x"}])))


@settings(max_examples=150, deadline=None)
@given(st.lists(tool_records(), min_size=1, max_size=4))
def test_tool_call_records_survive_every_trip(records: list[dict]) -> None:
    """Canonical is a byte fixed point; canonical -> sharegpt|messages -> canonical is the identity."""
    source = "".join(dumps(r) + "\n" for r in records)
    same, rejected = normalize_batch(records, NormalizeOptions("canonical"))
    assert rejected == [] and "".join(dumps(r) + "\n" for r in same) == source
    for to in ("sharegpt", "messages"):
        exported, rejected = normalize_batch(records, NormalizeOptions("canonical", to=to))
        assert rejected == []
        back, rejected = normalize_batch([json.loads(dumps(r)) for r in exported], NormalizeOptions(to))
        assert rejected == [] and back == records
