"""dataprep stats: numbers checked against the data they describe, for records, tokenized and packed folders;
leakage between splits; the text, JSON, PNG and HTML outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, invoke

from dataprep.io import dumps
from dataprep.records import make_record
from dataprep.stats import compute_stats
from dataprep.stats.page import render_html
from dataprep.stats.plots import figures, write_pngs
from dataprep.stats.report import render_text

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
SYSTEM = "You are a careful assistant who answers questions about the natural world in plain words."
WORDS = ["river", "stone", "cloud", "seven", "paper", "quiet", "north", "lamp", "green", "salt", "wind", "field", "copper", "maple", "orbit", "signal", "harbor", "winter", "candle", "meadow"]


def sentence(seed: int, n: int = 30) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def split_records(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Train rows with a shared system prompt; validation rows: one near copy, one sharing 13 words, the rest
    new; one exact duplicate inside train."""
    train = [make_record(prefix=SYSTEM, prompt=f"Question {i}: {sentence(i, 12)}?", response=sentence(100 + i),
                         id=f"t{i}") for i in range(30)]
    train[3]["history"] = [["Hi", "Hello!"], ["And?", "Yes."]]
    train.append(dict(train[0], id="t0-again"))
    words = train[5]["response"].split()
    near = dict(train[5], id="v-near", response=" ".join([*words[:3], "brook", *words[4:]]))
    shared = make_record(prefix=SYSTEM, prompt="Something else entirely", id="v-ngram",
                         response="Unrelated start. " + " ".join(train[7]["response"].split()[:13]) + " and more.")
    fresh = [make_record(prefix=SYSTEM, prompt=f"Fresh {i}: {sentence(500 + i, 12)}", response=sentence(600 + i),
                         id=f"v{i}") for i in range(4)]
    records = [dict(r, split="train") for r in train] + [dict(r, split="validation") for r in [near, shared, *fresh]]
    return write_jsonl(tmp_path / "splits.jsonl", records), records


def test_records_numbers_match_the_data(split_records):
    path, records = split_records
    report = compute_stats(str(path))
    assert report["input"]["kind"] == "records"
    assert report["splits"] == {"train": {"rows": 31, "share": round(31 / 37, 4)},
                                "validation": {"rows": 6, "share": round(6 / 37, 4)}}
    train = [r for r in records if r["split"] == "train"]
    prompt = [len(r["prefix"]) + len(r["prompt"]) + sum(len(p[0]) for p in r["history"]) for r in train]
    response = [len(r["response"]) + sum(len(p[1]) for p in r["history"]) for r in train]
    chars = report["length"]["chars"]
    assert chars["prompt"]["splits"]["train"]["total"] == sum(prompt)
    assert chars["response"]["splits"]["train"]["max"] == max(response)
    assert chars["whole"]["splits"]["train"]["p50"] == int(np.percentile(np.add(prompt, response), 50,
                                                                         method="lower"))
    assert sum(chars["whole"]["splits"]["train"]["hist"]) == 31
    assert report["turns"]["train"]["counts"] == {"1": 30, "3": 1}
    assert report["supervised"]["train"]["share"] == round(sum(response) / (sum(prompt) + sum(response)), 4)
    assert report["duplicates"] == {"within": {"train": 1, "validation": 0}, "across_splits": 0}
    assert report["buckets"] == {"by": "len_bucket (computed)", "labels": ["0"],
                                 "counts": {"train": [31], "validation": [6]}}


def test_leakage_finds_planted_rows_and_ignores_the_shared_system_prompt(split_records):
    path, _ = split_records
    leakage = compute_stats(str(path))["leakage"]
    assert leakage["boilerplate_segments"] == 1  # the system prompt every row carries
    validation = leakage["splits"]["validation"]
    assert (validation["rows"], validation["near_duplicates"], validation["ngram_overlaps"], validation["either"]) \
        == (6, 1, 2, 2)
    examples = {e["id"]: e for e in validation["examples"]}
    assert examples["v-near"]["train_id"] == "t5" and examples["v-near"]["similarity"] >= 0.7
    assert examples["v-ngram"] == {"id": "v-ngram", "train_id": "t7", "ngram": 13}
    assert compute_stats(str(path), leakage=False)["leakage"] is None


def test_raw_alpaca_is_normalized_and_unsplit_data_skips_leakage():
    report = compute_stats(str(FIXTURES / "data" / "alpaca.json"))
    assert report["rows"] == 40 and list(report["splits"]) == ["all"]
    assert report["leakage"] == {"skipped": "no train split"}
    assert report["rejected"] is None


def test_records_with_a_tokenizer_count_tokens(split_records):
    from tokenizers import Tokenizer

    path, records = split_records
    report = compute_stats(str(path), tokenizer=str(TINY_BPE), leakage=False)
    tok = Tokenizer.from_file(str(TINY_BPE / "tokenizer.json"))
    first = records[0]
    expected = len(tok.encode(first["response"], add_special_tokens=False).ids)
    assert report["length"]["tokens"]["response"]["splits"]["train"]["min"] <= expected
    total = sum(len(tok.encode(r["response"], add_special_tokens=False).ids) for r in records if r["split"] == "train"
                if not r["history"])
    history_row = next(r for r in records if r["history"])
    total += len(tok.encode("Hello!\nYes.\n" + history_row["response"], add_special_tokens=False).ids)
    assert report["length"]["tokens"]["response"]["splits"]["train"]["total"] == total


def tokenized(tmp_path: Path) -> Path:
    out = tmp_path / "tok"
    split = invoke("split", str(FIXTURES / "data" / "canonical.jsonl"), "--val-size", "0.25", "-q")
    assert split.exit_code == 0
    (tmp_path / "split.jsonl").write_text(split.stdout)
    result = invoke("tokenize", tmp_path / "split.jsonl", "-o", out, "--tokenizer", TINY_BPE, "--max-length", "40",
                    "-q")
    assert result.exit_code == 0, result.stderr
    return out


def pack(source: Path, target: Path, max_length: int) -> None:
    """Greedy in-order packing, enough to give stats a packed folder (dataprep pack will make real ones)."""
    from datasets import Dataset, DatasetDict, load_from_disk
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    packed = {}
    for name, data in load_from_disk(str(source)).items():
        rows: list[dict] = []
        for row in data:
            if not rows or len(rows[-1]["input_ids"]) + len(row["input_ids"]) > max_length:
                rows.append({"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": []})
            rows[-1]["input_ids"] += row["input_ids"]
            rows[-1]["labels"] += row["labels"]
            rows[-1]["position_ids"] += list(range(len(row["input_ids"])))
            rows[-1]["seq_lengths"].append(len(row["input_ids"]))
        for r in rows:  # pad to max_length: padding must not count as tokens
            pad = max_length - len(r["input_ids"])
            r["input_ids"] += [0] * pad
            r["labels"] += [-100] * pad
            r["position_ids"] += [0] * pad
        packed[name] = Dataset.from_list(rows)
    DatasetDict(packed).save_to_disk(str(target))
    shutil.copytree(source / "tokenizer", target / "tokenizer")
    manifest = json.loads((source / "dataprep.json").read_text())
    manifest["packing"] = {"max_length": max_length}
    manifest["mixture"] = {"sources": {"a": {"rows": 12, "tokens": 700}, "b": {"rows": 8, "tokens": 300}}}
    (target / "dataprep.json").write_text(json.dumps(manifest))


def test_tokenized_folder_matches_its_manifest(tmp_path):
    folder = tokenized(tmp_path)
    manifest = json.loads((folder / "dataprep.json").read_text())
    report = compute_stats(str(folder))
    assert report["input"]["kind"] == "tokenized"
    for name, facts in manifest["splits"].items():
        assert report["splits"][name]["rows"] == facts["rows"]
        assert report["length"]["tokens"]["whole"]["splits"][name]["total"] == facts["tokens"]
        assert report["supervised"][name]["supervised"] == facts["supervised_tokens"]
        assert report["truncated"][name] == facts["truncated"]
    assert report["length"]["tokens"]["whole"]["splits"]["train"]["max"] <= 40
    assert report["buckets"]["by"] == "tokens"
    assert "chars" not in report["length"]


def test_packed_folder_is_measured_per_original_row(tmp_path):
    folder = tokenized(tmp_path)
    pack(folder, tmp_path / "packed", 100)
    plain, packed = compute_stats(str(folder)), compute_stats(str(tmp_path / "packed"))
    assert packed["input"]["kind"] == "packed"
    for key in ("splits", "length", "turns", "supervised", "duplicates", "buckets"):
        assert packed[key] == plain[key], key
    tokens = sum(v["total"] for v in plain["length"]["tokens"]["whole"]["splits"].values())
    packing = packed["packing"]
    assert packing["max_length"] == 100 and packing["real_tokens"] == tokens
    assert packing["efficiency"] == round(tokens / (packing["rows"] * 100), 4)
    assert packing["sequences"] == plain["rows"]
    assert packed["mixture"]["sources"]["a"]["rows"] == 12
    assert packed["leakage"]["splits"]["validation"]["rows"] == plain["splits"]["validation"]["rows"]


def test_cli_text_json_and_streams(split_records, tmp_path):
    path, _ = split_records
    text = invoke("stats", path)
    assert text.exit_code == 0, text.stderr
    assert text.stdout == render_text(compute_stats(str(path)))
    assert text.stderr == "stats: 37 rows (records), splits: train=31 validation=6\n"
    for heading in ("Rows per split", "Rows per length bucket", "Length in characters", "Turns per conversation",
                    "Supervised share", "Truncated rows", "Rejected rows", "Duplicate rows", "Leakage"):
        assert heading in text.stdout
    as_json = invoke("stats", path, "--format", "json", "-q")
    assert json.loads(as_json.stdout) == compute_stats(str(path)) and as_json.stderr == ""
    stdin = invoke("stats", "-", "--no-leakage", input=path.read_text())
    assert stdin.exit_code == 0 and "Leakage" not in stdin.stdout


def test_cli_errors_are_one_line(tmp_path):
    result = invoke("stats", tmp_path / "missing.jsonl")
    assert result.exit_code == 2 and result.stderr == f"Error: {tmp_path / 'missing.jsonl'}: no such file\n"
    (tmp_path / "empty.jsonl").write_text("")
    result = invoke("stats", tmp_path / "empty.jsonl")
    assert result.exit_code == 1 and "no rows to describe" in result.stderr


def test_pngs_and_page_from_a_packed_folder(tmp_path):
    from PIL import Image

    folder = tokenized(tmp_path)
    pack(folder, tmp_path / "packed", 100)
    result = invoke("stats", tmp_path / "packed", "--png", tmp_path / "png", "--html", tmp_path / "page.html", "-q")
    assert result.exit_code == 0, result.stderr
    report = compute_stats(str(tmp_path / "packed"))
    names = [name for name, _, _ in figures(report)]
    assert report["rejected"]["source"] == "manifest"
    assert names == ["lengths_tokens", "buckets", "turns", "rejects", "sources", "packing"]
    for name in names:
        with Image.open(tmp_path / "png" / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] == 880 and image.size[1] >= 100
    page = (tmp_path / "page.html").read_text()
    assert page == render_html(report)
    assert page.count("<svg") == len(names) and page.count("<figure") == len(names)
    lowered = page.lower()
    assert lowered.count("url(") == lowered.count("url(#")  # clip paths inside the page only
    for needle in ("<script", "<link", "<img", "@import", "http://", "https://"):
        if needle.startswith("http"):
            assert lowered.count(needle) == lowered.count(f"{needle}www.w3.org"), needle  # SVG namespaces only
        else:
            assert needle not in lowered, needle


def test_outputs_are_reproducible(split_records, tmp_path):
    path, _ = split_records
    report = compute_stats(str(path))
    assert render_html(report) == render_html(compute_stats(str(path)))
    first = [p.read_bytes() for p in write_pngs(report, tmp_path / "a")]
    second = [p.read_bytes() for p in write_pngs(report, tmp_path / "b")]
    assert first == second


@pytest.mark.slow
def test_real_data_sharegpt_and_alpaca_mix(shared_data, tmp_path):
    raw = shared_data / "llamafactory" / "glaive_toolcall_en_demo.json"
    report = compute_stats(str(raw))
    assert report["rows"] == 300 and report["turns"]["all"]["mean"] > 1.5
    assert report["supervised"]["unit"] == "chars"
