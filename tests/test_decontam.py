"""dataprep.decontam: evaluation n-grams from any format, planted overlaps found with their file and row."""

from __future__ import annotations

import json
import random

import pytest

from dataprep.decontam import EvalIndex
from dataprep.errors import InputError
from dataprep.io import dumps
from dataprep.records import make_record

QUESTION = ("Which planet in our solar system has the shortest day, rotating once on its axis in a little under "
            "ten hours?")


def write_jsonl(path, rows) -> str:
    path.write_text("".join(dumps(r) + "\n" for r in rows))
    return str(path)


def filler(rng: random.Random, n: int) -> str:
    words = ["data", "model", "river", "green", "seven", "lamp", "quiet", "north", "paper", "stone", "salt", "wind"]
    return " ".join(rng.choice(words) for _ in range(n))


def test_overlap_found_in_any_field_and_format(tmp_path):
    sharegpt = tmp_path / "eval_chat.json"
    chats = [
        {"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]},
        {"conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": "Jupiter."}]},
    ]
    sharegpt.write_text("[\n" + ",\n".join(json.dumps(c) for c in chats) + "\n]\n")  # record 2 on line 3
    csv = tmp_path / "eval.csv"
    csv.write_text('question,answer\n"Name the longest river in Africa, which flows north through eleven countries '
                   'into the Mediterranean Sea.",Nile\n')
    index = EvalIndex.from_files([str(sharegpt), str(csv)])
    assert len(index.locations) == 3 and index.short_rows == 1  # "Say hi." / "Hi." has no 13-gram
    training = [
        make_record(prompt="Quick quiz!", response=f"Q: {QUESTION.upper()}  A: Jupiter", id="copied"),
        make_record(prompt="Tell me about the Nile", id="river", response=(
            "It is the longest river in africa which flows north through eleven countries into the "
            "mediterranean sea, people say.")),
        make_record(prompt="Which planet has the shortest day?", response="Jupiter, under ten hours.", id="clean"),
    ]
    found = index.check(training)
    assert found[2] is None
    assert found[0] is not None and found[0].location == f"{sharegpt}:3"
    assert found[0].words == "which planet in our solar system has the shortest day rotating once on"
    assert found[1] is not None and found[1].location == f"{csv}:2"


def test_ngram_length_is_the_boundary(tmp_path):
    words = [f"w{i}" for i in range(20)]
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"text": " ".join(words)}])
    share_12 = make_record(prompt=" ".join(words[3:15]), response="x y z")
    share_13 = make_record(prompt=" ".join(words[3:16]), response="x y z")
    assert [r is None for r in EvalIndex.from_files([eval_path]).check([share_12, share_13])] == [True, False]
    assert EvalIndex.from_files([eval_path], ngram=12).check([share_12])[0] is not None


def test_ngrams_do_not_run_across_evaluation_fields(tmp_path):
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"q": "one two three four five six seven",
                                                      "a": "eight nine ten eleven twelve thirteen"}])
    training = make_record(prompt="one two three four five six seven eight nine ten eleven twelve thirteen",
                           response="ok")
    index = EvalIndex.from_files([eval_path])
    assert index.short_rows == 1 and index.check([training]) == [None]


def test_chinese_text_counts_characters_as_words(tmp_path):
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"instruction": "请解释为什么天空在晴朗的白天看起来是蓝色的。"}])
    hit = make_record(prompt="问题：请解释为什么天空在晴朗的白天看起来是蓝色的？", response="因为瑞利散射。")
    miss = make_record(prompt="请解释为什么海水看起来是蓝色的？", response="因为水吸收红光。")
    assert [r is None for r in EvalIndex.from_files([eval_path]).check([hit, miss])] == [False, True]


def test_planted_overlaps_among_many_rows(tmp_path):
    rng = random.Random(7)
    evals = [{"id": i, "question": filler(rng, 30)} for i in range(300)]
    eval_path = write_jsonl(tmp_path / "eval.jsonl", evals)
    training, planted = [], {}
    for i in range(2000):
        text = filler(random.Random(10_000 + i), 40)
        if i % 10 == 0:
            source = rng.randrange(len(evals))
            words = evals[source]["question"].split()
            start = rng.randrange(len(words) - 13)
            text = text[:50] + " " + " ".join(words[start:start + 13]).title() + ", " + text[50:]
            planted[str(i)] = f"{eval_path}:{source + 1}"
        training.append(make_record(prompt=f"row {i}", response=text, id=str(i)))
    index = EvalIndex.from_files([eval_path])
    found = {r["id"]: o for r, o in zip(training, index.check(training), strict=True) if o is not None}
    # planted rows are found with their exact eval row; a 12-word filler vocabulary makes chance 13-gram
    # matches possible, so the unplanted rows that match must match a real 13-word run of the eval row
    assert {k: found[k].location for k in planted} == planted
    for row_id, overlap in found.items():
        line = int(overlap.location.rsplit(":", 1)[1])
        assert overlap.words in evals[line - 1]["question"].lower()
        assert row_id in planted or overlap.words in training[int(row_id)]["response"].lower()


def test_unreadable_eval_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        EvalIndex.from_files([str(tmp_path / "missing.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "fine"}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        EvalIndex.from_files([str(bad)])


def test_describe_reports_what_was_loaded(tmp_path):
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"q": " ".join(f"w{i}" for i in range(15))}, {"q": "short"}])
    assert EvalIndex.from_files([eval_path]).describe() == \
        "1 eval file, 2 rows, 3 13-grams, 1 row under 13 words never match"
