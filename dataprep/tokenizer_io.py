"""Loading a tokenizer for tokenize/inspect/render, and fingerprinting it by the bytes of its files.

Two loaders. :func:`open_tokenizer` is the data-prep one: for a folder with a ``tokenizer.json`` it reads the
files itself (``tokenizers.Tokenizer.from_file``, ``tokenizer_config.json``, ``special_tokens_map.json``,
``chat_template.jinja`` and ``additional_chat_templates/``) into a :class:`LocalTokenizer`, so a run never
imports transformers, and through it torch, which costs seconds per process and prints "PyTorch was not found"
on a data-prep-only install. It falls back to transformers' ``AutoTokenizer`` (whose converter builds the Rust
backend) where reading the files would not give what transformers gives: a folder with no ``tokenizer.json``
(GPT-2's ``vocab.json``/``merges.txt``, a SentencePiece ``.model``), named or listed special tokens the
vocabulary lacks (transformers adds them), versioned ``fast_tokenizer_files``, and an ``auto_map`` tokenizer
class, which is refused unless ``trust_remote_code``. :func:`load_tokenizer` always returns transformers'
tokenizer (the trainer, and tests that call ``apply_chat_template``), with the same up-front checks.

A missing path fails at once, one line, exit 2: no hub retries. A name that looks like a hub id (``org/name``)
goes to transformers only when the network is allowed (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` unset).

A tokenizer is identified by the sha256 of every file in its folder, not by its path or name: the same files
under another folder are the same tokenizer, and one edited byte in ``tokenizer_config.json`` (a new chat
template) is a different one. Only the Rust ("fast") backend is accepted, because tokenize relies on its
batched, GIL-free encoder.

Known limit: for some classes (Qwen2Tokenizer, LlamaTokenizer, ...) transformers 5 rebuilds the Rust pipeline
from the vocabulary with the class's own normalizer and pre-tokenizer instead of using ``tokenizer.json``'s;
this loader uses ``tokenizer.json`` as shipped. The tests compare ids with ``AutoTokenizer`` on every
tokenizer available here, and tokenize's start-up check compares encoders, not loaders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError, UsageProblem

HASH_CHUNK = 1 << 20
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CHAT_TEMPLATE_JINJA = "chat_template.jinja"
CHAT_TEMPLATE_JSON = "chat_template.json"  # written by processors; AutoTokenizer itself does not read it
CHAT_TEMPLATE_DIR = "additional_chat_templates"
# what a tokenizer folder can hold (copied to OUTDIR/tokenizer so AutoTokenizer reloads the same tokenizer)
TOKENIZER_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, "added_tokens.json", CHAT_TEMPLATE_JINJA,
                   CHAT_TEMPLATE_JSON, "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "tekken.json")
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_INPUT_NAMES = ("input_ids", "attention_mask")
# transformers 5 tokenizer classes whose model_input_names differ from the default (checked by a test)
CLASS_INPUT_NAMES = {
    "BertTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
    "CanineTokenizer": ("input_ids", "attention_mask", "token_type_ids"),
    "DPRQuestionEncoderTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
    "DebertaTokenizer": ("input_ids", "attention_mask", "token_type_ids"),
    "DebertaV2Tokenizer": ("input_ids", "attention_mask", "token_type_ids"),
    "FNetTokenizer": ("input_ids", "token_type_ids"),
    "LayoutLMv2Tokenizer": ("input_ids", "attention_mask", "token_type_ids"),
    "LayoutLMv3Tokenizer": ("input_ids", "attention_mask", "bbox"),
    "LxmertTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
    "MarkupLMTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
    "MobileBertTokenizer": ("input_ids", "token_type_ids", "attention_mask"),
    "TapasTokenizer": ("input_ids", "attention_mask", "token_type_ids"),
}
GENERIC_CLASSES = ("", "PreTrainedTokenizerFast", "TokenizersBackend")
# The named special tokens transformers 5 classes give a config that does not name them (their __init__
# defaults; checked by a test). A config of a class not listed here that leaves a named token out is loaded by
# transformers, since only it knows the default.
_BERT_DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}
_ROBERTA_DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                     "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}
_QWEN_DEFAULTS = {"eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
_GPT2_DEFAULTS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
CLASS_SPECIAL_DEFAULTS: dict[str, dict[str, str]] = {
    "BertTokenizer": _BERT_DEFAULTS,
    "RobertaTokenizer": _ROBERTA_DEFAULTS,
    "XLMRobertaTokenizer": _ROBERTA_DEFAULTS,
    "Qwen2Tokenizer": _QWEN_DEFAULTS,
    "Qwen3_5Tokenizer": _QWEN_DEFAULTS,
    "GPT2Tokenizer": _GPT2_DEFAULTS,
    "LlamaTokenizer": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "CodeLlamaTokenizer": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "GemmaTokenizer": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
                       "mask_token": "<mask>"},
    "GPTNeoXTokenizer": {**_GPT2_DEFAULTS, "pad_token": "<|padding|>"},
    "T5Tokenizer": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "CohereTokenizer": {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>", "unk_token": "<UNK>",
                        "sep_token": "<SEP>", "pad_token": "<PAD>", "cls_token": "<CLS>", "mask_token": "<MASK_TOKEN>"},
    "DebertaV2Tokenizer": {"bos_token": "[CLS]", "eos_token": "[SEP]", **_BERT_DEFAULTS},
}
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUTHY = {"1", "on", "yes", "true"}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- where the tokenizer comes from -----------------------------------------------------------------------------


def network_allowed() -> bool:
    """Hub downloads are allowed unless the user said offline (the hub library's own variables)."""
    return not any(os.environ.get(v, "").strip().lower() in _TRUTHY for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(spec: str) -> bool:
    """``org/name`` (one slash, hub characters, no ``..``): the only non-folder form sent to the hub."""
    return bool(HUB_ID.match(spec)) and ".." not in spec and "--" not in spec


def resolve_spec(spec: str) -> Path | str:
    """A local folder (``Path``), or a hub id to hand to transformers (``str``); anything else fails at once."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UsageProblem(f"cannot load tokenizer {spec!r}: not a folder",
                           hint="pass the folder that holds tokenizer.json or the vocabulary files")
    if looks_like_hub_id(spec):
        if network_allowed():
            return spec
        raise UsageProblem(f"{spec}: no such tokenizer folder",
                           hint="hub ids (org/name) are fetched only when HF_HUB_OFFLINE is unset")
    raise UsageProblem(f"{spec}: no such tokenizer folder",
                       hint="pass the folder that holds tokenizer.json or the vocabulary files")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataprepError(f"cannot load tokenizer: {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DataprepError(f"cannot load tokenizer: {path}: not a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or a serialized AddedToken."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _auto_tokenizer_map(config: dict[str, Any]) -> bool:
    auto_map = config.get("auto_map")
    if isinstance(auto_map, (list, tuple)):
        return True  # the old format: the whole map is the AutoTokenizer entry
    return isinstance(auto_map, dict) and "AutoTokenizer" in auto_map


# -- the light tokenizer ----------------------------------------------------------------------------------------


class LocalTokenizer:
    """A tokenizer folder read without transformers: what tokenize, render, inspect and the manifest use.

    Attributes mirror transformers' names where they exist (``special_tokens_map``, ``chat_template``,
    ``added_tokens_encoder``, ``len()``, ``vocab_size``, ``*_token``/``*_token_id``, ``model_input_names``,
    ``decode``, ``save_pretrained``), so code written against an ``AutoTokenizer`` works unchanged.
    ``backend`` is the Rust ``tokenizers.Tokenizer`` (``_tokenizer`` too, transformers' name for it).
    """

    is_fast = True

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.path = folder
        self.name_or_path = str(folder)
        config_path = folder / TOKENIZER_CONFIG
        self.config = _read_json(config_path) if config_path.is_file() else {}
        self.files = [p for p in (folder / TOKENIZER_JSON, config_path) if p.is_file()]
        try:
            self.backend = Tokenizer.from_file(str(folder / TOKENIZER_JSON))
        except Exception as exc:  # the Rust loader raises a plain Exception with its parse error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataprepError(f"cannot load tokenizer {str(folder)!r}: {TOKENIZER_JSON}: {first}") from None
        self.tokenizer_class = str(self.config.get("tokenizer_class") or "")
        base_class = self.tokenizer_class.removesuffix("Fast")
        self.class_defaults = {} if self.tokenizer_class in GENERIC_CLASSES else CLASS_SPECIAL_DEFAULTS.get(base_class)
        self.chat_template, self.template_source = self._chat_template(folder)
        self._named, self.extra_special_tokens = self._special_tokens(folder)
        self.added_tokens_decoder = dict(sorted(self.backend.get_added_tokens_decoder().items()))
        self.added_tokens_encoder = {tok.content: i for i, tok in self.added_tokens_decoder.items()}
        names = self.config.get("model_input_names")
        self.model_input_names = list(names) if isinstance(names, list) else list(
            CLASS_INPUT_NAMES.get(self.tokenizer_class.removesuffix("Fast"), DEFAULT_INPUT_NAMES))
        self.clean_up_tokenization_spaces = bool(self.config.get("clean_up_tokenization_spaces", False))

    def _chat_template(self, folder: Path) -> tuple[str | dict[str, str] | None, str | None]:
        """As transformers resolves it: template files win over the config; several make a dict by name."""
        templates: dict[str, str] = {}
        if (folder / CHAT_TEMPLATE_JINJA).is_file():
            templates["default"] = (folder / CHAT_TEMPLATE_JINJA).read_text(encoding="utf-8")
            self.files.append(folder / CHAT_TEMPLATE_JINJA)
        extra = folder / CHAT_TEMPLATE_DIR
        if extra.is_dir():
            for path in sorted(extra.glob("*.jinja")):
                templates[path.name.removesuffix(".jinja")] = path.read_text(encoding="utf-8")
                self.files.append(path)
        if len(templates) == 1 and "default" in templates:
            return templates["default"], CHAT_TEMPLATE_JINJA
        if templates:
            return templates, CHAT_TEMPLATE_DIR
        value = self.config.get("chat_template")
        if isinstance(value, list):  # [{"name": ..., "template": ...}, ...]
            value = {t["name"]: t["template"] for t in value if isinstance(t, dict) and "name" in t}
        if value:
            return value, TOKENIZER_CONFIG
        legacy = folder / CHAT_TEMPLATE_JSON
        if legacy.is_file():  # a processor's file: used only when nothing else gives the tokenizer a template
            value = _read_json(legacy).get("chat_template")
            if isinstance(value, str) and value:
                self.files.append(legacy)
                return value, CHAT_TEMPLATE_JSON
        return None, None

    def _special_tokens(self, folder: Path) -> tuple[dict[str, str], list[str]]:
        """Named (and model-specific ``*_token``) special tokens, and the extra ones, as transformers 5 reads
        them: the config, and ``special_tokens_map.json`` only for a config without ``added_tokens_decoder``."""
        config = dict(self.config)
        stm = folder / SPECIAL_TOKENS_MAP
        if "added_tokens_decoder" not in config and stm.is_file():
            self.files.append(stm)
            for key, value in _read_json(stm).items():
                if key in ("extra_special_tokens", "additional_special_tokens") and isinstance(value, list):
                    merged = list(config.get("extra_special_tokens") or config.get("additional_special_tokens") or [])
                    config["extra_special_tokens"] = merged + [v for v in value if v not in merged]
                else:
                    config[key] = value
        named: dict[str, str] = {}
        for key in NAMED_SPECIAL_TOKENS:
            text = _token_text(config.get(key)) if key in config else (self.class_defaults or {}).get(key)
            if text is not None:
                named[key] = text
        for key, value in config.items():  # model-specific tokens: other "*_token" keys with a string value
            if key.endswith("_token") and key not in NAMED_SPECIAL_TOKENS and isinstance(value, str):
                named[key] = value
        extra = config.get("extra_special_tokens", config.get("additional_special_tokens")) or []
        if isinstance(extra, dict):
            named.update({k: t for k, v in extra.items() if (t := _token_text(v)) is not None})
            extra = []
        return named, [t for v in extra if (t := _token_text(v)) is not None]

    def needs_transformers(self) -> str | None:
        """Why transformers would load this folder differently (then :func:`open_tokenizer` uses it), or None."""
        if "fast_tokenizer_files" in self.config:
            return "the config names versioned fast_tokenizer_files"
        if self.config.get("split_special_tokens"):
            return "the config sets split_special_tokens (transformers then encodes special tokens as text)"
        if self.class_defaults is None and any(key not in self.config for key in NAMED_SPECIAL_TOKENS):
            return f"{self.tokenizer_class} may give special tokens the config leaves out"
        for token in [*self._named.values(), *self.extra_special_tokens]:
            if self.backend.token_to_id(token) is None:
                return f"the special token {token!r} is not in the vocabulary (transformers adds it)"
        declared = self.config.get("added_tokens_decoder") or {}
        for index, token in declared.items():
            content = _token_text(token)
            if content is None or self.backend.token_to_id(content) != int(index):
                return f"tokenizer_config.json declares the added token {content!r} at id {index}, tokenizer.json does not"
        return None

    # -- transformers-compatible surface ----------------------------------------------------------------------

    @property
    def _tokenizer(self) -> Any:
        return self.backend

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return dict(self._named)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __getattr__(self, name: str) -> Any:
        # bos_token, eos_token_id, image_token, ... for every named special token; None when unset
        base = name.removesuffix("_id")
        if base.endswith("_token") and (base in NAMED_SPECIAL_TOKENS or base in self.__dict__.get("_named", {})):
            token = self._named.get(base)
            if name.endswith("_id"):
                return None if token is None else self.backend.token_to_id(token)
            return token
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys([*self._named.values(), *self.extra_special_tokens]))

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | None | list[str | None]:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def save_pretrained(self, directory: str | Path) -> list[str]:
        """Copy the tokenizer's files as they are (byte-identical; AutoTokenizer reloads the same tokenizer)."""
        return [str(p) for p in copy_tokenizer_files(self.path, directory)]

    def __repr__(self) -> str:
        return f"LocalTokenizer({self.name_or_path!r}, len={len(self)})"


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization`` (applied by its decode when the config asks for it)."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


def copy_tokenizer_files(folder: str | Path, directory: str | Path) -> list[Path]:
    """Copy the tokenizer files of ``folder`` (not weights or model config) into ``directory``."""
    folder, directory = Path(folder), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            copied.append(Path(shutil.copy2(folder / name, directory / name)))
    if (folder / CHAT_TEMPLATE_DIR).is_dir():
        for path in sorted((folder / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            (directory / CHAT_TEMPLATE_DIR).mkdir(exist_ok=True)
            copied.append(Path(shutil.copy2(path, directory / CHAT_TEMPLATE_DIR / path.name)))
    return copied


# -- the loaders ------------------------------------------------------------------------------------------------


def open_tokenizer(spec: str, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer for data prep: a :class:`LocalTokenizer` when the folder allows it, else transformers'.

    ``loaded_by`` on the result says which (``"tokenizer.json"`` or ``"transformers"``), and
    ``fallback_reason`` why transformers was needed.
    """
    where = resolve_spec(spec)
    reason = "a hub id"
    if isinstance(where, Path):
        config_path = where / TOKENIZER_CONFIG
        config = _read_json(config_path) if config_path.is_file() else {}
        if _auto_tokenizer_map(config):
            if not trust_remote_code:
                raise UsageProblem(f"cannot load tokenizer {spec!r}: its tokenizer class is code shipped with it "
                                   "(auto_map)", hint="pass --trust-remote-code if you trust that code")
            reason = "its tokenizer class is code shipped with it (auto_map)"
        elif not (where / TOKENIZER_JSON).is_file():
            reason = f"no {TOKENIZER_JSON}: transformers' converter builds the Rust tokenizer from the vocabulary"
        else:
            local = LocalTokenizer(where)
            why = local.needs_transformers()
            if why is None:
                local.loaded_by = "tokenizer.json"
                local.fallback_reason = None
                return local
            reason = why
    tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
    tokenizer.loaded_by = "transformers"
    tokenizer.fallback_reason = reason
    return tokenizer


def _import_auto_tokenizer() -> Any:
    """transformers' AutoTokenizer, without the "PyTorch was not found" advice on a data-prep-only install."""
    from importlib.util import find_spec

    if "transformers" not in sys.modules and find_spec("torch") is None:
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> Any:
    """``AutoTokenizer.from_pretrained(spec)`` with one-line errors; a slow (Python) tokenizer is refused.

    A missing folder fails at once (no hub retries); see :func:`resolve_spec`.
    """
    where = resolve_spec(spec)
    auto_tokenizer = _import_auto_tokenizer()
    try:
        tokenizer = auto_tokenizer.from_pretrained(str(where), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None if isinstance(where, Path) else "hub ids work only online"
        raise DataprepError(f"cannot load tokenizer {spec!r}: {first}", hint=hint) from None
    if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "_tokenizer", None) is None:
        raise DataprepError(
            f"tokenizer {spec!r} has no fast (Rust) backend",
            hint="tokenize needs a tokenizer.json or files the fast converter understands",
        )
    return tokenizer


def save_tokenizer(tokenizer: Any, directory: str | Path) -> None:
    """Write the tokenizer into ``directory`` (OUTDIR/tokenizer): a copy of its files when it was read from a
    folder (byte-identical, nothing re-serialized), else transformers' ``save_pretrained``."""
    if isinstance(tokenizer, LocalTokenizer):
        copy_tokenizer_files(tokenizer.path, directory)
    else:
        tokenizer.save_pretrained(str(directory))


def tokenizer_files_sha256(spec: str, tokenizer: Any) -> dict[str, str]:
    """sha256 per file of a local tokenizer folder; for a hub id, of the files ``save_pretrained`` writes."""
    folder = Path(spec)
    if folder.is_dir():
        return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    with tempfile.TemporaryDirectory(prefix="dataprep-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: sha256_file(p) for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def tokenizer_facts(tokenizer: Any) -> dict[str, Any]:
    """What a trainer needs to size embeddings and pad: ``len`` counts added tokens, ``vocab_size`` does not."""
    return {
        "class": tokenizer.tokenizer_class if isinstance(tokenizer, LocalTokenizer) else type(tokenizer).__name__,
        "loaded_by": getattr(tokenizer, "loaded_by", "transformers"),
        "len": len(tokenizer),
        "vocab_size": tokenizer.vocab_size,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token": tokenizer.pad_token,
        "eos_token": tokenizer.eos_token,
        "bos_token": tokenizer.bos_token,
        "model_input_names": list(tokenizer.model_input_names),
    }
