"""Skeletons: a filled skeleton equals the real render, and any template use of the words turns them off."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep import skeleton as S
from dataprep.template import _ENV

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TRIMMED = "{% for m in messages %}[{{ m.role }}]{{ m.content | trim }}{% if m.content %}.{% endif %}{% endfor %}"


def skeletons(source: str) -> tuple[S.Skeletons, Any]:
    env = S.tracking_environment(_ENV)
    tracked = env.from_string(source)
    real = _ENV.from_string(source)

    def render(messages: Any, tools: Any, agp: bool) -> str:
        return tracked.render(messages=messages, tools=tools, add_generation_prompt=agp)

    def reference(messages: Any, tools: Any = None, agp: bool = False) -> str:
        return real.render(messages=messages, tools=tools, add_generation_prompt=agp)

    return S.Skeletons(render, env, S.analyse(env.parse(source))), reference


def chat(*contents: str) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]


def test_a_placing_template_is_filled_exactly_and_once_per_shape():
    sk, reference = skeletons(CHATML)
    rows = [chat("hi", "hello"), chat("what?", "that", "and?", "this"), chat("again", "once more")]
    for messages in rows:
        assert sk.text(messages, None) == reference(messages)
    assert sk.text(rows[0], None, True) == reference(rows[0], agp=True)
    assert (sk.filled, sk.rendered) == (4, 0)
    assert len(sk._cache) == 3  # two-message, four-message, and two-message with the generation prompt


def test_empty_content_is_part_of_the_shape():
    sk, reference = skeletons("{% for m in messages %}{% if m.content %}<{{ m.content }}>{% else %}-{% endif %}"
                              "{% endfor %}")
    for messages in (chat("a", ""), chat("", "b"), chat("x", "y")):
        assert sk.text(messages, None) == reference(messages)


@pytest.mark.parametrize("body", [
    "{% if '</think>' in m.content %}T{% endif %}{{ m.content }}",
    "{{ m.content.split('</think>')[-1] }}",
    "{{ m.content.strip() }}",
    "{{ m.content[1:] }}",
    "{% if m.content | length > 3 %}L{% endif %}{{ m.content }}",
    "{{ m.content | upper }}",
    "{{ m.content | replace('a', 'b') }}",
    "{% for c in m.content %}{{ c }}{% endfor %}",
    "{% if m.content == 'yes' %}Y{% endif %}",
    "{{ m.content * 2 }}",
    "{{ m.content | tojson }}",
    "{% macro show(x) %}{{ x }}{% endmacro %}{{ show(m.content) }}",
    "{{ '{}'.format(m.content) }}",
    "{% set c = m.content %}{% if c.startswith('x') %}X{% endif %}",
    "{{ m.content | wordcount }}",
])
def test_templates_that_read_the_words_are_never_filled(body):
    sk, reference = skeletons("{% for m in messages %}" + body + "{% endfor %}")
    messages = chat("xyes</think>a", "b")
    assert sk.text(messages, None) is None
    assert sk.filled == 0


def test_static_analysis_names_the_line():
    sk, _ = skeletons("{% for m in messages %}\n{% if m.content == 'a' %}a{% endif %}{% endfor %}")
    assert sk.reason == "line 2: a comparison may read message data"
    sk, _ = skeletons("{% for m in messages %}{% for c in m.content %}{{ c }}{% endfor %}{% endfor %}")
    assert sk.reason == "line 1: a loop may walk over message data"
    assert skeletons(CHATML)[0].reason is None


def test_trim_needs_rows_without_surrounding_whitespace():
    sk, reference = skeletons(TRIMMED)
    assert sk.text(chat("a b", "c"), None) == reference(chat("a b", "c"))
    assert sk.text(chat(" a b\n", "c"), None) is None  # rendered by Jinja instead
    assert (sk.filled, sk.rendered) == (1, 1)


def test_rows_holding_a_placeholder_character_are_rendered():
    sk, _ = skeletons(CHATML)
    assert sk.text(chat(f"a{S.PH_OPEN}0{S.PH_CLOSE}", "b"), None) is None


def test_tool_calls_serialised_as_json_are_rendered():
    source = ("{% for m in messages %}{{ m.content }}{% for t in m.tool_calls %}{{ t.function.arguments | tojson }}"
              "{% endfor %}{% endfor %}")
    sk, reference = skeletons(source)
    call = [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"q": 'say "hi"'}}}]}]
    assert sk.text(call, None) is None
    plain = [{"role": "assistant", "content": "ok", "tool_calls": []}]
    assert sk.text(plain, None) == reference(plain)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(text, min_size=1, max_size=6), st.sampled_from([CHATML, TRIMMED]))
def test_property_a_filled_skeleton_equals_the_render(contents, source):
    sk, reference = skeletons(source)
    messages = chat(*contents)
    filled = sk.text(messages, None)
    if filled is not None:
        assert filled == reference(messages)


def test_anchors_place_positions_where_a_scan_of_the_bounds_would() -> None:
    """Anchors.of finds each position's piece by bisection; a position where a piece ends and a slot starts
    belongs to the piece, one inside a slot has no anchor. Checked against a plain left-to-right scan."""
    import random

    from dataprep.skeleton import Anchors, Filled, Skeleton

    def scan(bounds: list[int], positions: list[int]) -> list[tuple[int, int]] | None:
        at = []
        for pos in positions:
            k = 0
            while k + 1 < len(bounds) and bounds[k + 1] <= pos and not (k % 2 == 0 and bounds[k + 1] == pos):
                k += 1
            if k % 2:
                return None
            at.append((k // 2, pos - bounds[k]))
        return at

    rng = random.Random(0)
    for _ in range(3000):
        pieces = tuple(rng.choice(["", "a", "bc", "<x>"]) for _ in range(rng.randint(1, 6)))
        filled = Filled(None, Skeleton(pieces, tuple(range(len(pieces) - 1)), False),
                        [rng.choice(["d", "ee", "fff"]) for _ in range(len(pieces) - 1)])
        positions = [rng.randint(0, filled.bounds()[-1]) for _ in range(3)]
        anchors = Anchors.of(filled, positions)
        assert (anchors.at if anchors else None) == scan(filled.bounds(), positions)
