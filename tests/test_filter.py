"""dataprep filter: each rule and its reason, rule order, rejects file, dedup, banned words, regex."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from dataprep.filter import REASONS, FilterOptions, FilterState, content_key, filter_batch
from dataprep.io import dumps
from dataprep.records import Record, make_record


def jsonl(records: list[Record]) -> str:
    return "".join(dumps(r) + "\n" for r in records)


def lines(text: str) -> list[Record]:
    return [json.loads(line) for line in text.splitlines()]


def run_filter(records: list[Record], *args: str, tmp_path: Path) -> tuple[list[Record], list[Record], str]:
    rejects = tmp_path / "rejects.jsonl"
    result = invoke("filter", "-", "--rejects", rejects, *args, input=jsonl(records))
    assert result.exit_code == 0, result.stderr
    return lines(result.stdout), lines(rejects.read_text()), result.stderr


GOOD = make_record(prompt="Colour?", response="Blue!!", id="good")  # 7 + 6 chars: passes every case below


@pytest.mark.parametrize(
    ("record", "args", "reason", "detail"),
    [
        (make_record(prompt="p", response=" \n\t ", id="x"), [], "empty_response",
         "response is empty after stripping whitespace"),
        (make_record(prompt="p", response="  abcde  ", id="x"), ["--min-response-chars", "6"], "response_too_short",
         "response has 5 chars, minimum is 6"),
        (make_record(prompt="p", response="abcdefg", id="x"), ["--max-response-chars", "6"], "response_too_long",
         "response has 7 chars, maximum is 6"),
        (make_record(prompt="ab", query="c", response="fine", id="x"), ["--min-prompt-chars", "5"],
         "prompt_too_short", "prompt has 4 chars, minimum is 5"),
        (make_record(prefix="sys", prompt="ab", query="c", response="resp", history=[["h1", "h2"]], id="x"),
         ["--max-chars", "13"], "too_long", "record has 14 chars of text, maximum is 13"),
        (make_record(prompt="Tell me about Darn things", response="ok then", id="x"),
         ["--banned-words", "WORDS"], "banned_word", "contains banned word 'darn'"),
        (make_record(prompt="see http://x.org", response="ok then", id="x"),
         ["--drop-regex", r"\d{3}", "--drop-regex", "https?://"], "regex_match", "matches --drop-regex 'https?://'"),
    ],
)
def test_each_rule_rejects_with_its_reason(tmp_path, record, args, reason, detail):
    (tmp_path / "words.txt").write_text("# comment\n\ndarn\n")
    args = [str(tmp_path / "words.txt") if a == "WORDS" else a for a in args]
    kept, rejected, stderr = run_filter([GOOD, record], *args, tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["good"]
    assert len(rejected) == 1
    assert {k: rejected[0][k] for k in ("id", "stage", "reason", "detail")} == {
        "id": "x", "stage": "filter", "reason": reason, "detail": detail}
    assert stderr == f"filter: 2 in, 1 out, 1 rejected ({reason}: 1)\n"


def test_thresholds_are_inclusive_and_count_code_points(tmp_path):
    records = [make_record(prompt="p", response="  ünï  ", id="a"), make_record(prompt="p", response="日本語!", id="b")]
    kept, rejected, _ = run_filter(records, "--min-response-chars", "3", "--max-response-chars", "4",
                                   tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["a", "b"]
    assert rejected == []


def test_first_failing_rule_wins_in_documented_order(tmp_path):
    record = make_record(prompt="x", response="darn", id="x")
    (tmp_path / "w.txt").write_text("darn\n")
    _, rejected, _ = run_filter([record], "--min-response-chars", "10", "--min-prompt-chars", "5",
                                "--banned-words", str(tmp_path / "w.txt"), "--drop-regex", "d", tmp_path=tmp_path)
    assert rejected[0]["reason"] == "response_too_short"
    _, rejected, _ = run_filter([record], "--min-prompt-chars", "5", "--banned-words", str(tmp_path / "w.txt"),
                                tmp_path=tmp_path)
    assert rejected[0]["reason"] == "prompt_too_short"
    _, rejected, _ = run_filter([record], "--banned-words", str(tmp_path / "w.txt"), "--drop-regex", "d",
                                tmp_path=tmp_path)
    assert rejected[0]["reason"] == "banned_word"


def test_banned_words_any_case_whole_words_and_phrases(tmp_path):
    (tmp_path / "w.txt").write_text("bad word\nC++\nhell\n")
    records = [
        make_record(prompt="This is a BAD   WORD", response="fine answer", id="spaces"),
        make_record(prompt="so, Bad Word!", response="fine answer", id="phrase"),
        make_record(prompt="write c++ code", response="fine answer", id="symbol"),
        make_record(prompt="hello there", response="fine answer", id="inside"),
        make_record(prompt="badword", response="fine answer", id="joined"),
        make_record(prompt="q", response="fine answer", history=[["oh HELL.", "a"]], id="history"),
    ]
    kept, rejected, _ = run_filter(records, "--banned-words", str(tmp_path / "w.txt"), tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["spaces", "inside", "joined"]
    assert [(r["id"], r["detail"]) for r in rejected] == [
        ("phrase", "contains banned word 'bad word'"),
        ("symbol", "contains banned word 'C++'"),
        ("history", "contains banned word 'hell'"),
    ]


def test_regex_sees_every_field_one_line_each(tmp_path):
    records = [
        make_record(prefix="SYSTEM", prompt="a", response="fine answer", id="prefix"),
        make_record(prompt="a", response="fine answer", history=[["x", "SYSTEM"]], id="history"),
        make_record(prompt="a", response="fine answer", id="clean"),
    ]
    kept, rejected, _ = run_filter(records, "--drop-regex", "(?im)^system$", tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["clean"]
    assert [r["id"] for r in rejected] == ["prefix", "history"]


def test_dedup_keeps_the_first_and_names_it(tmp_path):
    records = [
        make_record(prompt="What is 2+2?", response="Four.", id="first"),
        make_record(prompt="what  is 2+2?\n", response="FOUR.", id="second"),
        make_record(prompt="What is 2+2?", response="Four.", query="exactly", id="other"),
        make_record(prompt="What is 2+2?", response="Four.", id="third"),
    ]
    kept, rejected, stderr = run_filter(records, "--dedup", "exact", tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["first", "other"]
    assert [(r["id"], r["reason"], r["detail"]) for r in rejected] == [
        ("second", "duplicate", "same content as kept id first"),
        ("third", "duplicate", "same content as kept id first"),
    ]
    assert stderr == "filter: 4 in, 2 out, 2 rejected (duplicate: 2)\n"


def test_dedup_state_spans_batches_and_ignores_rejected_rows():
    options = FilterOptions(dedup="exact", min_response_chars=3)
    seen = FilterState.for_options(options)
    short = make_record(prompt="p", response="ab", id="short")
    kept1, rejected1 = filter_batch([short], options, seen)
    assert (kept1, [r.reason for r in rejected1]) == ([], ["response_too_short"])
    later = make_record(prompt="p", response="abc", id="a")
    kept2, _ = filter_batch([later], options, seen)
    kept3, rejected3 = filter_batch([make_record(prompt="P", response="ABC", id="b")], options, seen)
    assert [r["id"] for r in kept2] == ["a"] and kept3 == []
    assert rejected3[0].detail == "same content as kept id a"


def test_content_key_separates_fields_and_folds_case():
    a = make_record(prompt="a b", response="c")
    assert content_key(a) == content_key(make_record(prompt=" A\tB ", response="C"))
    assert content_key(a) != content_key(make_record(prompt="a", query="b", response="c"))
    assert content_key(make_record(prompt="Straße", response="x")) == content_key(make_record(prompt="STRASSE",
                                                                                               response="x"))


def test_output_is_input_order_and_repeatable(tmp_path):
    records = [make_record(prompt=f"p{i}", response="r" * (i % 7), id=str(i)) for i in range(50)]
    first = invoke("filter", "-", "--min-response-chars", "3", input=jsonl(records))
    second = invoke("filter", "-", "--min-response-chars", "3", input=jsonl(records))
    assert first.stdout == second.stdout
    assert [r["id"] for r in lines(first.stdout)] == [str(i) for i in range(50) if i % 7 >= 3]


def test_bad_regex_and_missing_word_file_are_usage_errors(tmp_path):
    result = invoke("filter", "-", "--drop-regex", "((", input=jsonl([GOOD]))
    assert result.exit_code == 2
    assert result.stderr == "Error: --drop-regex '((' is not a valid regex: unclosed group\n"
    missing = tmp_path / "nope.txt"
    result = invoke("filter", "-", "--banned-words", missing, input=jsonl([GOOD]))
    assert result.exit_code == 2
    assert result.stderr == f"Error: {missing}: no such file\n"


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(dumps(GOOD) + "\n{oops\n")
    result = invoke("filter", path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}:2: malformed JSON")
    result = invoke("filter", path, "--on-error", "reject", "--rejects", tmp_path / "rej.jsonl")
    assert result.exit_code == 0
    assert result.stderr == "filter: 2 in, 1 out, 1 rejected (malformed_json: 1)\n"


def test_quiet_and_help_lists_every_reason_in_order():
    result = invoke("filter", "-", "--quiet", input=jsonl([GOOD]))
    assert result.stderr == "" and len(lines(result.stdout)) == 1
    help_text = " ".join(invoke("filter", "--help").stdout.split())
    assert "Examples:" in help_text
    assert "Rules in order: empty_response (always on), " + ", ".join(REASONS[1:]) + "." in help_text


@pytest.mark.slow
def test_real_alpaca_demo_data(shared_data, tmp_path):
    raw = json.loads((shared_data / "llamafactory" / "alpaca_en_demo.json").read_text())
    records = [make_record(prompt=r["instruction"], query=r["input"], response=r["output"]) for r in raw]
    kept, rejected, stderr = run_filter(records, "--min-response-chars", "6", "--dedup", "exact", tmp_path=tmp_path)
    expected = sum(len(r["output"].strip()) > 5 for r in raw)
    assert len(kept) + len(rejected) == len(raw)
    assert sum(r["reason"] in ("empty_response", "response_too_short") for r in rejected) == len(raw) - expected
    assert stderr.startswith(f"filter: {len(raw)} in, {len(kept)} out")


def test_rule_table_is_the_one_source_of_reasons_measures_and_details():
    import dataprep.filter
    from dataprep.filter import MEASURES, ROW_RULES, RULES

    assert tuple(rule.reason for rule in RULES) == REASONS
    assert REASONS[-3:] == ("contaminated", "duplicate", "near_duplicate")
    assert {rule.measure for rule in ROW_RULES} == set(MEASURES)
    assert all((rule.measure is None) == (rule.fails is None) for rule in RULES)
    doc = " ".join((dataprep.filter.__doc__ or "").split())
    positions = [doc.index(f"``{reason}``") for reason in REASONS]
    assert positions == sorted(positions)


LONG = ("The mitochondria is the powerhouse of the cell and produces most of the chemical energy needed to power "
        "the biochemical reactions of the cell.")


def test_near_dedup_names_the_kept_row_and_its_similarity(tmp_path):
    records = [
        make_record(prompt="What do mitochondria do?", response=LONG, id="kept"),
        make_record(prompt="what do MITOCHONDRIA do", response=LONG.replace("most of ", ""), id="near"),
        make_record(prompt="What do mitochondria do?", response=LONG, id="exact"),
        make_record(prompt="Name a colour.", response="Blue is a colour.", id="other"),
    ]
    kept, rejected, stderr = run_filter(records, "--dedup", "near", tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["kept", "other"]
    assert [(r["id"], r["reason"]) for r in rejected] == [("near", "near_duplicate"), ("exact", "duplicate")]
    assert rejected[0]["detail"].startswith("near duplicate of kept id kept (similarity 0.")
    assert rejected[1]["detail"] == "same content as kept id kept"
    assert stderr == "filter: 4 in, 2 out, 2 rejected (duplicate: 1, near_duplicate: 1)\n"
    kept, _, _ = run_filter(records, "--dedup", "near", "--threshold", "0.99", tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["kept", "near", "other"]


def test_copy_of_a_near_duplicate_is_judged_against_kept_rows():
    near = make_record(prompt="what do MITOCHONDRIA do", response=LONG.replace("most of ", ""), id="near")
    options = FilterOptions(dedup="near")
    for batches in ([[make_record(prompt="What do mitochondria do?", response=LONG, id="kept"), near,
                      dict(near, id="copy")]],
                    [[make_record(prompt="What do mitochondria do?", response=LONG, id="kept")], [near],
                     [dict(near, id="copy")]]):
        state = FilterState.for_options(options)
        rejected = [r for batch in batches for r in filter_batch(batch, options, state)[1]]
        assert [(r.record["id"], r.reason, r.detail.split(" (")[0]) for r in rejected] == [
            ("near", "near_duplicate", "near duplicate of kept id kept"),
            ("copy", "near_duplicate", "near duplicate of kept id kept")]


def test_decontaminate_names_eval_file_row_and_words(tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": "Say hi"}) + "\n" + json.dumps({"question": LONG}) + "\n")
    records = [GOOD, make_record(prompt="Explain.", response="Well: " + LONG.upper(), id="leak")]
    kept, rejected, stderr = run_filter(records, "--decontaminate", eval_file, "--dedup", "exact",
                                        tmp_path=tmp_path)
    assert [r["id"] for r in kept] == ["good"]
    assert rejected[0]["reason"] == "contaminated"
    assert rejected[0]["detail"] == (f'shares 13 words with {eval_file}:2: "the mitochondria is the powerhouse of '
                                     'the cell and produces most of the"')
    assert stderr == ("filter: 2 in, 1 out, 1 rejected (contaminated: 1); eval: 1 eval file, 2 rows, 12 13-grams, "
                      "1 row under 13 words never match\n")
    kept, _, _ = run_filter(records, "--decontaminate", eval_file, "--ngram", "30", tmp_path=tmp_path)
    assert len(kept) == 2


def test_threshold_needs_near_and_bad_eval_file_fails_early(tmp_path):
    result = invoke("filter", "-", "--threshold", "0.5", input=jsonl([GOOD]))
    assert result.exit_code == 2 and "--threshold applies to --dedup near" in result.stderr
    result = invoke("filter", "-", "--dedup", "near", "--threshold", "1.5", input=jsonl([GOOD]))
    assert result.exit_code == 2
    result = invoke("filter", "-", "--decontaminate", tmp_path / "none.jsonl", input=jsonl([GOOD]))
    assert result.exit_code == 2 and result.stderr == f"Error: {tmp_path / 'none.jsonl'}: no such file\n"


def test_lengths_strip_unicode_white_space_exactly_as_polars_does():
    """Length rules run in Python; they must count what polars' strip_chars/len_chars count (Unicode White_Space,
    code points), including characters str.strip() alone would take (U+001C..U+001F are not White_Space)."""
    import sys

    import polars as pl

    from dataprep.filter import MEASURES, WHITE_SPACE

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() or chr(c) in WHITE_SPACE]
    texts = [f"{s}a{s}" for s in spaces] + [s * 3 for s in spaces] + ["\x1c\x1f", "é\u3000x\u200b", ""]
    records = [make_record(prompt=t, query=t[:1], response=t, id=str(i)) for i, t in enumerate(texts)]
    options = FilterOptions()
    frame = pl.DataFrame({"t": texts})
    expected = frame.select(pl.col("t").str.strip_chars().str.len_chars())["t"].to_list()
    assert MEASURES["response_chars"](records, options) == expected
    user = [f"{t}\n{t[:1]}" if t and t[:1] else t for t in texts]
    expected_user = pl.DataFrame({"u": user}).select(pl.col("u").str.strip_chars().str.len_chars())["u"].to_list()
    assert MEASURES["prompt_chars"](records, options) == expected_user
    kept, rejected = filter_batch([make_record(prompt="p", response="\x1c", id="fs"),
                                   make_record(prompt="p", response="\u3000\u2028 \x85", id="ws")], options)
    assert [r["id"] for r in kept] == ["fs"]
    assert [(r.record["id"], r.reason) for r in rejected] == [("ws", "empty_response")]


def test_a_filter_without_text_rules_never_imports_polars():
    import subprocess
    import sys

    code = ("import sys; from dataprep.filter import FilterOptions, filter_batch; from dataprep.records import "
            "make_record; filter_batch([make_record(prompt='p', response='r' * 9)], FilterOptions(min_response_chars="
            "6, max_chars=99, min_prompt_chars=1)); assert 'polars' not in sys.modules, 'polars was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
