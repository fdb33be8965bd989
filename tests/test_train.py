"""``dataprep train`` end to end on real ``dataprep tokenize`` output of the fixtures, with tiny models on the CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, invoke

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

TINY_BPE = FIXTURES / "tokenizers" / "tiny-bpe"
TINY_WORDPIECE = FIXTURES / "tokenizers" / "tiny-wordpiece"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train several times faster on one thread than on a shared, busy CPU's two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in OFFLINE.items():
            mp.setenv(key, value)
        yield
    torch.set_num_threads(before)


def ok(*args: object, input: str | None = None):
    result = invoke(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def causal_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alpaca.json → normalize → split (20% validation) → tokenize with the tiny BPE tokenizer."""
    out = tmp_path_factory.mktemp("causal") / "tok"
    normalized = ok("normalize", FIXTURES / "data" / "alpaca.json", "-q").stdout
    split = ok("split", "-", "--val-size", "0.2", "-q", input=normalized).stdout
    ok("tokenize", "-", "-o", out, "--tokenizer", TINY_BPE, "-q", input=split)
    return out


@pytest.fixture(scope="module")
def tiny_run(causal_data: Path, tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("run") / "tiny"
    result = ok("train", "--data", causal_data, "--model", "tiny", "-o", run, "--max-steps", 40, "--eval-steps", 20,
                "--logging-steps", 5, "--batch-size", 8, "--lr", 3e-3, "--seed", 0)
    return result, run


def log_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_training_loss_falls(tiny_run) -> None:
    rows = log_rows(tiny_run[1])
    losses = [r["loss"] for r in rows if "loss" in r]
    assert [r["step"] for r in rows] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert losses[0] == pytest.approx(math.log(1500), abs=0.5)  # a fresh model is close to uniform
    assert sum(losses[-3:]) / 3 < losses[0] - 1.5
    assert all(r["lr"] >= 0 and r["epoch"] > 0 and r["tokens_seen"] > 0 for r in rows)


def test_eval_loss_and_perplexity_are_logged_and_summarised(tiny_run) -> None:
    result, run = tiny_run
    evals = [r for r in log_rows(run) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [20, 40]
    for r in evals:
        assert r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"]))
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert result.stdout == ""
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("train: 40 steps (")
    assert f"eval loss {evals[-1]['eval_loss']:.4f} (ppl {evals[-1]['eval_perplexity']:.2f})" in summary
    assert "tokens/s" in summary and f"to {run}" in summary
    saved = json.loads((run / "train_result.json").read_text())
    assert saved["steps"] == 40 and saved["eval"]["eval_loss"] == pytest.approx(evals[-1]["eval_loss"])


def test_checkpoint_reloads_and_reproduces_the_eval_loss(tiny_run, causal_data: Path) -> None:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dataprep.train.collate import PadCollator

    run = tiny_run[1]
    model = AutoModelForCausalLM.from_pretrained(run).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == 1500
    assert len(AutoTokenizer.from_pretrained(run)) == 1500
    validation = datasets.load_from_disk(str(causal_data))["validation"]
    assert len(validation) <= 8  # one eval batch, so the Trainer's mean is the token mean below
    batch = PadCollator(0)(list(validation))
    with torch.no_grad():
        loss = model(**batch).loss.item()
    assert loss == pytest.approx(log_rows(run)[-1]["eval_loss"], rel=1e-4)


def test_loss_png_is_a_png(tiny_run) -> None:
    data = (tiny_run[1] / "loss.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (700, 420)
    assert len(data) > 10_000


def test_a_trained_run_is_a_model_dir_to_start_from(tiny_run, causal_data: Path, tmp_path: Path) -> None:
    result = ok("train", "--data", causal_data, "--model", tiny_run[1], "-o", tmp_path / "again", "--max-steps", 2,
                "--logging-steps", 1, "--lr", 1e-4)
    first = log_rows(tmp_path / "again")[0]["loss"]
    fresh = log_rows(tiny_run[1])[0]["loss"]
    assert first < fresh - 1.0  # it starts from the trained weights, not from a fresh init
    assert "train: 2 steps" in result.stderr


def test_quiet_prints_nothing(causal_data: Path, tmp_path: Path) -> None:
    result = ok("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "r", "--max-steps", 2,
                "--group-by-length", "--quiet")
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "r" / "model.safetensors").is_file()


def test_resume_continues_with_the_same_data_order(causal_data: Path, tmp_path: Path) -> None:
    args = ["--data", causal_data, "--model", "tiny", "--max-steps", 8, "--save-steps", 4, "--logging-steps", 1,
            "--batch-size", 4, "--lr", 3e-3, "-q"]
    ok("train", *args, "-o", tmp_path / "straight")
    ok("train", *args, "-o", tmp_path / "resumed")
    refused = invoke("train", *args, "-o", tmp_path / "resumed")
    assert refused.exit_code == 1
    assert "already holds checkpoints of another run (pass --resume" in refused.stderr
    shutil.rmtree(tmp_path / "resumed" / "checkpoint-8")
    (tmp_path / "resumed" / "train_log.jsonl").unlink()
    ok("train", *args, "-o", tmp_path / "resumed", "--resume")
    straight, resumed = log_rows(tmp_path / "straight"), log_rows(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(straight, resumed, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), a["step"]
        assert b["tokens_seen"] == a["tokens_seen"]


def test_load_best_keeps_the_lowest_eval_loss(causal_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "best"
    ok("train", "--data", causal_data, "--model", "tiny", "-o", run, "--max-steps", 6, "--eval-steps", 2,
       "--lr", 5e-2, "--load-best", "--save-total-limit", 1, "-q")
    evals = {r["step"]: r["eval_loss"] for r in log_rows(run) if "eval_loss" in r}
    assert sorted(evals) == [2, 4, 6]
    best_step = min(evals, key=evals.get)
    assert best_step != 6  # the last evaluation is not the best one, so keeping the best is visible
    saved = json.loads((run / "train_result.json").read_text())
    assert saved["eval"]["eval_loss"] == pytest.approx(evals[best_step])
    kept = sorted(p.name for p in run.glob("checkpoint-*"))
    assert f"checkpoint-{best_step}" in kept and len(kept) <= 2
    from safetensors.torch import load_file

    final, best = load_file(run / "model.safetensors"), load_file(run / f"checkpoint-{best_step}" / "model.safetensors")
    assert final.keys() == best.keys() and all(torch.equal(final[k], best[k]) for k in final)


def test_torchrun_two_processes_share_the_data(causal_data: Path, tmp_path: Path) -> None:
    """DDP is the Trainer's: two CPU processes (gloo) each see half the rows, so 4 steps of 4 rows cover 32."""
    run = tmp_path / "ddp"
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dataprep",
         "train", "--data", str(causal_data), "--model", "tiny", "-o", str(run), "--max-steps", "4",
         "--batch-size", "4", "--logging-steps", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == ""
    assert sum(line.startswith("train: 4 steps (1.00 epochs)") for line in out.stderr.splitlines()) == 1
    rows = log_rows(run)
    assert rows[-1]["step"] == 4 and rows[-1]["epoch"] == 1.0
    assert (run / "model.safetensors").is_file() and (run / "loss.png").is_file()


def test_resume_without_a_checkpoint_is_refused(causal_data: Path, tmp_path: Path) -> None:
    result = invoke("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "new", "--resume")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'new'}: no checkpoint-* folder to resume from\n"


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # raised inside peft's loader
def test_lora_adapter_and_merged_weights_agree(causal_data: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = tmp_path / "lora"
    ok("train", "--data", causal_data, "--model", "tiny", "-o", run, "--max-steps", 4, "--lora-r", 4,
       "--lr", 1e-2, "--merge", "--gradient-checkpointing", "--logging-steps", 1, "-q")
    assert (run / "adapter_config.json").is_file() and (run / "adapter_model.safetensors").is_file()
    assert not (run / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(run / "base").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run / "base"), run).eval()
    merged = AutoModelForCausalLM.from_pretrained(run / "merged").eval()
    ids = torch.tensor([[5, 17, 300, 42, 2]])
    with torch.no_grad():
        plain, with_adapter, with_merged = (m(input_ids=ids).logits for m in (base, adapted, merged))
    torch.testing.assert_close(with_merged, with_adapter, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain, with_adapter, atol=1e-4)  # the adapter learned something


@pytest.fixture(scope="module")
def pairs_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fixtures/data/pairs.tsv: the first 190 pairs to train on, the other 50 held out; tiny WordPiece."""
    root = tmp_path_factory.mktemp("pairs")
    header, *rows = (FIXTURES / "data" / "pairs.tsv").read_text(encoding="utf-8-sig").splitlines(keepends=True)
    (root / "train.tsv").write_text(header + "".join(rows[:190]), encoding="utf-8")
    (root / "dev.tsv").write_text(header + "".join(rows[190:]), encoding="utf-8")
    ok("tokenize", f"train={root / 'train.tsv'}", f"validation={root / 'dev.tsv'}", "-o", root / "tok",
       "--tokenizer", TINY_WORDPIECE, "--task", "classification", "--text", "#1 String", "--text-pair",
       "#2 String", "--label", "Quality", "-q")
    return root / "tok"


def continuation_share(tokenizer_dir: Path, tsv: Path) -> float:
    """Share of WordPiece tokens that are ``##`` continuations: near 1 when words are spelled out by letters."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = " ".join(line.split("\t", 3)[3] for line in tsv.read_text(encoding="utf-8-sig").splitlines()[1:])
    tokens = tokenizer.tokenize(text)
    return sum(t.startswith("##") for t in tokens) / len(tokens)


def test_tiny_classifier_learns_pairs_above_chance(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    share = continuation_share(TINY_WORDPIECE, FIXTURES / "data" / "pairs.tsv")
    if share > 0.4:
        pytest.skip(f"tiny-wordpiece spells pairs.tsv out letter by letter ({share:.0%} ## pieces): its corpus "
                    "lacks the pairs' words, and a tiny BERT cannot learn paraphrase from letters in a CI budget")
    pairs_data = request.getfixturevalue("pairs_data")
    run = tmp_path / "cls"
    result = ok("train", "--data", pairs_data, "--model", "tiny", "-o", run, "--epochs", 20, "--batch-size", 16,
                "--lr", 1e-3, "--warmup-ratio", 0.1, "--eval-steps", 120, "--logging-steps", 40, "--seed", 0)
    final = log_rows(run)[-1]
    assert final["step"] == 240
    assert final["eval_accuracy"] >= 0.66  # 50 held-out pairs, 26 of one class: chance is at most 0.52
    assert 0 < final["eval_f1"] <= 1 and "eval_perplexity" not in final
    assert f"accuracy {final['eval_accuracy']:.3f}" in result.stderr
    model = AutoModelForSequenceClassification.from_pretrained(run)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 2


def test_missing_manifest_is_refused(causal_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "nomanifest"
    shutil.copytree(causal_data, copy)
    (copy / "dataprep.json").unlink()
    result = invoke("train", "--data", copy, "--model", "tiny", "-o", tmp_path / "r")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {copy}: no dataprep.json here, so this is not a dataset written by "
                                    "dataprep (run dataprep tokenize")
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_model_with_a_smaller_vocabulary_is_refused(causal_data: Path, tmp_path: Path) -> None:
    from dataprep.train.model import tiny_causal_config

    tiny_causal_config(1000, pad_token_id=0, bos_token_id=None, eos_token_id=2).save_pretrained(tmp_path / "m")
    result = invoke("train", "--data", causal_data, "--model", tmp_path / "m", "-o", tmp_path / "r")
    assert result.exit_code == 1
    assert (f"--model {tmp_path / 'm'}: its vocabulary has 1000 entries but the dataset's tokenizer has 1500"
            in result.stderr)


def test_model_with_another_tokenizer_is_refused(causal_data: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from dataprep.train.model import tiny_causal_config

    tiny_causal_config(1500, pad_token_id=0, bos_token_id=None, eos_token_id=2).save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(TINY_WORDPIECE).save_pretrained(tmp_path / "m")
    result = invoke("train", "--data", causal_data, "--model", tmp_path / "m", "-o", tmp_path / "r")
    assert result.exit_code == 1
    assert "its tokenizer differs from the dataset's" in result.stderr
    assert result.stderr.count("\n") == 1


def test_option_conflicts_exit_2(causal_data: Path, tmp_path: Path) -> None:
    merge = invoke("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "r", "--merge")
    assert merge.exit_code == 2 and merge.stderr == "Error: --merge only makes sense with --lora-r\n"
    best = invoke("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "r", "--load-best")
    assert best.exit_code == 2 and "--load-best needs --eval-steps" in best.stderr


def test_unknown_lora_target_is_refused_before_anything_is_written(causal_data: Path, tmp_path: Path) -> None:
    result = invoke("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "r", "--lora-r", 2,
                    "--lora-target", "nowhere_proj")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: --lora-target: Target modules {'nowhere_proj'} not found")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(bool(__import__("importlib").util.find_spec("tensorboard")), reason="tensorboard installed")
def test_missing_reporter_is_named(causal_data: Path, tmp_path: Path) -> None:
    result = invoke("train", "--data", causal_data, "--model", "tiny", "-o", tmp_path / "r", "--report-to",
                    "tensorboard")
    assert result.exit_code == 1
    assert result.stderr == "Error: tensorboard is not installed (install it with: pip install tensorboard)\n"


def test_help_and_data_commands_do_not_import_torch() -> None:
    code = ("import sys; from click.testing import CliRunner; from dataprep.cli import cli; "
            "r = CliRunner().invoke(cli, ['train', '--help']); assert 'Examples:' in r.output, r.output; "
            "r = CliRunner().invoke(cli, ['--help']); assert 'Fine-tune' in r.output, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_torch_names_the_extra(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['torch'] = None; from dataprep.cli import main; "
            f"main(['train', '--data', {str(tmp_path)!r}, '--model', 'tiny', '-o', {str(tmp_path / 'r')!r}])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, **OFFLINE})
    assert out.returncode == 1
    assert out.stderr == 'Error: torch is not installed (install it with: pip install "dataprep[train]")\n'


def pack_rows(rows: list[dict], per_pack: int) -> list[dict]:
    """Rows concatenated ``per_pack`` at a time, each pack carrying its ``seq_lengths`` (as ``dataprep pack`` will)."""
    packs = []
    for i in range(0, len(rows), per_pack):
        group = rows[i:i + per_pack]
        ids = sum((r["input_ids"] for r in group), [])
        packs.append({"id": ",".join(r["id"] for r in group), "input_ids": ids, "attention_mask": [1] * len(ids),
                      "labels": sum((r["labels"] for r in group), []), "seq_lengths": [r["length"] for r in group],
                      "length": len(ids)})
    return packs


def test_packed_folder_trains_exactly_like_its_rows_unpacked(tmp_path: Path) -> None:
    """One full-batch step on 12 rows, then the eval loss of 4 held-out rows: the same numbers whether the rows
    are stored one per row or packed three/two to a row. Runs through the Trainer, so the model config and the
    collator's position_ids are the ones dataprep train really uses (no attention mask, restarts detected)."""
    from transformers import AutoTokenizer

    from dataprep.train.synthetic import copy_task_rows, write_tokenized

    tokenizer = AutoTokenizer.from_pretrained(TINY_BPE)
    train, held_out = copy_task_rows(tokenizer, 12, seed=3), copy_task_rows(tokenizer, 4, seed=4)
    plain = write_tokenized(tmp_path / "plain", tokenizer, {"train": train, "validation": held_out})
    packed = write_tokenized(tmp_path / "packed", tokenizer, {"train": pack_rows(train, 3),
                                                              "validation": pack_rows(held_out, 2)})
    results = {}
    for name, data in (("plain", plain), ("packed", packed)):
        result = ok("train", "--data", data, "--model", "tiny", "-o", tmp_path / f"run-{name}", "--max-steps", 1,
                    "--batch-size", 12, "--eval-steps", 1, "--lr", 1e-2, "--seed", 0, "--logging-steps", 1)
        assert "label guard: 1 batch, " in result.stderr
        results[name] = log_rows(tmp_path / f"run-{name}")[0]
    assert results["packed"]["loss"] == pytest.approx(results["plain"]["loss"], rel=1e-5)
    assert results["packed"]["eval_loss"] == pytest.approx(results["plain"]["eval_loss"], rel=1e-5)
