"""bin/make_tokenizers.py: reproducible, and the committed fixture tokenizers load and behave as described."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import FIXTURES, REPO

COMMITTED = FIXTURES / "tokenizers"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_tokenizers", REPO / "bin" / "make_tokenizers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def auto(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(COMMITTED / name))


def test_script_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    load_script().main(["--out", str(tmp_path)])
    for name in ("tiny-bpe", "tiny-wordpiece"):
        made = sorted(p.name for p in (tmp_path / name).iterdir())
        assert made == sorted(p.name for p in (COMMITTED / name).iterdir()) == ["tokenizer.json",
                                                                               "tokenizer_config.json"]
        for file in made:
            assert (tmp_path / name / file).read_bytes() == (COMMITTED / name / file).read_bytes(), f"{name}/{file}"


def test_corpus_is_small_and_mixed() -> None:
    text = (COMMITTED / "corpus.txt").read_text(encoding="utf-8")
    assert 50_000 < len(text.encode("utf-8")) < 400_000
    assert "### Instruction:" in text and "```python" in text and "\t" in text
    assert any("\u4e00" <= c <= "\u9fff" for c in text)


def test_tiny_bpe_is_a_fast_byte_level_tokenizer() -> None:
    tokenizer = auto("tiny-bpe")
    assert tokenizer.is_fast
    assert 1000 <= len(tokenizer) <= 2000
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    for text in ["Hello, world!", "你好，世界 🚀🙂", "def f(x):\n\treturn x ** 2  # ünïcödé", "ℤ 𝔸 \u200b é"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids
    special = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")]
    assert tokenizer("<|im_start|>x<|im_end|>", add_special_tokens=False)["input_ids"][0::2] == special[1:]
    assert tokenizer("plain", add_special_tokens=True)["input_ids"] == tokenizer("plain", add_special_tokens=False)[
        "input_ids"]


def test_tiny_bpe_chat_template_is_chatml_with_tools() -> None:
    tokenizer = auto("tiny-bpe")
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"type": "function",
                                              "function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "-3"},
        {"role": "assistant", "content": "Cold."},
    ]
    text = tokenizer.apply_chat_template(messages, tools=[{"name": "weather", "parameters": {}}], tokenize=False)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert '\n<tools>\n{"name": "weather", "parameters": {}}\n</tools>' in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n'
            "</tool_call><|im_end|>\n") in text
    assert "<|im_start|>tool\n<tool_response>\n-3\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\nCold.<|im_end|>\n")
    plain = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                          add_generation_prompt=True)
    assert plain == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_wordpiece_is_bert_style_with_pairs() -> None:
    tokenizer = auto("tiny-wordpiece")
    assert tokenizer.is_fast
    encoded = tokenizer("The Model EXPLAINS.", "A student checks 数据!")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    assert tokens[1:4] == ["the", "model", "explains"]
    first_sep = tokens.index("[SEP]")
    assert encoded["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.mask_token) == ("[PAD]", "[UNK]", "[MASK]")
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [
        0, 1, 2, 3, 4]
    assert tokenizer.convert_ids_to_tokens(tokenizer("zebra", add_special_tokens=False)["input_ids"])[0] == "z"


@pytest.mark.parametrize("name", ["tiny-bpe", "tiny-wordpiece"])
def test_configs_are_stable_json(name: str) -> None:
    config = json.loads((COMMITTED / name / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert ("chat_template" in config) == (name == "tiny-bpe")
