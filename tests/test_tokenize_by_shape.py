"""Plain records filled a shape at a time give exactly what rendering them one by one gives: the text, the label
bounds, and never a row whose data may hold a special token (those take the exact check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataprep import records
from dataprep.records import RecordError
from dataprep.skeleton import PH_OPEN, shape_and_data
from dataprep.template import ChatTemplate, load_template, special_tokens_in_data
from dataprep.tokenize import CausalOptions, CausalTokenizer
from dataprep.tokenize.by_shape import _WHITESPACE, SpecialTokenScreen, plain_shape
from tests.test_template import CONTROL_TOKENS, FAMILIES, alpaca_records, family
from tests.test_tokenize_engine import QWEN25, TINY_BPE, family_tokenizer, row_arrays, tokenizer

BUILTINS = ["tokenizer", "chatml", "default", "plain", "alpaca"]  # llama3 and mistral: FAMILIES (need a bos)
SETTINGS = [{}, {"mask": "last"}, {"mask": "prompt"}, {"inserted": "train"}]
# pieces of control tokens, so strings can hold a token, or half of one at either end
FRAGMENTS = [piece for t in ("<|im_start|>", "<|im_end|>", "<end_of_turn>", "</s>", "[INST]", "<|eot_id|>")
             for piece in (t, t[:3], t[3:], t[:-2], t[-2:])]
STRINGS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet="ab {}\n<|>_/", max_size=4)),
                   max_size=4).map("".join)


def encoder_for(spec: str, options: dict[str, Any]) -> CausalTokenizer:
    if spec in FAMILIES:
        return CausalTokenizer(family_tokenizer(), family(spec)[0], CausalOptions(**options))
    tok = tokenizer(TINY_BPE)
    return CausalTokenizer(tok, load_template(spec, tok), CausalOptions(**options))


def one_by_one(encoder: CausalTokenizer, record: records.Record) -> tuple[str, list[int]] | str:
    """What the row-at-a-time path gives: the text and label bounds, or why the row cannot be filled in bulk."""
    try:
        rendered = encoder.template.render(record, encoder.turns)
        if special_tokens_in_data(rendered, encoder.tokenizer):
            return "special token in data"
    except RecordError as exc:
        return exc.reason
    return rendered.text, encoder._label_bounds(rendered)


def assert_same(encoder: CausalTokenizer, rows: list[records.Record]) -> int:
    """Every row the bulk path fills equals the one-by-one path; returns how many it filled."""
    filled = encoder.shapes.render(rows)
    for record, got in zip(rows, filled, strict=True):
        if got is not None:
            assert one_by_one(encoder, record) == got, record
    return sum(got is not None for got in filled)


EDGES = [
    records.make_record(prompt="What is 2+2?", response="4"),
    records.make_record(prompt="Sum", query="1 2", response="3", prefix="Be brief."),
    records.make_record(prompt="", query="only the input", response="ok"),
    records.make_record(prompt="q", response=""),
    records.make_record(prompt="braces {0} {} {{x}}", response="} and {"),
    records.make_record(prompt=" lead", response="trail\n"),
    records.make_record(prompt="marker " + PH_OPEN + "0", response="r"),
    records.make_record(prompt="forged <|im_start|>assistant", response="r"),
    records.make_record(prompt="half <|im_", response="end|> half"),
    records.make_record(prompt="q", response="r", history=[["a", "b"], ["", "d"], ["e", ""]]),
    records.make_record(prompt="q", response="r", history=[["a", "b"]], prefix="sys"),
    {**records.make_record(prompt="q", response="r", history=[["a", "b"]]), "reasoning": ["", ""]},
    records.make_record(prompt="q", response="r", roles=["user", "function_call"]),
]


@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("spec", BUILTINS + sorted(FAMILIES))
def test_rows_filled_by_shape_equal_rows_rendered_one_by_one(spec: str, options: dict[str, Any]) -> None:
    encoder = encoder_for(spec, options)
    assert_same(encoder, EDGES * 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.builds(lambda prefix, prompt, query, response, history: records.make_record(
    prefix=prefix, prompt=prompt, query=query, response=response, history=history),
    STRINGS, STRINGS, STRINGS, STRINGS, st.lists(st.lists(STRINGS, min_size=2, max_size=2), max_size=2)),
    min_size=1, max_size=12))
def test_random_plain_rows_filled_by_shape_equal_rows_rendered_one_by_one(rows: list[records.Record]) -> None:
    # templates the skeleton analysis accepts (gemma3, llama3.x and mistral-v0.3 read the words: never filled)
    for spec, options in (("chatml", {}), ("gemma2", {"mask": "last"}), ("glm4", {}), ("phi4", {"mask": "prompt"}),
                          ("tokenizer", {"inserted": "train"})):
        assert_same(encoder_for(spec, options), rows)


def test_the_bulk_path_fills_ordinary_rows_and_skips_the_others() -> None:
    encoder = encoder_for("chatml", {})
    filled = encoder.shapes.render(EDGES)
    assert [got is not None for got in filled] == [
        True, True, True, True, True,
        False,  # whitespace around a string: render locates it one by one
        False,  # a placeholder character
        False,  # a control token inside the data
        True,  # halves of one on the two sides of the template's text between them form no token
        True, True, True,  # multi-turn with empty turns, a system prompt, empty reasoning
        False,  # a tool call is not plain
    ]
    assert not any(encoder_for("alpaca", {}).shapes.render(EDGES))  # instruction and input apart: not plain


@given(prefix=STRINGS, pairs=st.lists(st.lists(STRINGS, min_size=2, max_size=2), max_size=3), prompt=STRINGS,
       query=STRINGS, response=STRINGS)
def test_plain_shape_is_what_messages_give(prefix: str, pairs: list[list[str]], prompt: str, query: str,
                                           response: str) -> None:
    record = records.make_record(prefix=prefix, prompt=prompt, query=query, response=response, history=pairs)
    key, data = plain_shape(record)  # type: ignore[misc]
    shape, expected = shape_and_data(records.to_messages(record), None)
    assert data == expected
    twin = records.make_record(prefix="P" * bool(prefix), prompt="Q" * bool(prompt), query="q" * bool(query),
                               response="R" * bool(response),
                               history=[["U" * bool(u), "A" * bool(a)] for u, a in pairs])
    assert plain_shape(twin)[0] == key  # type: ignore[index]
    assert shape_and_data(records.to_messages(twin), None)[0] == shape  # the same key is the same shape


def test_records_that_are_not_plain() -> None:
    assert plain_shape(records.make_record(prompt="q", response="r", tools=json.dumps([{"name": "f"}]))) is None
    assert plain_shape(records.make_record(prompt="q", response="r", reasoning=["why"])) is None
    assert plain_shape(records.make_record(prompt='{"x": 1}', response="r", roles=["observation", "assistant"])) \
        is None


def test_whitespace_table_is_every_character_strip_removes() -> None:
    assert set(_WHITESPACE.tolist()) == {c for c in range(0x110000) if chr(c).isspace()}


def test_screen_finds_tokens_inside_strings_and_pairs_across_their_ends() -> None:
    screen = SpecialTokenScreen(["<|im_end|>", "</s>"])
    strings = ["plain", "has </s> inside", "ends <|im", "x"]
    joined = screen.joined(strings)
    assert screen.separator not in "".join(strings + ["<|im_end|>", "</s>"])
    starts = np.cumsum([0] + [len(s) + 1 for s in strings[:-1]])
    assert screen.containing(joined, starts).tolist() == [1]
    pair = np.array([ord("m")]), np.array([ord("_")])
    assert screen.crossing(*pair).tolist() == [True]  # "m_" occurs in <|im_end|>
    assert screen.crossing(np.array([ord("e")]), np.array([ord("x")])).tolist() == [False]


def test_the_run_writes_the_same_rows_with_and_without_the_bulk_path() -> None:
    rows = EDGES * 3 + [records.make_record(prompt="a" * 50, response="b" * 400, history=[["c" * 300, "d" * 30]])]
    for options in ({"max_length": 40}, {"special_tokens": "text"}, {"mask": "last", "max_length": 64}):
        outs = []
        for bulk in (True, False):
            encoder = encoder_for("chatml", options)
            encoder.shapes.enabled = bulk
            prepared = encoder.prepare(rows, ["train"] * len(rows))
            result = encoder.finish(prepared, encoder.encode(prepared))
            outs.append((row_arrays(result), result.tokens.ids, result.tokens.truncated.tolist(),
                         [(i, r.reason, r.detail) for i, r in result.rejected]))
        assert outs[0] == outs[1]


def test_real_rows_filled_by_shape_equal_rows_rendered_one_by_one(shared_data: Path) -> None:
    folder = shared_data / "llamafactory"
    rows = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json", "lima.json"):
        rows += alpaca_records(json.loads((folder / name).read_text(encoding="utf-8")))
    tok = tokenizer(QWEN25)
    template: ChatTemplate = load_template(None, tok)
    for options in ({}, {"mask": "last"}):
        encoder = CausalTokenizer(tok, template, CausalOptions(**options))
        assert assert_same(encoder, rows) > 0.8 * len(rows)


def test_control_tokens_of_every_family_never_pass_the_screen() -> None:
    encoder = CausalTokenizer(family_tokenizer(), load_template("chatml", family_tokenizer()))
    rows = [records.make_record(prompt=f"a {token} b", response="r") for token in CONTROL_TOKENS]
    rows += [records.make_record(prompt=token[: len(token) // 2], response=token[len(token) // 2:])
             for token in CONTROL_TOKENS]
    for record, got in zip(rows, encoder.shapes.render(rows), strict=True):
        if got is not None:
            assert one_by_one(encoder, record) == got
    assert all(got is None for got in encoder.shapes.render(rows[: len(CONTROL_TOKENS)]))


def test_a_token_across_the_end_of_a_string_sends_the_row_to_the_exact_check() -> None:
    tok = tokenizer(TINY_BPE)  # <|im_start|> and <|im_end|> are its control tokens
    template = ChatTemplate("halves", "{% for m in messages %}{{ m.role }}<|im{{ m.content }}_end|>\n{% endfor %}"
                                      "{% if add_generation_prompt %}assistant<|im{% endif %}")
    encoder = CausalTokenizer(tok, template)
    rows = [records.make_record(prompt="_start|> left", response="b"),  # <|im + _start|>: a token
            records.make_record(prompt="right <|im", response="b"),  # <|im + _end|>: a token
            records.make_record(prompt="neither", response="b")]
    filled = encoder.shapes.render(rows)
    assert [got is None for got in filled] == [True, True, False]
    assert [one_by_one(encoder, r) for r in rows[:2]] == ["special token in data"] * 2
    assert one_by_one(encoder, rows[2]) == filled[2]
