#!/usr/bin/env python
"""Train the project's two tiny tokenizers from fixtures/tokenizers/corpus.txt, deterministically.

* ``tiny-bpe/``: byte-level BPE (any text, Chinese and emoji included, falls back to bytes) with the ChatML
  control tokens and a chat template written for this project: ChatML turns, tools in the system turn and
  ``<tool_call>`` blocks as Qwen2.5 writes them, no default system prompt.
* ``tiny-wordpiece/``: BERT-style lowercase WordPiece with ``[CLS] A [SEP] B [SEP]`` pairs and token_type_ids,
  for the sentence-pair classification task.

Tests and examples need real tokenizer folders without a network: these load with
``AutoTokenizer.from_pretrained(folder)`` as fast tokenizers, are small enough to commit, and come out
byte-identical on every run (the test suite re-runs this script into a temporary folder and compares).

Usage: python bin/make_tokenizers.py [--out DIR]   (default: fixtures/tokenizers)
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "tokenizers" / "corpus.txt"
BPE_VOCAB = 1500
WORDPIECE_VOCAB = 1200
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

CHATML_TOOLS_TEMPLATE = """\
{%- set system = messages[0].content if messages and messages[0].role == "system" else none %}
{%- if tools %}
    {{- "<|im_start|>system\\n" }}
    {%- if system is not none %}
        {{- system ~ "\\n\\n" }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call these functions. Their signatures, one per line, are within <tools></tools>:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" ~ (tool | tojson) }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nTo call one, write <tool_call></tool_call> holding {\\"name\\": ..., \\"arguments\\": ...}.<|im_end|>\\n" }}
{%- elif system is not none %}
    {{- "<|im_start|>system\\n" ~ system ~ "<|im_end|>\\n" }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "system" and loop.first %}
    {%- elif message.role == "assistant" and message.tool_calls %}
        {{- "<|im_start|>assistant" }}
        {%- if message.content %}
            {{- "\\n" ~ message.content }}
        {%- endif %}
        {%- for call in message.tool_calls %}
            {%- set call = call.function if call.function is defined else call %}
            {{- "\\n<tool_call>\\n{\\"name\\": \\"" ~ call.name ~ "\\", \\"arguments\\": " ~ (call.arguments | tojson) ~ "}\\n</tool_call>" }}
        {%- endfor %}
        {{- "<|im_end|>\\n" }}
    {%- elif message.role == "tool" %}
        {{- "<|im_start|>tool\\n<tool_response>\\n" ~ message.content ~ "\\n</tool_response><|im_end|>\\n" }}
    {%- else %}
        {{- "<|im_start|>" ~ message.role ~ "\\n" ~ message.content ~ "<|im_end|>\\n" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- "<|im_start|>assistant\\n" }}
{%- endif %}
"""


def corpus_lines() -> list[str]:
    return CORPUS.read_text(encoding="utf-8").splitlines()


def pair_sentences() -> list[str]:
    """The sentences of fixtures/data/pairs.tsv: the WordPiece tokenizer exists for that classification data,
    and one that spells its words letter by letter leaves a tiny model nothing to learn from."""
    rows = (ROOT / "fixtures" / "data" / "pairs.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [text for row in rows for text in row.split("\t")[3:5]]


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def make_bpe(out: Path) -> None:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, min_frequency=2, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus_lines(), trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"), pretty=True)
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "chat_template": CHATML_TOOLS_TEMPLATE,
    })


def wordpiece_vocab(tokenizer: Tokenizer) -> dict[str, int]:
    """Special tokens, every character seen (alone and as a ``##`` continuation), then the most frequent words.

    ``WordPieceTrainer`` breaks ties between equally frequent merges in a hash map's order, which changes from
    one process to the next; counting whole words with a stable sort gives the same vocabulary on every run.
    """
    counts: Counter[str] = Counter()
    for line in corpus_lines() + pair_sentences():
        normalized = tokenizer.normalizer.normalize_str(line)
        counts.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    chars = sorted({c for word in counts for c in word})
    vocab = [*WORDPIECE_SPECIALS, *chars, *(f"##{c}" for c in chars)]
    room = WORDPIECE_VOCAB - len(vocab)
    ranked = sorted((w for w, n in counts.items() if n >= 2 and len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += ranked[:room]
    return {token: i for i, token in enumerate(vocab)}


def make_wordpiece(out: Path) -> None:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.model = models.WordPiece(wordpiece_vocab(tokenizer), unk_token="[UNK]")
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(WORDPIECE_SPECIALS))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"), pretty=True)
    write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": True,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    })


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "fixtures" / "tokenizers")
    args = parser.parse_args(argv)
    make_bpe(args.out / "tiny-bpe")
    make_wordpiece(args.out / "tiny-wordpiece")


if __name__ == "__main__":
    main()
