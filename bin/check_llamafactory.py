#!/usr/bin/env python3
"""LLaMA-Factory on a dataprep folder, run in LLaMA-Factory's own virtualenv (its pins clash with ours).

For each setting it runs ``llamafactory.train.tuner.run_exp`` on a tiny random model with two callbacks: one
pulls every batch of an epoch from LLaMA-Factory's own train dataloader and holds them against the folder
(``dataprep.train.guard.audit_epoch``), the other is the label guard. It prints one line per setting: what
LLaMA-Factory did (crashed, and with what; or trained) and the audit.

    python bin/check_llamafactory.py --lf-python /tmp/lfvenv/bin/python          # fixtures, tiny BPE
    python bin/check_llamafactory.py --lf-python /tmp/lfvenv/bin/python --real   # alpaca_en_demo, Qwen2.5

The LLaMA-Factory venv needs only ``pip install llamafactory==0.9.5`` (dataprep is put on its PYTHONPATH, and
only dataprep.emit / dataprep.train.guard are imported there). Data and the model are made here, with this venv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataprep.consumers import LLAMAFACTORY, LLAMAFACTORY_EVAL  # noqa: E402
from dataprep.emit import convert_folder  # noqa: E402

SHARED = Path(os.environ.get("DATAPREP_SHARED", ROOT.parent / "shared")) / "data"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true", "OMP_NUM_THREADS": "2"}

# Runs inside LLaMA-Factory's venv: its trainer, its dataloader, our audit and guard.
DRIVER = r"""
import json, sys, yaml
from transformers import TrainerCallback
from dataprep.train.guard import LabelGuard, SplitRows, audit_epoch, read_split, guard_callback
from pathlib import Path

cfg_path, folder, max_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = yaml.safe_load(open(cfg_path))
args["max_steps"] = max_steps  # the audit covers a whole epoch; training a few steps shows it runs

class Audit(TrainerCallback):
    def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
        audit = audit_epoch(SplitRows(read_split(Path(folder), "train")), train_dataloader)
        print("AUDIT " + json.dumps({**audit.__dict__, "exact": audit.exact}), flush=True)

from llamafactory.train.tuner import run_exp
run_exp(args=args, callbacks=[Audit(), guard_callback(folder)])
print("TRAINED", flush=True)
"""


def sh(*cmd: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def make_data(work: Path, real: bool) -> tuple[Path, Path]:
    """A default dataprep folder (tokenized here) and the tiny model it trains; returns (folder, model)."""
    dp = [sys.executable, "-m", "dataprep"]
    if real:
        source, tokenizer = SHARED / "llamafactory" / "alpaca_en_demo.json", SHARED / "tokenizers" / "qwen2.5"
    else:
        source, tokenizer = ROOT / "fixtures" / "data" / "alpaca.json", ROOT / "fixtures" / "tokenizers" / "tiny-bpe"
    normalized = sh(*dp, "normalize", source, "-q", check=True).stdout
    split = sh(*dp, "split", "-", "--val-size", "0.1", "--seed", "0", "-q", input=normalized, check=True).stdout
    folder = work / "default"
    sh(*dp, "tokenize", "-", "-o", folder, "--tokenizer", tokenizer, "-q", input=split, check=True)
    model = work / "model"
    code = ("import sys, torch; from transformers import AutoTokenizer, LlamaForCausalLM; "
            "from dataprep.train.model import tiny_causal_config; torch.manual_seed(0); "
            "tok = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "LlamaForCausalLM(tiny_causal_config(len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, "
            "eos_token_id=tok.eos_token_id)).save_pretrained(sys.argv[2]); tok.save_pretrained(sys.argv[2])")
    sh(sys.executable, "-c", code, folder / "tokenizer", model, check=True, cwd=ROOT)
    return folder, model


def config(folder: Path, model: Path, out: Path, *, dataset: bool, evaluate: bool, val_size: bool) -> str:
    text = LLAMAFACTORY.render(data=str(folder), model=str(model), output=str(out), longest=0)
    if not dataset:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("dataset:")) + "\n"
    if evaluate:
        eval_lines = LLAMAFACTORY_EVAL.splitlines(keepends=True)
        text += "".join(line for line in eval_lines if val_size or not line.startswith("val_size"))
    return text + "report_to: none\noverwrite_output_dir: true\n"


def run_case(lf_python: str, name: str, folder: Path, cfg: str, work: Path, max_steps: int) -> dict:
    path = work / f"{name}.yaml"
    path.write_text(cfg, encoding="utf-8")
    started = time.perf_counter()
    out = sh(lf_python, "-c", DRIVER, path, folder, max_steps, cwd=work,
             env={**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}, timeout=1800)
    seconds = time.perf_counter() - started
    audit = next((json.loads(line[6:]) for line in out.stdout.splitlines() if line.startswith("AUDIT ")), None)
    trained = "TRAINED" in out.stdout
    error = None
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1:] or "?")
    guard = next((line[line.index("label guard:"):] for line in out.stderr.splitlines() if "label guard:" in line),
                 None)  # a progress bar may share its line
    return {"case": name, "trained": trained, "error": error, "audit": audit, "guard": guard, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lf-python", required=True, help="python of a venv with llamafactory installed")
    parser.add_argument("--real", action="store_true", help="alpaca_en_demo + Qwen2.5 from ../shared/data")
    parser.add_argument("--max-steps", type=int, default=2)
    args = parser.parse_args()
    version = sh(args.lf_python, "-c", "import importlib.metadata as m; print(' '.join(f'{p} {m.version(p)}' for p in "
                 "('llamafactory', 'transformers', 'datasets', 'trl', 'torch')))").stdout.strip()
    print(f"LLaMA-Factory venv: {version}")
    with tempfile.TemporaryDirectory(prefix="check-lf-") as tmp:
        work = Path(tmp)
        folder, model = make_data(work, args.real)
        lf_folder = convert_folder(folder, work / "llamafactory", "llamafactory")
        manifest = json.loads((folder / "dataprep.json").read_text())
        print(f"data: {'alpaca_en_demo + Qwen2.5' if args.real else 'fixtures + tiny-bpe'}; train "
              f"{manifest['splits']['train']['rows']:,} rows, {manifest['splits']['train']['supervised_tokens']:,} "
              "supervised tokens")
        cases = [
            ("default layout, no dataset", folder, dict(dataset=False, evaluate=False, val_size=False)),
            ("default layout, dataset", folder, dict(dataset=True, evaluate=False, val_size=False)),
            ("llamafactory layout, eval without val_size", lf_folder, dict(dataset=True, evaluate=True,
                                                                          val_size=False)),
            ("llamafactory layout, the card's config", lf_folder, dict(dataset=True, evaluate=True, val_size=True)),
        ]
        for name, data, flags in cases:
            result = run_case(args.lf_python, name.replace(" ", "_").replace(",", ""), data,
                              config(data, model, work / "out", **flags), work, args.max_steps)
            audit = result["audit"]
            shown = ("audit: " + ("exact" if audit["exact"] else "NOT exact") +
                     f" ({audit['seen']}/{audit['rows']} rows, {audit['trained']:,}/{audit['targets']:,} targets, "
                     f"+{audit['extra']:,} -{audit['lost']:,})") if audit else "no audit"
            status = "trained" if result["trained"] else f"crashed: {result['error']}"
            print(f"- {name}: {status}; {shown}; {result['guard'] or 'guard: not reached'} "
                  f"[{result['seconds']:.0f}s]")


if __name__ == "__main__":
    main()
