"""dataprep pack: the best-fit-decreasing plan (against a one-row-at-a-time reference), lossless packing of real
tokenize output (unpacked back to the original rows), rejects, determinism, the cache and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.errors import DataprepError
from dataprep.pack import PackJob, greedy_packs, pack_to_disk, plan_bfd
from tests.conftest import FIXTURES, invoke

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
MESSAGES = FIXTURES / "data" / "messages.jsonl"


def ok(*args: object, input: str | None = None):
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


def reference_bfd(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing one row at a time, scanning every pack: the least room that fits, and among equal
    rooms the pack that has had that room longest. Rows longest first, lower index first among equals."""
    packs: list[list[int]] = []
    room: list[int] = []
    since: list[int] = []  # when each pack got its current room
    for clock, i in enumerate(sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))):
        fits = [p for p in range(len(packs)) if room[p] >= lengths[i]]
        if fits:
            p = min(fits, key=lambda p: (room[p], since[p]))
        else:
            p = len(packs)
            packs.append([])
            room.append(capacity)
            since.append(clock)
        packs[p].append(i)
        room[p] -= lengths[i]
        since[p] = clock
    return packs


def unpack(plan) -> list[list[int]]:
    return [plan.order[plan.offsets[p]:plan.offsets[p + 1]].tolist() for p in range(plan.packs)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40).flatmap(lambda cap: st.tuples(
    st.just(cap), st.lists(st.integers(1, cap), max_size=120))))
def test_plan_is_best_fit_decreasing_row_by_row(case: tuple[int, list[int]]) -> None:
    capacity, lengths = case
    plan = plan_bfd(np.array(lengths, dtype=np.int64), capacity)
    assert unpack(plan) == reference_bfd(lengths, capacity)


def test_plan_places_every_row_once_and_beats_greedy_on_a_million_rows() -> None:
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(5.3, 0.9, 1_000_000).astype(np.int64), 1, 2048)
    plan = plan_bfd(lengths, 2048)
    assert np.array_equal(np.sort(plan.order), np.arange(len(lengths)))
    sizes = plan.pack_lengths(lengths)
    assert sizes.max() <= 2048 and sizes.sum() == lengths.sum()
    lower_bound = -(-int(lengths.sum()) // 2048)
    assert plan.packs <= lower_bound * 1.001 < greedy_packs(lengths, 2048)


def test_plan_refuses_lengths_outside_the_capacity() -> None:
    with pytest.raises(ValueError):
        plan_bfd(np.array([3, 9]), 8)
    with pytest.raises(ValueError):
        plan_bfd(np.array([0, 2]), 8)


# -- packing real tokenize output -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """messages + alpaca fixtures → split (25% validation) → tokenize (tiny BPE) in 7-row batches (many chunks).

    60 rows of 35..579 tokens."""
    out = tmp_path_factory.mktemp("pack") / "tok"
    alpaca = ok("normalize", FIXTURES / "data" / "alpaca.json", "-q").stdout
    messages = ok("normalize", MESSAGES, "-q").stdout
    split = ok("split", "-", "--val-size", "0.25", "-q", input=alpaca + messages).stdout
    ok("tokenize", "-", "-o", out, "--tokenizer", TINY_BPE, "--batch-size", 7, "-q", input=split)
    return out


def original_rows(folder: Path) -> dict[str, list[dict]]:
    loaded = datasets.load_from_disk(str(folder))
    return {name: loaded[name].select_columns(["id", "input_ids", "labels"]).to_list() for name in loaded}


def unpacked_rows(folder: Path) -> dict[str, dict[int, dict]]:
    """Cut every packed row back into its original rows, keyed by their index in the source split."""
    loaded = datasets.load_from_disk(str(folder))
    out: dict[str, dict[int, dict]] = {}
    for name in loaded:
        rows = out.setdefault(name, {})
        for pack in loaded[name]:
            assert pack["length"] == len(pack["input_ids"]) == sum(pack["seq_lengths"])
            start = 0
            for n, row_id, index in zip(pack["seq_lengths"], pack["ids"], pack["source_rows"], strict=True):
                assert pack["position_ids"][start:start + n] == list(range(n))
                assert index not in rows
                rows[index] = {"id": row_id, "input_ids": pack["input_ids"][start:start + n],
                               "labels": pack["labels"][start:start + n]}
                start += n
    return out


def test_unpacking_gives_back_exactly_the_original_rows(tokenized: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    result = pack_to_disk(PackJob(str(tokenized), str(packed), 600, batch_tokens=1500))  # several output batches
    original = original_rows(tokenized)
    back = unpacked_rows(packed)
    assert set(back) == set(original) == {"train", "validation"}
    for name, rows in original.items():
        assert [back[name][i] for i in range(len(rows))] == rows
    counts = {name: len(ds) for name, ds in datasets.load_from_disk(str(packed)).items()}
    assert counts == {name: s.packs for name, s in result.splits.items()}
    assert all(len(rows) > counts[name] for name, rows in original.items())


def test_manifest_card_and_summary_give_the_packing_figures(tokenized: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    result = ok("pack", tokenized, "-o", packed, "--max-length", 600)
    manifest = json.loads((packed / "dataprep.json").read_text())
    source = json.loads((tokenized / "dataprep.json").read_text())
    packing = manifest["packing"]
    tokens = source["totals"]["tokens"]
    loaded = datasets.load_from_disk(str(packed))
    packs = sum(len(ds) for ds in loaded.values())
    assert packing["strategy"] == "bfd" and packing["max_length"] == 600
    assert packing["rows_in"] == packing["rows_packed"] == source["totals"]["rows_out"]
    assert packing["packs"] == packs and packing["tokens"] == tokens
    assert packing["efficiency"] == pytest.approx(tokens / (packs * 600), abs=1e-6)
    assert packing["source_key"] == source["key"]
    for name, split in manifest["splits"].items():
        assert split["rows"] == len(loaded[name]) == packing["splits"][name]["packs"]
        assert split["tokens"] == source["splits"][name]["tokens"]
        assert split["supervised_tokens"] == source["splits"][name]["supervised_tokens"]
    assert manifest["totals"]["supervised_tokens"] == source["totals"]["supervised_tokens"]
    assert manifest["tokenizer"] == source["tokenizer"] and manifest["template"] == source["template"]
    assert (packed / "tokenizer" / "tokenizer.json").read_bytes() == (TINY_BPE / "tokenizer.json").read_bytes()
    card = (packed / "README.md").read_text()
    assert "## Packing" in card and f"{100 * packing['efficiency']:.1f}%" in card
    rows = packing["rows_in"]
    per_split = f"train={len(loaded['train'])} validation={len(loaded['validation'])}"
    assert result.stderr.startswith(f"pack: {rows} in, {rows} out, 0 rejected; packs: {packs} ({per_split}), "
                                    f"efficiency: {100 * packing['efficiency']:.1f}%, max length: 600")


def test_rows_over_the_limit_are_rejected_with_their_length_and_location(tokenized: Path, tmp_path: Path) -> None:
    lengths = {name: ds["length"] for name, ds in datasets.load_from_disk(str(tokenized)).items()}
    limit = int(np.median(lengths["train"]))
    rejects = tmp_path / "rejects.jsonl"
    result = ok("pack", tokenized, "-o", tmp_path / "packed", "--max-length", limit, "--rejects", rejects)
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    expected = [(name, i, n) for name, ns in lengths.items() for i, n in enumerate(ns) if n > limit]
    assert [(r["split"], r["location"], r["length"]) for r in rows] == [
        (name, f"{tokenized}/{name}[{i}]", n) for name, i, n in expected]
    assert all(r["reason"] == "too_long" and r["detail"] == f"{r['length']} tokens > --max-length {limit}"
               for r in rows)
    packing = json.loads((tmp_path / "packed" / "dataprep.json").read_text())["packing"]
    for name, ns in lengths.items():
        split = packing["splits"][name]
        assert split["rows_in"] == len(ns) == split["rows_packed"] + split["rejected"]
        assert split["rejected"] == sum(1 for n in ns if n > limit)
    back = unpacked_rows(tmp_path / "packed")
    assert {name: sorted(rows) for name, rows in back.items()} == {
        name: [i for i, n in enumerate(ns) if n <= limit] for name, ns in lengths.items()}
    total = sum(len(ns) for ns in lengths.values())
    assert f"pack: {total} in, {total - len(rows)} out, {len(rows)} rejected (too_long: {len(rows)})" in result.stderr


def test_same_input_same_bytes(tokenized: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        ok("pack", tokenized, "-o", tmp_path / name, "--max-length", 600, "-q")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert any(p.suffix == ".arrow" for p in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_up_to_date_unless_forced_or_changed(tokenized: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    ok("pack", tokenized, "-o", packed, "--max-length", 600, "-q")
    again = ok("pack", tokenized, "-o", packed, "--max-length", 600)
    assert "is up to date" in again.stderr
    assert "is up to date" not in ok("pack", tokenized, "-o", packed, "--max-length", 600, "--force").stderr
    assert "is up to date" not in ok("pack", tokenized, "-o", packed, "--max-length", 601).stderr


def test_split_files_and_int64_columns_are_read_as_they_are(tokenized: Path, tmp_path: Path) -> None:
    """A folder saved in several shards per split, with int64 token lists (as Dataset.from_list makes them)."""
    other = tmp_path / "sharded"
    loaded = datasets.load_from_disk(str(tokenized))
    wide = datasets.Sequence(datasets.Value("int64"))
    loaded = loaded.cast_column("input_ids", wide).cast_column("labels", wide)
    loaded.save_to_disk(str(other), num_shards={"train": 3, "validation": 2})
    shutil.copy(tokenized / "dataprep.json", other / "dataprep.json")
    shutil.copytree(tokenized / "tokenizer", other / "tokenizer")
    assert len(datasets.load_from_disk(str(other))["train"].cache_files) == 3
    pack_to_disk(PackJob(str(other), str(tmp_path / "packed"), 600))
    original = original_rows(tokenized)
    back = unpacked_rows(tmp_path / "packed")
    for name, rows in original.items():
        assert [back[name][i] for i in range(len(rows))] == rows


def test_packed_input_classification_and_the_input_itself_are_refused(tokenized: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    ok("pack", tokenized, "-o", packed, "--max-length", 256, "-q")
    again = invoke("pack", packed, "-o", tmp_path / "twice", "--max-length", 512)
    assert again.exit_code == 1 and "is already packed" in again.stderr
    for target in (tokenized, tokenized / "packed", tokenized.parent):
        same = invoke("pack", tokenized, "-o", target, "--max-length", 512)
        assert same.exit_code == 1 and "inside the input folder" in same.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = invoke("pack", tokenized, "-o", foreign, "--max-length", 512)
    assert refused.exit_code == 2 and "not written by dataprep" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "mine"
    missing = invoke("pack", tmp_path / "nothing", "-o", tmp_path / "x", "--max-length", 512)
    assert missing.exit_code == 2 and "no such folder" in missing.stderr
    assert invoke("pack", tokenized, "-o", tmp_path / "x", "--max-length", 0).exit_code == 2


def test_emit_for_trl_adds_the_masks_of_the_labels_and_nothing_else(tokenized: Path, tmp_path: Path) -> None:
    ok("pack", tokenized, "-o", tmp_path / "plain", "--max-length", 600, "-q")
    ok("pack", tokenized, "-o", tmp_path / "trl", "--max-length", 600, "--emit-for", "trl", "-q")
    plain, trl = (datasets.load_from_disk(str(tmp_path / name)) for name in ("plain", "trl"))
    for split in plain:
        assert trl[split].column_names == [*plain[split].column_names, "assistant_masks", "completion_mask"]
        for a, b in zip(plain[split], trl[split], strict=True):
            mask = [int(label != -100) for label in a["labels"]]
            assert b["assistant_masks"] == b["completion_mask"] == mask and any(mask)
            assert {k: b[k] for k in a} == a
    assert json.loads((tmp_path / "trl" / "dataprep.json").read_text())["emit_for"] == "trl"


@pytest.mark.parametrize("target", ["llamafactory", "axolotl", "plain"])
def test_three_column_layouts_are_refused_for_packed_rows(tokenized: Path, tmp_path: Path, target: str) -> None:
    result = invoke("pack", tokenized, "-o", tmp_path / "p", "--max-length", 600, "--emit-for", target)
    assert result.exit_code == 2
    assert f"--emit-for {target} does not apply to packed rows" in result.stderr
    assert f"dataprep tokenize --emit-for {target}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_classification_data_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "mrpc"
    ok("tokenize", FIXTURES / "data" / "pairs.tsv", "-o", out, "--tokenizer", FIXTURES / "tokenizers" /
       "tiny-wordpiece", "--task", "classification", "--text", "#1 String", "--text-pair", "#2 String",
       "--label", "Quality", "-q")
    refused = invoke("pack", out, "-o", tmp_path / "packed", "--max-length", 128)
    assert refused.exit_code == 1 and "only causal-LM rows can be packed" in refused.stderr


def test_a_failed_run_leaves_no_output(tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataprep import pack

    def broken(*args, **kwargs):
        raise OSError("disk full")

    packed = tmp_path / "packed"
    monkeypatch.setattr(pack.shutil, "copytree", broken)
    with pytest.raises(OSError):
        pack_to_disk(PackJob(str(tokenized), str(packed), 256))
    assert not packed.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_folder_without_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(DataprepError, match="no dataprep.json"):
        pack_to_disk(PackJob(str(tmp_path / "x"), str(tmp_path / "y"), 8))


# -- real data ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_alpaca_with_qwen_unpacks_exactly_and_beats_greedy(shared_data: Path, tmp_path: Path) -> None:
    qwen = shared_data / "tokenizers" / "qwen2.5"
    demo = shared_data / "llamafactory" / "alpaca_en_demo.json"
    if not qwen.is_dir() or not demo.is_file():
        pytest.skip("Qwen2.5 tokenizer or alpaca_en_demo.json not present")
    tok = tmp_path / "tok"
    normalized = ok("normalize", demo, "-q").stdout
    split = ok("split", "-", "--val-size", "0.1", "-q", input=normalized).stdout
    ok("tokenize", "-", "-o", tok, "--tokenizer", qwen, "-q", input=split)
    packed = tmp_path / "packed"
    result = pack_to_disk(PackJob(str(tok), str(packed), 1024))
    original = original_rows(tok)
    back = unpacked_rows(packed)
    for name, rows in original.items():
        assert [back[name][i] for i in range(len(rows))] == rows
    loaded = datasets.load_from_disk(str(tok))
    for name, split_result in result.splits.items():
        lengths = np.array([n for n in loaded[name]["length"] if n <= 1024])
        greedy = greedy_packs(lengths, 1024)
        bfd_eff = split_result.tokens / (split_result.packs * 1024)
        greedy_eff = lengths.sum() / (greedy * 1024)
        print(f"{name}: {len(lengths)} rows, bfd {split_result.packs} packs ({100 * bfd_eff:.1f}%), "
              f"greedy in order {greedy} packs ({100 * greedy_eff:.1f}%)")
        assert split_result.packs < greedy
