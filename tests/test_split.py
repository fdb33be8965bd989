"""dataprep split: exact counts, per-stratum ratios, merges, files, determinism, and hypothesis properties."""

from __future__ import annotations

import json
import random
from collections import Counter
from fractions import Fraction

import pytest
from conftest import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.io import dumps, read_records
from dataprep.records import Record, make_record
from dataprep.split import SplitOptions, Splitter, allocate, len_bucket, merge_small, parse_size


def jsonl(records: list[Record]) -> str:
    return "".join(dumps(r) + "\n" for r in records)


def lines(text: str) -> list[Record]:
    return [json.loads(line) for line in text.splitlines()]


def corpus(n: int, seed: int = 0, words: tuple[int, ...] = (5, 5, 5, 250, 450, 650, 900)) -> list[Record]:
    rnd = random.Random(seed)
    return [make_record(prompt=" ".join(["w"] * rnd.choice(words)), response=f"answer {i}", id=f"r{i}",
                        meta={"src": rnd.choice("ab")}) for i in range(n)]


def run_split(records: list[Record], *args: str) -> tuple[list[Record], str]:
    result = invoke("split", "-", *args, input=jsonl(records))
    assert result.exit_code == 0, result.stderr
    return lines(result.stdout), result.stderr


def split_of(records: list[Record], options: SplitOptions) -> dict[str, str]:
    splitter = Splitter(options)
    assert splitter.add(records) == []
    return {r["id"]: r["split"] for batch in splitter.finish() for r in batch.records}


def test_exact_global_counts_and_ratio_within_every_stratum():
    records = corpus(2000)
    out, stderr = run_split(records, "--val-size", "0.1", "--test-size", "0.05")
    counts = Counter(r["split"] for r in out)
    assert counts == {"train": 1700, "validation": 200, "test": 100}
    assert stderr == "split: 2000 in, 2000 out, 0 rejected; train: 1700, validation: 200, test: 100\n"
    for bucket in {r["len_bucket"] for r in out}:
        in_bucket = [r for r in out if r["len_bucket"] == bucket]
        size = len(in_bucket)
        for name, fraction in (("validation", 0.1), ("test", 0.05)):
            assert abs(sum(r["split"] == name for r in in_bucket) - size * fraction) < 1, (bucket, name)


def test_output_keeps_input_order_and_adds_fields_last():
    records = corpus(50)
    out, _ = run_split(records, "--val-size", "0.2")
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert list(out[0])[-3:] == ["meta", "len_bucket", "split"]
    assert [r["len_bucket"] for r in out] == [len_bucket(r) for r in records]


def test_len_bucket_follows_seed_004_and_can_count_chars():
    record = make_record(prompt=" ".join(["w"] * 399), query="x y", response="r")
    assert len_bucket(record) == 2  # 401 words // 200
    assert len_bucket(record, max_bucket=1) == 1
    assert len_bucket(make_record(prompt="abcdefghij", response="r"), "chars", 4, 9) == 2


def test_fraction_rounds_half_up_and_count_is_exact():
    out, _ = run_split(corpus(5), "--val-size", "0.1")  # 0.5 rows: rounds up
    assert Counter(r["split"] for r in out) == {"train": 4, "validation": 1}
    out, _ = run_split(corpus(300), "--val-size", "7", "--test-size", "0.01")
    assert Counter(r["split"] for r in out) == {"train": 290, "validation": 7, "test": 3}


@pytest.mark.parametrize("value", ["1.0", "0", "1.5", "-3", "abc", "0.0"])
def test_bad_sizes_exit_2(value):
    result = invoke("split", "-", "--val-size", value, input="")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: --val-size must be a fraction between 0 and 1 or a whole count of rows, got {value!r}\n")


def test_more_held_out_rows_than_input_fails():
    result = invoke("split", "-", "--val-size", "8", "--test-size", "3", input=jsonl(corpus(10)))
    assert result.exit_code == 1
    assert result.stderr == "Error: split: asked for 11 held-out rows but the input has 10\n"
    result = invoke("split", "-", "--val-size", "0.6", "--test-size", "0.5", input="")
    assert result.exit_code == 2
    assert result.stderr == "Error: --val-size and --test-size together exceed all rows\n"


def test_tiny_strata_are_merged_into_a_neighbour_never_dropped():
    records = corpus(200, words=(5,)) + corpus(3, seed=1, words=(900,))
    for i, r in enumerate(records):
        r["id"] = f"r{i}"
    out, stderr = run_split(records, "--val-size", "0.1")
    assert len(out) == 203
    assert Counter(r["len_bucket"] for r in out) == {0: 200, 4: 3}
    assert Counter(r["split"] for r in out) == {"train": 183, "validation": 20}
    assert stderr == ("split: 203 in, 203 out, 0 rejected; train: 183, validation: 20, "
                      "merged: len_bucket=0+4 (203 rows)\n")


def test_merge_picks_the_nearest_numeric_neighbour_and_the_smallest_first():
    groups, merges = merge_small({(0,): 100, (1,): 1, (3,): 100, (4,): 2}, [10], 203)
    assert merges == ["len_bucket=0+1 (101 rows)", "len_bucket=3+4 (102 rows)"]
    assert [(g.keys, g.size) for g in groups] == [([(0,), (1,)], 101), ([(3,), (4,)], 102)]
    groups, merges = merge_small({(0,): 100, (2,): 1, (3,): 100}, [10], 201)
    assert merges == ["len_bucket=2+3 (101 rows)"]
    groups, merges = merge_small({("a", 0): 1, ("b", 0): 50, ("c", 0): 50}, [5], 101, ("meta.src", "len_bucket"))
    assert merges == ["(meta.src,len_bucket)=(a,0)+(b,0) (51 rows)"]
    groups, merges = merge_small({(0,): 5, (1,): 5}, [1], 10)
    assert merges == ["len_bucket=0+1 (10 rows)"] and len(groups) == 1


def test_allocate_uses_largest_remainders_within_caps():
    assert allocate([Fraction(5, 2), Fraction(3, 2), Fraction(1)], [10, 10, 10], 5) == [3, 1, 1]
    assert allocate([Fraction(7, 3), Fraction(7, 3), Fraction(7, 3)], [10, 10, 10], 7) == [3, 2, 2]
    assert allocate([Fraction(5, 2), Fraction(5, 2)], [2, 10], 5) == [2, 3]


def test_stratify_by_meta_field_and_missing_field_reject(tmp_path):
    records = corpus(100)
    records[3] = make_record(prompt="no meta", response="r", id="lonely")
    rejects = tmp_path / "rejects.jsonl"
    out, stderr = run_split(records, "--val-size", "0.2", "--stratify-by", "meta.src", "--rejects", str(rejects))
    assert len(out) == 99 and "lonely" not in {r["id"] for r in out}
    (reject,) = lines(rejects.read_text())
    assert {k: reject[k] for k in ("id", "stage", "reason", "detail")} == {
        "id": "lonely", "stage": "split", "reason": "missing_stratify_field", "detail": "no value for field 'meta.src'"}
    assert stderr.startswith("split: 100 in, 99 out, 1 rejected (missing_stratify_field: 1); train: 79, validation: 20")
    for src in "ab":
        rows = [r for r in out if r["meta"]["src"] == src]
        assert abs(sum(r["split"] == "validation" for r in rows) - len(rows) * 0.2) < 1


def test_out_dir_writes_one_file_per_split(tmp_path):
    records = corpus(100)
    result = invoke("split", "-", "--val-size", "10", "--test-size", "5", "--out-dir", tmp_path / "out",
                    input=jsonl(records))
    assert result.exit_code == 0 and result.stdout == ""
    files = {p.name: lines(p.read_text()) for p in (tmp_path / "out").iterdir()}
    assert {name: len(rows) for name, rows in files.items()} == {
        "train.jsonl": 85, "validation.jsonl": 10, "test.jsonl": 5}
    assert all(r["split"] == name.removesuffix(".jsonl") for name, rows in files.items() for r in rows)
    streamed, _ = run_split(records, "--val-size", "10", "--test-size", "5")
    assert [r for r in streamed if r["split"] == "train"] == files["train.jsonl"]


def test_out_dir_writes_nothing_on_failure_and_refuses_output(tmp_path):
    bad = jsonl(corpus(20)) + "{broken\n"
    result = invoke("split", "-", "--val-size", "0.1", "--out-dir", tmp_path / "out", input=bad)
    assert result.exit_code == 2
    assert result.stderr == "Error: <stdin>:21: malformed JSON at column 2: Expecting property name enclosed in double quotes\n"
    assert list(tmp_path.iterdir()) == []  # no folder, no hidden temp
    result = invoke("split", "-", "--val-size", "0.1", "--out-dir", tmp_path / "o", "-o", tmp_path / "x.jsonl",
                    input="")
    assert result.exit_code == 2
    assert result.stderr == "Error: use either --out-dir or -o/--output, not both\n"


def test_byte_identical_twice_and_seed_matters():
    text = jsonl(corpus(300))
    first = invoke("split", "-", "--val-size", "0.1", "--seed", "7", input=text).stdout
    assert invoke("split", "-", "--val-size", "0.1", "--seed", "7", input=text).stdout == first
    assert invoke("split", "-", "--val-size", "0.1", "--seed", "8", input=text).stdout != first


def test_an_old_split_field_is_replaced_not_trusted():
    records = corpus(40)
    fresh, _ = run_split(records, "--val-size", "0.25")
    again, _ = run_split([{**r, "split": "test", "len_bucket": 99} for r in records], "--val-size", "0.25")
    assert again == fresh


def test_duplicate_ids_are_still_deterministic():
    records = [make_record(prompt=f"p{i}", response="r", id="same") for i in range(20)]
    out, _ = run_split(records, "--val-size", "0.25")
    shuffled = records[::-1]
    out_shuffled, _ = run_split(shuffled, "--val-size", "0.25")
    by_prompt = {r["prompt"]: r["split"] for r in out}
    assert {r["prompt"]: r["split"] for r in out_shuffled} == by_prompt
    assert Counter(by_prompt.values()) == {"train": 15, "validation": 5}


@pytest.mark.slow
def test_real_alpaca_demo_buckets_match_seed_004(shared_data):
    raw = json.loads((shared_data / "llamafactory" / "alpaca_en_demo.json").read_text())
    records = [make_record(prompt=r["instruction"], query=r["input"], response=r["output"]) for r in raw]
    out, stderr = run_split(records, "--val-size", "0.02", "--seed", "42")

    def seed_004_bucket(example: dict) -> int:
        prompt = example["instruction"].strip()
        if example["input"]:
            prompt += "\n" + example["input"].strip()
        return min(len(prompt.split()) // 200, 4)

    expected = Counter(seed_004_bucket(r) for r in raw)
    assert Counter(r["len_bucket"] for r in out) == expected
    assert sum(r["split"] == "validation" for r in out) == round(0.02 * len(raw))
    assert stderr.startswith(f"split: {len(raw)} in, {len(raw)} out, 0 rejected")


ids = st.lists(st.text("abcdef0123", min_size=1, max_size=6), min_size=1, max_size=120, unique=True)
word_counts = st.sampled_from([1, 1, 1, 210, 420, 1000])


def records_from(id_list: list[str], sizes: list[int]) -> list[Record]:
    return [make_record(prompt=" ".join(["w"] * size), response="r", id=i) for i, size in zip(id_list, sizes,
                                                                                             strict=True)]


@settings(max_examples=40, deadline=None)
@given(ids, st.data(), st.sampled_from(["0.1", "0.3", "3"]), st.integers(0, 3))
def test_property_repeatable_and_independent_of_order(id_list, data, val, seed):
    sizes = data.draw(st.lists(word_counts, min_size=len(id_list), max_size=len(id_list)))
    records = records_from(id_list, sizes)
    if val == "3" and len(records) < 3:
        return
    options = SplitOptions(val_size=parse_size(val), seed=seed)
    assignment = split_of(records, options)
    assert split_of(records, options) == assignment
    permuted = data.draw(st.permutations(records))
    assert split_of(list(permuted), options) == assignment
    expected_val = parse_size(val).target(len(records))
    assert Counter(assignment.values())["validation"] == expected_val


@settings(max_examples=40, deadline=None)
@given(ids, st.integers(1, 30), st.sampled_from(["0.1", "0.25"]))
def test_property_adding_rows_moves_few_existing_records(id_list, extra, val):
    base = records_from(id_list, [3] * len(id_list))
    added = [make_record(prompt="w", response="r", id=f"new{i}") for i in range(extra)]
    options = SplitOptions(val_size=parse_size(val))
    before = split_of(base, options)
    after = split_of(base + added, options)
    moved = sum(before[i] != after[i] for i in before)
    assert moved <= extra + 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), word_counts), max_size=60), st.booleans())
def test_property_rows_in_equal_rows_out_plus_rejected(rows, with_test):
    records = [make_record(prompt=" ".join(["w"] * size), response="r", id=str(i), meta={"src": src} if src else None)
               for i, (src, size) in enumerate(rows)]
    args = ["--val-size", "0.2", "--stratify-by", "meta.src,len_bucket"] + (["--test-size", "0.1"] if with_test else [])
    result = invoke("split", "-", *args, input=jsonl(records))
    assert result.exit_code == 0, result.stderr
    missing = sum(src is None for src, _ in rows)
    kept = len(rows) - missing
    assert len(lines(result.stdout)) == kept
    summary = f"split: {len(rows)} in, {kept} out, {missing} rejected"
    assert result.stderr.startswith(summary)


def test_unknown_fields_stay_after_split():
    records = corpus(30)
    records[4]["zz_extra"] = {"k": 1}
    out, _ = run_split(records, "--val-size", "0.2")
    assert list(out[4])[-3:] == ["len_bucket", "split", "zz_extra"]
    assert list(out[5])[-2:] == ["len_bucket", "split"]


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz", "s.parquet"])
def test_every_output_format_holds_the_same_records(tmp_path, name):
    records = corpus(30)
    out, _ = run_split(records, "--val-size", "0.2")
    result = invoke("split", "-", "--val-size", "0.2", "-o", tmp_path / name, input=jsonl(records))
    assert result.exit_code == 0 and result.stdout == ""
    assert read_records(str(tmp_path / name)) == out


def test_output_to_a_named_pipe_is_written_in_place(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = invoke("split", "-", "--val-size", "0.2", "-o", fifo, input=jsonl(corpus(10)))
    reader.join(timeout=30)
    assert result.exit_code == 0
    assert fifo.is_fifo()
    assert len(received[0].decode().splitlines()) == 10


def test_emitted_rows_are_decoded_only_when_looked_at(tmp_path):
    """split's rows come back as their JSON lines; a JSONL writer never decodes them, a reader of records does,
    and both see the same rows. A row with a key that ranks after ``split`` is put in canonical order."""
    from dataprep.io import LazyRecords, json_lines
    from dataprep.sinks import RecordSink

    records = corpus(40)
    odd = {**make_record(prompt="p", response="r", id="odd"), "extra": 1}
    splitter = Splitter(SplitOptions(val_size=parse_size("0.25"), seed=3))
    splitter.add([*records[:20], odd])
    splitter.add(records[20:])
    batches = list(splitter.finish())
    assert all(isinstance(b.records, LazyRecords) and not b.records.parsed for b in batches)
    out = tmp_path / "out.jsonl"
    sink = RecordSink(str(out))
    for b in batches:
        sink.write(b.take(list(range(1, len(b)))))
    sink.close()
    assert not any(b.records.parsed for b in batches)
    rows = [r for b in batches for r in b.records]
    assert [r["id"] for r in rows] == [r["id"] for r in records[:20]] + ["odd"] + [r["id"] for r in records[20:]]
    assert list(rows[20]) == [*odd, "len_bucket", "split"][:-3] + ["len_bucket", "split", "extra"]
    assert [json.loads(line) for b in batches for line in json_lines(b)] == rows
    assert [dumps(r) for r in rows] == [line for b in batches for line in json_lines(b)]
    written = read_records(str(out))
    assert written == [r for b in batches for r in list(b.records)[1:]]
