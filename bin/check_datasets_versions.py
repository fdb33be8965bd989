#!/usr/bin/env python3
"""Which datasets releases open a tokenized folder: as ``save_to_disk`` writes it, and as
``dataprep.emit.write_dataset_dict`` writes it (the features in the form datasets 3.x knows).

    python bin/check_datasets_versions.py /tmp/ds36/bin/python /tmp/lfvenv/bin/python ...

Each python is another venv with some datasets release (nothing of dataprep is imported there). The folders are
made here from the fixtures with the tiny BPE tokenizer; each venv loads both and compares every row with the
rows this venv reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402

from dataprep.emit import write_dataset_dict  # noqa: E402

LOAD = r"""
import json, sys, datasets
out = {"version": datasets.__version__}
for name in ("save_to_disk", "write_dataset_dict"):
    try:
        d = datasets.load_from_disk(sys.argv[1] + "/" + name)
        out[name] = {s: d[s][:] for s in d}
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
print(json.dumps(out))
"""


def main() -> None:
    pythons = sys.argv[1:] or [sys.executable]
    with tempfile.TemporaryDirectory(prefix="check-ds-") as tmp:
        work = Path(tmp)
        dp = [sys.executable, "-m", "dataprep"]
        normalized = subprocess.run([*dp, "normalize", str(ROOT / "fixtures" / "data" / "alpaca.json"), "-q"],
                                    capture_output=True, text=True, check=True).stdout
        subprocess.run([*dp, "tokenize", "-", "-o", str(work / "save_to_disk"), "--tokenizer",
                        str(ROOT / "fixtures" / "tokenizers" / "tiny-bpe"), "-q"], input=normalized, text=True,
                       check=True)
        source = datasets.load_from_disk(str(work / "save_to_disk"))
        parts = {}
        for split in source:
            table = source[split].data.table
            schema = table.schema.remove_metadata()
            parts[split] = work / f"{split}.arrow"
            with pa.ipc.new_stream(str(parts[split]), schema) as sink:
                for batch in table.to_batches():
                    sink.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
        write_dataset_dict(work / "write_dataset_dict", parts, {s: "check" for s in parts})
        expected = {s: source[s][:] for s in source}
        print(f"reference: datasets {datasets.__version__} reading save_to_disk")
        for python in pythons:
            out = subprocess.run([python, "-c", LOAD, str(work)], capture_output=True, text=True)
            if out.returncode:
                print(f"- {python}: failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            result = json.loads(out.stdout)
            shown = []
            for name in ("save_to_disk", "write_dataset_dict"):
                got = result[name]
                shown.append(f"{name}: " + (got if isinstance(got, str) else
                                            "same rows" if got == expected else "DIFFERENT rows"))
            print(f"- datasets {result['version']}: " + "; ".join(shown))


if __name__ == "__main__":
    main()
