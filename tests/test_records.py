"""records.py: ids, key order, the messages conversion both ways (tool calls included), every RecordError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprep.records import (
    CANONICAL_FIELDS,
    RecordError,
    check_canonical,
    content_id,
    expand_turns,
    from_messages,
    looks_raw,
    make_record,
    ordered,
    parse_function_call,
    parse_tools,
    split_reasoning,
    split_think,
    think_text,
    to_messages,
    turns,
    user_text,
    with_think,
)

TOOLS = json.dumps([{"name": "get_weather", "parameters": {"type": "object"}}])
CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})
PARALLEL = json.dumps([
    {"name": "get_weather", "arguments": {"city": "Oslo"}},
    {"name": "get_weather", "arguments": {"city": "Rome"}},
])


def tool_messages(call_text: str = CALL) -> list[dict]:
    calls = [{"type": "function", "function": c} for c in parse_function_call(call_text)]
    return [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "It is 3 degrees."},
    ]


def test_id_is_derived_from_content_and_deterministic() -> None:
    a = make_record(prompt="Say hi.", response="Hi.")
    b = make_record(prompt="Say hi.", response="Hi.")
    assert a["id"] == b["id"] == content_id(a)
    assert len(a["id"]) == 16 and int(a["id"], 16) >= 0
    assert make_record(prompt="Say hi.", response="Hello.")["id"] != a["id"]
    assert make_record(prompt="Say hi.", query="x", response="Hi.")["id"] != a["id"]
    assert make_record(prompt="Say hi.", response="Hi.", history=[["a", "b"]])["id"] != a["id"]
    assert make_record(prompt="Say hi.", response="Hi.", tools=TOOLS)["id"] != a["id"]


def test_id_ignores_meta_and_keeps_a_source_id() -> None:
    plain = make_record(prompt="p", response="r")
    assert make_record(prompt="p", response="r", meta={"source": "x"})["id"] == plain["id"]
    assert make_record(prompt="p", response="r", id="row-7")["id"] == "row-7"
    assert make_record(prompt="p", response="r", id=7)["id"] == "7"
    assert make_record(prompt="p", response="r", id="")["id"] == plain["id"]


def test_keys_come_in_canonical_order() -> None:
    record = make_record(prompt="p", response="r", meta={"k": 1}, tools=TOOLS, prefix="s", history=[["u", "a"]])
    assert list(record) == [*CANONICAL_FIELDS, "tools", "meta"]
    shuffled = {"meta": {}, "response": "r", "split": "train", "id": "x", "prompt": "p", "zzz": 1}
    assert list(ordered(shuffled)) == ["id", "prompt", "response", "meta", "split", "zzz"]


def test_plain_roles_and_empty_optionals_are_not_written() -> None:
    record = make_record(prompt="p", response="r", roles=["user", "assistant"], tools="", meta={})
    assert set(record) == set(CANONICAL_FIELDS)


def test_user_text_joins_prompt_and_query_on_a_new_line() -> None:
    assert user_text({"prompt": "Translate.", "query": "Hallo"}) == "Translate.\nHallo"
    assert user_text({"prompt": "", "query": "Hallo"}) == "Hallo"
    assert user_text({"prompt": "Translate.", "query": ""}) == "Translate."


def test_turns_apply_roles_and_check_their_count() -> None:
    record = from_messages(tool_messages())
    assert [role for role, _ in turns(record)] == ["user", "function_call", "observation", "assistant"]
    with pytest.raises(RecordError) as err:
        turns({**record, "roles": ["user", "assistant"]})
    assert err.value.reason == "bad_roles"
    assert err.value.detail == "roles has 2 entries for 4 turns"


def test_parse_function_call_single_parallel_and_string_arguments() -> None:
    assert parse_function_call(CALL) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert [c["arguments"]["city"] for c in parse_function_call(PARALLEL)] == ["Oslo", "Rome"]
    as_text = json.dumps({"name": "f", "arguments": '{"x": 1}'})
    assert parse_function_call(as_text) == [{"name": "f", "arguments": {"x": 1}}]
    assert parse_function_call('{"name": "f"}') == [{"name": "f", "arguments": {}}]


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("not json", "function_call is not JSON: Expecting value"),
        ('{"arguments": {}}', "function_call needs a JSON object with a 'name'"),
        ('[{"name": "f"}, 3]', "function_call needs a JSON object with a 'name'"),
        ('{"name": "f", "arguments": "{oops"}', "function_call arguments are not JSON"),
        ('{"name": "f", "arguments": [1, 2]}', "function_call arguments must be a JSON object"),
    ],
)
def test_parse_function_call_rejects(content: str, detail: str) -> None:
    with pytest.raises(RecordError) as err:
        parse_function_call(content)
    assert (err.value.reason, err.value.detail) == ("invalid_function_call", detail)


def test_parse_tools() -> None:
    assert parse_tools(None) is None and parse_tools("") is None and parse_tools("[]") is None
    assert parse_tools(TOOLS) == json.loads(TOOLS)
    assert parse_tools('{"name": "f"}') == [{"name": "f"}]
    for bad in ("[oops", '"a string"'):
        with pytest.raises(RecordError) as err:
            parse_tools(bad)
        assert err.value.reason == "invalid_tools"


def test_plain_conversation_round_trip() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blue"},
    ]
    record = from_messages(messages)
    assert record["prefix"] == "Be brief."
    assert record["history"] == [["Hi", "Hello"]]
    assert (record["prompt"], record["response"]) == ("Name a colour", "Blue")
    assert "roles" not in record
    assert to_messages(record) == messages
    assert from_messages(to_messages(record)) == record


@pytest.mark.parametrize("call_text", [CALL, PARALLEL], ids=["single", "parallel"])
def test_tool_call_round_trip(call_text: str) -> None:
    messages = tool_messages(call_text)
    record = from_messages(messages, tools=TOOLS)
    assert record["roles"] == ["user", "function_call", "observation", "assistant"]
    assert record["history"] == [["Weather?", call_text]]
    assert (record["prompt"], record["response"]) == ('{"temp": 3}', "It is 3 degrees.")
    assert record["tools"] == TOOLS
    back = to_messages(record)
    assert back == messages
    assert isinstance(back[2]["tool_calls"][0]["function"]["arguments"], dict)
    assert from_messages(back, tools=TOOLS) == record


def test_tool_calls_accept_string_arguments_and_bare_calls() -> None:
    messages = tool_messages()
    messages[2] = {"role": "assistant", "content": None,
                   "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Oslo"}'}]}
    assert from_messages(messages)["history"][0][1] == CALL


def test_text_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]
    record = from_messages([{"role": "user", "content": parts}, {"role": "assistant", "content": "Hi"}])
    assert record["prompt"] == "Hello"


def test_function_and_observation_roles_are_accepted_as_named() -> None:
    record = from_messages([
        {"role": "user", "content": "q"},
        {"role": "function_call", "content": CALL},
        {"role": "observation", "content": "r"},
        {"role": "assistant", "content": "a"},
    ])
    assert record["roles"] == ["user", "function_call", "observation", "assistant"]


USER = {"role": "user", "content": "q"}
ASSISTANT = {"role": "assistant", "content": "a"}


@pytest.mark.parametrize(
    ("messages", "reason", "detail"),
    [
        ([USER, "a"], "invalid_message", "message 1 is not an object"),
        ([{"role": "user", "content": 3}, ASSISTANT], "invalid_message", "message 0 content is not a string"),
        ([{"role": "user", "content": [{"type": "image_url"}]}, ASSISTANT], "non_text_content",
         "message 0 has non-text content parts"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}, ASSISTANT], "non_text_content",
         "message 0 has non-text content parts"),
        ([USER, {"role": "system", "content": "s"}, ASSISTANT], "system_not_first",
         "system message at position 1; only a leading one is allowed"),
        ([USER, {"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}],
         "text_with_tool_calls", "message 1 has both text and tool_calls; split them into two turns"),
        ([USER, {"role": "bot", "content": "a"}], "unknown_role", "message 1 has unknown role 'bot'"),
        ([{"role": "system", "content": "s"}], "no_turns", "conversation has no user or assistant turns"),
        ([USER, USER, ASSISTANT], "roles_not_alternating",
         "turn 1 is 'user' where a assistant-side turn was expected"),
        ([ASSISTANT, USER], "roles_not_alternating", "turn 0 is 'assistant' where a user-side turn was expected"),
        ([{"role": "tool", "content": "r"}, ASSISTANT], "roles_not_alternating",
         "conversation must start with a user turn"),
        ([USER, ASSISTANT, USER], "ends_on_user_turn",
         "conversation ends on a user-side turn; there is nothing to learn"),
        ([USER, {"role": "assistant", "tool_calls": 5}], "invalid_function_call", "tool_calls is not a list"),
        ([USER, {"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}], "invalid_function_call",
         "a tool_calls entry has no function name"),
        ([USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}],
         "invalid_function_call", "tool call arguments are not JSON"),
        ([USER, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 1}}]}],
         "invalid_function_call", "tool call arguments must be a JSON object"),
        ([USER, {"role": "function_call", "content": "{}"}], "invalid_function_call",
         "function_call needs a JSON object with a 'name'"),
    ],
)
def test_from_messages_rejects(messages: list, reason: str, detail: str) -> None:
    with pytest.raises(RecordError) as err:
        from_messages(messages)
    assert (err.value.reason, err.value.detail) == (reason, detail)
    assert str(err.value) == detail


# --- reasoning ---------------------------------------------------------------------------------------------------

@given(reasoning=st.text(), reply=st.text())
def test_think_text_and_split_think_are_inverse(reasoning: str, reply: str) -> None:
    if reasoning:
        assert split_think(think_text(reasoning, reply)) == (reasoning, reply)


def test_split_think_layouts() -> None:
    assert split_think("<think>\nR\n</think>\n\nC") == ("R", "C")
    assert split_think("<think>R</think>C") == ("R", "C")
    assert split_think("\n<think>R</think>\nC") == ("R", "C")
    assert split_think("C <think>R</think>") == ("", "C <think>R</think>")
    assert split_think("<think>never closed") == ("", "<think>never closed")


def test_reasoning_round_trips_through_messages() -> None:
    messages = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
                {"role": "user", "content": "q2"}, {"role": "assistant", "content": "<think>\nr2\n</think>\n\na2"}]
    record = from_messages(messages)
    assert record["reasoning"] == ["r1", "r2"] and record["response"] == "a2"
    assert to_messages(record)[3] == {"role": "assistant", "content": "a2", "reasoning_content": "r2"}
    assert from_messages(to_messages(record)) == record
    with pytest.raises(RecordError) as err:
        from_messages([{"role": "user", "content": "q"},
                       {"role": "assistant", "content": "<think>x</think>a", "reasoning_content": "y"}])
    assert err.value.reason == "conflicting_reasoning"


def test_reasoning_changes_the_id_only_when_present() -> None:
    plain = make_record(prompt="q", response="a")
    assert make_record(prompt="q", response="a", reasoning=[""])["id"] == plain["id"]
    assert "reasoning" not in make_record(prompt="q", response="a", reasoning=[""])
    assert make_record(prompt="q", response="a", reasoning=["r"])["id"] != plain["id"]


def test_split_reasoning_and_with_think_are_inverse() -> None:
    raw = make_record(prompt="q", response="<think>r2</think>a2", history=[["q1", "<think>\nr1\n</think>\n\na1"]])
    record = split_reasoning(raw)
    assert record["reasoning"] == ["r1", "r2"] and record["history"] == [["q1", "a1"]] and record["response"] == "a2"
    assert split_reasoning(with_think(record)) == {**record, "id": record["id"]}
    call = make_record(prompt="q", response="<think>x</think>{}", roles=["user", "function_call"])
    assert split_reasoning(call) is not call and split_reasoning(call).get("reasoning") is None


def test_expand_turns() -> None:
    record = make_record(prompt="q3", query="in", response="a3", history=[["q1", "a1"], ["q2", CALL]],
                         roles=["user", "assistant", "user", "function_call", "observation", "assistant"],
                         reasoning=["r1", "", "r3"], id="x")
    parts = expand_turns(record)
    assert [p["id"] for p in parts] == ["x#0", "x#1", "x#2"]
    assert [(p["prompt"], p["query"], p["response"]) for p in parts] == [("q1", "", "a1"), ("q2", "", CALL),
                                                                         ("q3", "in", "a3")]
    assert "roles" not in parts[0] and parts[1]["roles"] == ["user", "assistant", "user", "function_call"]
    assert parts[0]["reasoning"] == ["r1"] and parts[1]["reasoning"] == ["r1", ""]
    assert parts[2] == {**record, "id": "x#2"}
    for part in parts:
        check_canonical(part)


@pytest.mark.parametrize(("change", "reason"), [
    ({"history": "ab"}, "bad_history"),
    ({"history": [["a", "b"], 5]}, "bad_history"),
    ({"response": None}, "null_field"),
    ({"prompt": 3.5}, "wrong_type"),
    ({"roles": ["user<|im_end|>\n<|im_start|>system", "assistant"]}, "bad_roles"),
    ({"roles": ["user", 1]}, "bad_roles"),
    ({"roles": ["assistant", "user"]}, "bad_roles"),
    ({"reasoning": ["a", "b"]}, "bad_reasoning"),
    ({"reasoning": [None]}, "bad_reasoning"),
    ({"tools": []}, "wrong_type"),
])
def test_check_canonical_rejects(change: dict, reason: str) -> None:
    good = make_record(prompt="p", response="r")
    check_canonical(good)
    with pytest.raises(RecordError) as err:
        check_canonical({**good, **change})
    assert err.value.reason == reason


def test_check_canonical_lets_extra_fields_through() -> None:
    """A user's own column is not a defect: stages keep it as it is (normalize puts unknown columns in meta)."""
    check_canonical({**make_record(prompt="p", response="r"), "source": "mine"})


def test_check_canonical_missing_and_not_an_object() -> None:
    with pytest.raises(RecordError) as err:
        check_canonical({"instruction": "i", "output": "o"})
    assert err.value.reason == "missing_field"
    with pytest.raises(RecordError) as err:
        check_canonical(["a"])
    assert err.value.reason == "not_canonical"


def test_looks_raw() -> None:
    assert looks_raw([{"instruction": "i", "input": "", "output": "o"}] * 3)
    assert not looks_raw([{"instruction": "i"}, make_record(prompt="p", response="r")])
    assert not looks_raw([])


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                           max_leaves=8)


@given(st.lists(st.text(), min_size=4, max_size=4), st.dictionaries(st.text(), JSON_VALUES, max_size=3))
def test_plain_record_is_make_record_and_its_line_is_dumps(texts, meta):
    """The fast path for plain rows gives the record, content id and JSON line the general code gives."""
    from dataprep.io import dumps
    from dataprep.records import plain_record

    prefix, prompt, query, response = texts
    record, line = plain_record(prefix, prompt, query, response, meta)
    general = make_record(prefix=prefix, prompt=prompt, query=query, response=response, meta=meta)
    assert record == general and list(record) == list(general)
    assert line == dumps(record)
