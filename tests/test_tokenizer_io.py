"""dataprep.tokenizer_io: the light loader gives what transformers' AutoTokenizer gives (on every tokenizer
here and on folders built from them), falls back where it must, copies files byte for byte, fails at once on a
missing folder, and keeps torch and transformers out of a data-prep process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from dataprep import tokenizer_io as tio
from dataprep.errors import UsageProblem
from dataprep.records import make_record
from dataprep.template import load_template
from tests.conftest import FIXTURES, REPO, SHARED_DATA

TINY = FIXTURES / "tokenizers"
FOLDERS = {"tiny-bpe": TINY / "tiny-bpe", "tiny-wordpiece": TINY / "tiny-wordpiece",
           **{n: SHARED_DATA / "tokenizers" / n for n in ("qwen2.5", "qwen3", "gpt2")}}
TEXTS = ["Hello, world!", "中文字符 😀 e\u0301", "<|im_start|>user\nhi<|im_end|>\n", "  spaced\tout\n\n", "[CLS] x [SEP]"]
ATTRIBUTES = ("special_tokens_map", "chat_template", "added_tokens_encoder", "vocab_size", "pad_token_id",
              "eos_token_id", "bos_token_id", "unk_token_id", "pad_token", "eos_token", "bos_token", "unk_token",
              "model_input_names", "all_special_tokens")


def folder(name: str) -> Path:
    path = FOLDERS[name]
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


@cache
def auto(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def assert_same_as_transformers(light, path: Path) -> None:
    ref = auto(str(path))
    for name in ATTRIBUTES:
        assert getattr(light, name) == getattr(ref, name), name
    assert len(light) == len(ref)
    assert {i: (t.content, t.special) for i, t in light.added_tokens_decoder.items()} == \
           {i: (t.content, t.special) for i, t in ref.added_tokens_decoder.items()}
    ids = [e.ids for e in light._tokenizer.encode_batch(TEXTS, add_special_tokens=False)]
    assert ids == ref(TEXTS, add_special_tokens=False)["input_ids"]
    for row in ids:
        assert light.decode(row) == ref.decode(row)
        assert light.decode(row, skip_special_tokens=True) == ref.decode(row, skip_special_tokens=True)
    if ref.chat_template:
        record = make_record(prompt="What is 2+2? 中文", response="4 😀", prefix="Be brief.")
        ours = load_template(None, light).render(record).text
        assert ours == load_template(None, ref).render(record).text


@pytest.mark.parametrize("name", ["tiny-bpe", "tiny-wordpiece", "qwen2.5", "qwen3"])
def test_light_loader_matches_auto_tokenizer(name):
    light = tio.open_tokenizer(str(folder(name)))
    assert isinstance(light, tio.LocalTokenizer) and light.loaded_by == "tokenizer.json"
    assert_same_as_transformers(light, folder(name))
    facts = tio.tokenizer_facts(light)
    ref_facts = tio.tokenizer_facts(auto(str(folder(name))))
    assert {k: v for k, v in facts.items() if k not in ("class", "loaded_by")} == \
           {k: v for k, v in ref_facts.items() if k not in ("class", "loaded_by")}


def test_a_folder_without_tokenizer_json_uses_transformers_converter():
    tok = tio.open_tokenizer(str(folder("gpt2")))
    assert tok.loaded_by == "transformers" and "no tokenizer.json" in tok.fallback_reason
    assert tok.is_fast and len(tok) == 50257


def copy_of(src: Path, dest: Path, config_edit=None, files: dict[str, str] | None = None) -> Path:
    shutil.copytree(src, dest)
    if config_edit is not None:
        config = json.loads((dest / tio.TOKENIZER_CONFIG).read_text(encoding="utf-8"))
        config_edit(config)
        (dest / tio.TOKENIZER_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    for name, text in (files or {}).items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text, encoding="utf-8")
    return dest


JINJA = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


def _list_templates(config):
    config["chat_template"] = [{"name": "default", "template": config["chat_template"]},
                               {"name": "tool_use", "template": JINJA}]


def _legacy_special_tokens(config):
    config.pop("added_tokens_decoder", None)
    config.pop("eos_token", None)


@pytest.mark.parametrize("case", [
    ("jinja-file", None, {tio.CHAT_TEMPLATE_JINJA: JINJA}),
    ("extra-templates", None, {tio.CHAT_TEMPLATE_JINJA: JINJA, f"{tio.CHAT_TEMPLATE_DIR}/tool_use.jinja": "x{{ 1 }}"}),
    ("list-in-config", _list_templates, None),
    ("special-tokens-map", _legacy_special_tokens, {tio.SPECIAL_TOKENS_MAP: json.dumps({"eos_token": "<|im_start|>"})}),
    ("model-specific-token", lambda c: c.update(image_token="<|im_start|>"), None),
    ("token-dicts", lambda c: c.update(eos_token={"content": "<|im_end|>", "__type": "AddedToken"}), None),
    ("input-names", lambda c: c.update(model_input_names=["input_ids"]), None),
    ("qwen-class", lambda c: c.update(tokenizer_class="Qwen2TokenizerFast"), None),
], ids=lambda c: c[0])
def test_config_layouts_match_auto_tokenizer(tmp_path, case):
    name, edit, files = case
    path = copy_of(TINY / "tiny-bpe", tmp_path / name, edit, files)
    light = tio.open_tokenizer(str(path))
    assert isinstance(light, tio.LocalTokenizer), light.fallback_reason
    assert_same_as_transformers(light, path)


@pytest.mark.parametrize("edit", [lambda c: c.update(tokenizer_class="BertTokenizerFast"),
                                  lambda c: c.update(tokenizer_class="SomeNewTokenizer")], ids=["bert", "unknown"])
def test_class_default_special_tokens_are_transformers_business(tmp_path, edit):
    # BERT's defaults ([CLS], [SEP], [MASK]) are not in this vocabulary: transformers adds them; an unknown class
    # may have defaults only transformers knows
    path = copy_of(TINY / "tiny-bpe", tmp_path / "t", edit)
    tok = tio.open_tokenizer(str(path))
    assert tok.loaded_by == "transformers"
    assert len(tok) == len(auto(str(path))) and tok.special_tokens_map == auto(str(path)).special_tokens_map


def test_special_tokens_the_vocabulary_lacks_go_to_transformers(tmp_path):
    path = copy_of(TINY / "tiny-bpe", tmp_path / "t", lambda c: c.update(eos_token="</never>"))
    tok = tio.open_tokenizer(str(path))
    assert tok.loaded_by == "transformers" and "'</never>'" in tok.fallback_reason
    assert len(tok) == len(auto(str(path))) == 1501


def test_split_special_tokens_config_goes_to_transformers(tmp_path):
    path = copy_of(TINY / "tiny-bpe", tmp_path / "t", lambda c: c.update(split_special_tokens=True))
    tok = tio.open_tokenizer(str(path))
    assert tok.loaded_by == "transformers" and "split_special_tokens" in tok.fallback_reason


def test_remote_code_tokenizer_is_refused_without_trust(tmp_path):
    path = copy_of(TINY / "tiny-bpe", tmp_path / "t",
                   lambda c: c.update(auto_map={"AutoTokenizer": ["evil.Tok", "evil.TokFast"]}))
    with pytest.raises(UsageProblem, match="auto_map") as err:
        tio.open_tokenizer(str(path))
    assert err.value.exit_code == 2 and "--trust-remote-code" in err.value.hint
    # an auto_map for other classes (a model) says nothing about the tokenizer
    other = copy_of(TINY / "tiny-bpe", tmp_path / "m", lambda c: c.update(auto_map={"AutoModel": "m.Model"}))
    assert isinstance(tio.open_tokenizer(str(other)), tio.LocalTokenizer)


def test_save_copies_the_files_byte_for_byte_and_reloads(tmp_path):
    src = copy_of(TINY / "tiny-bpe", tmp_path / "src", files={tio.CHAT_TEMPLATE_JINJA: JINJA})
    (src / "model.safetensors").write_bytes(b"weights are not tokenizer files")
    light = tio.open_tokenizer(str(src))
    out = tmp_path / "out"
    tio.save_tokenizer(light, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([tio.TOKENIZER_JSON, tio.TOKENIZER_CONFIG,
                                                            tio.CHAT_TEMPLATE_JINJA])
    for p in out.iterdir():
        assert p.read_bytes() == (src / p.name).read_bytes()
    again = tio.open_tokenizer(str(out))
    assert again.get_vocab() == light.get_vocab() and again.chat_template == JINJA
    assert auto(str(out)).chat_template == JINJA


# -- missing folders and hub ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("loader", [tio.open_tokenizer, tio.load_tokenizer])
def test_missing_folder_fails_at_once_with_one_line(tmp_path, loader):
    for spec in (str(tmp_path / "nope"), "./nope", "../nope/deeper", "Qwen/Qwen3-8B"):
        start = time.perf_counter()
        with pytest.raises(UsageProblem) as err:
            loader(spec)
        assert time.perf_counter() - start < 1.0
        message = err.value.format()
        assert "no such tokenizer folder" in message and "\n" not in message and err.value.exit_code == 2
    with pytest.raises(UsageProblem) as err:
        loader("Qwen/Qwen3-8B")
    assert "HF_HUB_OFFLINE" in err.value.hint  # offline in tests (conftest): a hub id is not fetched
    a_file = tmp_path / "tokenizer.json"
    a_file.write_text("{}")
    with pytest.raises(UsageProblem, match="not a folder"):
        loader(str(a_file))


def test_hub_ids_go_to_the_hub_only_when_the_network_is_allowed(monkeypatch):
    assert tio.looks_like_hub_id("Qwen/Qwen3-8B") and tio.looks_like_hub_id("org/name.v2")
    for spec in ("./Qwen/Qwen3-8B", "a/b/c", "../x/y", "nope", "/abs/path", "org/..", "a--b/c", "org/"):
        assert not tio.looks_like_hub_id(spec), spec
    assert not tio.network_allowed()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    assert tio.network_allowed()
    assert tio.resolve_spec("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"  # resolved, not fetched
    with pytest.raises(UsageProblem, match="no such tokenizer folder"):
        tio.resolve_spec("./nope")


# -- start-up without torch --------------------------------------------------------------------------------------

STARTUP = """
import sys, time
start = time.perf_counter()
from dataprep.tokenizer_io import open_tokenizer
from dataprep.template import load_template
from dataprep.encoders import AutoEncoder
from dataprep.records import make_record
import dataprep.tokenize, dataprep.cli
tok = open_tokenizer(sys.argv[1])
text = load_template(None, tok).render(make_record(prompt="hi 中文", response="ok")).text
out = AutoEncoder(tok.backend).encode_with_starts([text])
assert len(out.ids) > 0, out
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("LOADED", type(tok).__name__, "HEAVY", heavy, "SECONDS", round(time.perf_counter() - start, 2))
"""


def test_loading_and_encoding_import_neither_torch_nor_transformers():
    path = FOLDERS["qwen2.5"] if FOLDERS["qwen2.5"].is_dir() else FOLDERS["tiny-bpe"]
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_NO_ADVISORY_WARNINGS"}
    done = subprocess.run([sys.executable, "-c", STARTUP, str(path)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED LocalTokenizer HEAVY []" in done.stdout
    assert "PyTorch" not in done.stderr


NO_TORCH = """
import sys
sys.modules["torch"] = None  # as on a data-prep-only install: import torch fails, find_spec finds nothing
from dataprep.tokenizer_io import open_tokenizer
tok = open_tokenizer(sys.argv[1])
print("LOADED", tok.loaded_by, len(tok))
"""


def test_transformers_fallback_prints_no_pytorch_advice_without_torch():
    path = FOLDERS["gpt2"] if FOLDERS["gpt2"].is_dir() else None
    if path is None:
        pytest.skip("needs a folder without tokenizer.json")
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_NO_ADVISORY_WARNINGS"}
    done = subprocess.run([sys.executable, "-c", NO_TORCH, str(path)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED transformers 50257" in done.stdout
    assert "PyTorch" not in done.stderr, done.stderr


@pytest.mark.slow
def test_class_tables_match_transformers():
    import inspect

    import transformers
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    names = {n for v in TOKENIZER_MAPPING_NAMES.values() for n in (v if isinstance(v, (list, tuple)) else [v]) if n}
    checked = 0
    for name in sorted(names):
        try:
            cls = getattr(transformers, name)
            expected = tuple(cls.model_input_names)
        except Exception:  # classes that need sentencepiece or other absent libraries
            continue
        assert tio.CLASS_INPUT_NAMES.get(name, tio.DEFAULT_INPUT_NAMES) == expected, name
        if name in tio.CLASS_SPECIAL_DEFAULTS:
            params = inspect.signature(cls.__init__).parameters
            defaults = {k: str(params[k].default) for k in tio.NAMED_SPECIAL_TOKENS
                        if k in params and params[k].default not in (None, inspect.Parameter.empty)}
            assert tio.CLASS_SPECIAL_DEFAULTS[name] == defaults, name
        checked += 1
    assert checked > 50
    assert set(tio.CLASS_SPECIAL_DEFAULTS) <= names
