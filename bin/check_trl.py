#!/usr/bin/env python3
"""TRL's SFTTrainer on a dataprep folder, in any venv that has TRL: which settings train on dataprep's labels.

For each setting and each layout (the default, and ``--emit-for trl``), it builds an ``SFTTrainer`` on a tiny
random model, pulls every batch of an epoch from its train dataloader and holds them against the folder
(``dataprep.train.guard.audit_epoch``). Settings a TRL version does not have are reported as such. Nothing is
trained: the batches are what the model would get.

    python bin/check_trl.py                                   # this venv's TRL, fixtures + tiny BPE
    python bin/check_trl.py --python /tmp/trl024/bin/python   # another venv's TRL (dataprep on its PYTHONPATH)
    python bin/check_trl.py --real                            # alpaca_en_demo + Qwen2.5 from ../shared/data
    python bin/check_trl.py --real --lima                     # LIMA, --max-length 4096: rows over 1,024 tokens

Only dataprep.emit and dataprep.train.guard are imported in the other venv; the data is made here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataprep.emit import convert_folder  # noqa: E402

SHARED = Path(os.environ.get("DATAPREP_SHARED", ROOT.parent / "shared")) / "data"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2",
           "TOKENIZERS_PARALLELISM": "false"}
SETTINGS = {
    "defaults": {},
    "completion_only_loss": {"completion_only_loss": True},
    "packing": {"packing": True},
    "packing_bfd_split": {"packing": True, "packing_strategy": "bfd_split"},
    "liger": {"use_liger_kernel": True},
    "packing+liger": {"packing": True, "use_liger_kernel": True},
    "padding_free": {"padding_free": True, "max_length": None},
    "max_length=None": {"max_length": None},
}

# Runs in the venv under test.
DRIVER = r"""
import dataclasses, json, sys, tempfile, warnings
warnings.filterwarnings("ignore")
import datasets, importlib.metadata as md
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer
from dataprep.train.guard import SplitRows, audit_epoch, read_split
from pathlib import Path

folders, model_dir, settings, tokenizer = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
fields = {f.name for f in dataclasses.fields(SFTConfig)}
print("VERSIONS " + json.dumps({p: md.version(p) for p in ("trl", "transformers", "datasets", "torch")}), flush=True)
for layout, folder in folders.items():
    rows = SplitRows(read_split(Path(folder), "train"))
    for name, config in settings.items():
        missing = sorted(set(config) - fields)
        if missing:
            print("RESULT " + json.dumps({"layout": layout, "setting": name, "status": f"no {missing[0]}"}), flush=True)
            continue
        try:
            with tempfile.TemporaryDirectory() as out:
                extra = {"bf16": False} if "bf16" in fields else {}
                args = SFTConfig(output_dir=out, per_device_train_batch_size=8, report_to="none", seed=0,
                                 **extra, **config)
                trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                                     train_dataset=datasets.load_from_disk(folder, keep_in_memory=True)["train"],
                                     processing_class=AutoTokenizer.from_pretrained(tokenizer))
                audit = audit_epoch(rows, trainer.get_train_dataloader())
            result = {**audit.__dict__, "exact": audit.exact, "status": "ok"}
        except Exception as exc:
            result = {"status": f"{type(exc).__name__}: {str(exc).splitlines()[0][:140]}"}
        print("RESULT " + json.dumps({"layout": layout, "setting": name, **result}), flush=True)
"""


def sh(*cmd: object, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def make_data(work: Path, real: bool, lima: bool) -> tuple[Path, Path, Path]:
    dp = [sys.executable, "-m", "dataprep"]
    extra: list[object] = []
    if lima:
        source, tokenizer, extra = SHARED / "llamafactory" / "lima.json", SHARED / "tokenizers" / "qwen2.5", [
            "--max-length", 4096]
    elif real:
        source, tokenizer = SHARED / "llamafactory" / "alpaca_en_demo.json", SHARED / "tokenizers" / "qwen2.5"
    else:
        source, tokenizer = ROOT / "fixtures" / "data" / "alpaca.json", ROOT / "fixtures" / "tokenizers" / "tiny-bpe"
    normalized = sh(*dp, "normalize", source, "-q", check=True).stdout
    split = sh(*dp, "split", "-", "--val-size", "0.1", "--seed", "0", "-q", input=normalized, check=True).stdout
    folder = work / "dataprep"
    sh(*dp, "tokenize", "-", "-o", folder, "--tokenizer", tokenizer, "-q", *extra, input=split, check=True)
    model = work / "model"
    code = ("import sys, torch; from transformers import AutoTokenizer, LlamaForCausalLM; "
            "from dataprep.train.model import tiny_causal_config; torch.manual_seed(0); "
            "tok = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "LlamaForCausalLM(tiny_causal_config(len(tok), pad_token_id=tok.pad_token_id, "
            "bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(sys.argv[2]); "
            "tok.save_pretrained(sys.argv[2])")
    sh(sys.executable, "-c", code, folder / "tokenizer", model, check=True, cwd=ROOT)
    return folder, model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="python of the venv whose TRL is checked")
    parser.add_argument("--real", action="store_true", help="alpaca_en_demo + Qwen2.5 from ../shared/data")
    parser.add_argument("--lima", action="store_true", help="LIMA + Qwen2.5, tokenized with --max-length 4096")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of: "
                        + ", ".join(SETTINGS))
    args = parser.parse_args()
    chosen = {name: SETTINGS[name] for name in args.settings.split(",")}
    with tempfile.TemporaryDirectory(prefix="check-trl-") as tmp:
        work = Path(tmp)
        # the other venv loads the source tokenizer: transformers 4.x cannot read one saved by 5.x
        folder, model, tokenizer = make_data(work, args.real or args.lima, args.lima)
        folders = {"dataprep": str(folder), "trl": str(convert_folder(folder, work / "trl", "trl"))}
        out = sh(args.python, "-c", DRIVER, json.dumps(folders), model, json.dumps(chosen), tokenizer, cwd=work,
                 env={**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}, timeout=3600)
        lines = out.stdout.splitlines()
        versions = next((json.loads(x[9:]) for x in lines if x.startswith("VERSIONS ")), None)
        if versions is None:
            sys.exit(f"the driver failed:\n{out.stderr[-3000:]}")
        manifest = json.loads((folder / "dataprep.json").read_text())
        train = manifest["splits"]["train"]
        print(" ".join(f"{k} {v}" for k, v in versions.items()) + f"; train split: {train['rows']:,} rows, "
              f"{train['supervised_tokens']:,} supervised tokens")
        print("| setting | layout | result |\n|---|---|---|")
        for line in lines:
            if not line.startswith("RESULT "):
                continue
            r = json.loads(line[7:])
            if r["status"] != "ok":
                shown = r["status"]
            elif r["exact"]:
                shown = f"exact ({r['trained']:,} targets)"
            else:
                shown = (f"NOT exact: +{r['extra']:,} masked tokens trained, -{r['lost']:,} supervised lost "
                         f"({r['lost'] / r['targets']:.0%}); {r['cut']} cut, {r['missing']} dropped, "
                         f"{r['changed']} relabelled, {r['unknown']} unknown")
            print(f"| {r['setting']} | {r['layout']} | {shown} |")
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
