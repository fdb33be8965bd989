"""Loading a tokenizer for tokenize/inspect, and fingerprinting it by the bytes of its files.

A tokenizer is identified by the sha256 of every file it was loaded from, not by its path or name: the same
files under another folder are the same tokenizer, and one edited byte in ``tokenizer_config.json`` (a new chat
template) is a different one. Only the Rust ("fast") backend is accepted, because tokenize relies on its
batched, GIL-free ``encode_batch`` and on character offsets.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from dataprep.errors import DataprepError, InputError

HASH_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> Any:
    """``AutoTokenizer.from_pretrained(spec)`` with one-line errors; a slow (Python) tokenizer is refused.

    A spec that is written as a path (``./tok``, ``/abs/tok``, ``a/b/c``) and does not exist fails at once with
    exit status 2, instead of being tried as a hub id.
    """
    from dataprep.paths import looks_like_path

    if looks_like_path(spec) and not Path(spec).exists():
        raise InputError(spec, "no such tokenizer folder")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None if Path(spec).is_dir() else "pass a local tokenizer folder; hub ids work only online"
        raise DataprepError(f"cannot load tokenizer {spec!r}: {first}", hint=hint) from None
    if not getattr(tokenizer, "is_fast", False) or getattr(tokenizer, "_tokenizer", None) is None:
        raise DataprepError(
            f"tokenizer {spec!r} has no fast (Rust) backend",
            hint="tokenize needs a tokenizer.json or files the fast converter understands",
        )
    return tokenizer


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
        "class": type(tokenizer).__name__,
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
