#!/usr/bin/env python
"""Benchmark the encoders of ``dataprep.encoders`` on rendered chat texts: HF ``tokenizers`` against the fast
backends, the cost of token start positions, load and start-up times.

Texts, rendered with the Qwen2.5 tokenizer's own chat template (light loader, no transformers):

* ``alpaca``: the 52,002-row set of ``bin/make_bench_data.py``, normalized, as ``bin/bench_tokenize.py`` builds it;
* ``long``: LIMA plus the glaive tool-call demos (English and Chinese): long, multi-turn, tool calls.

Per set, in batches of ``--batch-size`` (tokenize's default 1024), with ``--threads`` Rust threads (the variables
are set before any tokenizer library is imported), medians of ``--runs`` runs, each encoder's time to flat int32
ids + int64 row offsets (the ``Encoder.encode`` contract), its ratio to HF ``encode_batch``, and whether its ids
equal HF's on every text:

* HF ``encode_batch`` (computes offsets) and ``encode_batch_fast`` (does not);
* fastokens ``encode_batch`` (Encoding objects) and ``encode_batch_flat`` (two buffers);
* gigatoken ``encode_batch_list`` and ``encode_batch`` (awkward array), when gigatoken is installed;
* token starts: ``TokenStarts.compute`` alone (the vocabulary byte-length derivation), ``HFEncoder`` and
  ``FastEncoder.encode_with_starts`` (ids + starts, reference offsets for unproven rows), against HF offsets
  turned into a starts array (what tokenize needs without the derivation).

Then load times per library and the start-up of a data-prep process (import + open the tokenizer + build the
encoder) with the light loader and with transformers' AutoTokenizer, and whether torch was imported.

Usage: python bin/bench_encoders.py [--runs 3] [--threads 2] [--rows 52002] [--shared DIR] [--sets alpaca,long]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> str:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "2"


THREADS = _threads_from_argv()
for _var in ("RAYON_RS_NUM_THREADS", "RAYON_NUM_THREADS", "FASTOKENS_BPE_THREADS"):
    os.environ[_var] = THREADS

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_SHARED = Path(os.environ.get("DATAPREP_SHARED", REPO.parent / "shared"))
LONG_SOURCES = ("llamafactory/lima.json", "llamafactory/glaive_toolcall_en_demo.json",
                "llamafactory/glaive_toolcall_zh_demo.json")

Flat = tuple[np.ndarray, np.ndarray]


def normalize(raw: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "dataprep", "normalize", str(raw), "-o", str(out), "-q"], check=True,
                   cwd=REPO)
    return out


def render_all(canonical: list[Path], tokenizer: object) -> tuple[list[str], int]:
    """Rendered texts of every record the template renders, and how many it refused (their reasons aside)."""
    from dataprep.io import read_records
    from dataprep.records import RecordError
    from dataprep.template import load_template

    template = load_template(None, tokenizer)
    texts, refused = [], 0
    for path in canonical:
        for record in read_records(str(path)):
            try:
                texts.append(template.render(record).text)
            except RecordError:
                refused += 1
    return texts, refused


def build_sets(tmp: Path, shared: Path, rows: int, wanted: list[str], tokenizer: object) -> dict[str, list[str]]:
    sets = {}
    if "alpaca" in wanted:
        raw = tmp / "alpaca.json"
        subprocess.run([sys.executable, str(REPO / "bin" / "make_bench_data.py"), str(raw), "--shared", str(shared),
                        "--rows", str(rows)], check=True, capture_output=True)
        texts, refused = render_all([normalize(raw, tmp / "alpaca.jsonl")], tokenizer)
        sets["alpaca"] = texts
        print(f"alpaca: {len(texts):,} texts, {sum(map(len, texts)) / 1e6:.1f} M chars ({refused} not rendered)")
    if "long" in wanted:
        paths = [normalize(shared / "data" / name, tmp / f"long{i}.jsonl") for i, name in enumerate(LONG_SOURCES)]
        texts, refused = render_all(paths, tokenizer)
        sets["long"] = texts
        print(f"long (LIMA + glaive tool calls): {len(texts):,} texts, {sum(map(len, texts)) / 1e6:.1f} M chars, "
              f"median {statistics.median(map(len, texts)):,.0f} chars ({refused} not rendered)")
    return sets


def batched(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def concat(parts: list[Flat]) -> Flat:
    ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    offsets = [np.zeros(1, np.int64)]
    base = 0
    for _, off in parts:
        offsets.append(off[1:] + base)
        base += int(off[-1])
    return ids.astype(np.int32, copy=False), np.concatenate(offsets)


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def encoders_for(path: Path) -> dict[str, Callable[[list[str]], Flat]]:
    """name → function from one batch of texts to flat ids (the Encoder.encode contract)."""
    from tokenizers import Tokenizer

    from dataprep.encoders import flat_from_lists

    path = path / "tokenizer.json"
    hf = Tokenizer.from_file(str(path))
    out: dict[str, Callable[[list[str]], Flat]] = {
        "HF encode_batch": lambda b: flat_from_lists([e.ids for e in hf.encode_batch(b, add_special_tokens=False)]),
        "HF encode_batch_fast": lambda b: flat_from_lists(
            [e.ids for e in hf.encode_batch_fast(b, add_special_tokens=False)]),
    }
    try:
        import fastokens
    except ImportError:
        print("fastokens not installed: skipped (pip install 'dataprep[fast]')")
    else:
        ft = fastokens.Tokenizer.from_file(str(path))

        def ft_flat(b: list[str]) -> Flat:
            ids, offsets = ft.encode_batch_flat(b, add_special_tokens=False)
            return (np.frombuffer(ids, np.uint32).astype(np.int32),
                    np.frombuffer(offsets, np.uint64).astype(np.int64))

        out["fastokens encode_batch"] = lambda b: flat_from_lists([e.ids for e in ft.encode_batch(b)])
        out["fastokens encode_batch_flat"] = ft_flat
    try:
        import gigatoken
    except ImportError:
        print("gigatoken not installed: skipped")
    else:
        gt = gigatoken.Tokenizer(str(path))

        def gt_awkward(b: list[str]) -> Flat:
            import awkward as ak

            arr = gt.encode_batch(b)
            counts = ak.to_numpy(ak.num(arr)).astype(np.int64)
            offsets = np.concatenate(([0], np.cumsum(counts)))
            return ak.to_numpy(ak.flatten(arr)).astype(np.int32), offsets

        out["gigatoken encode_batch_list"] = lambda b: flat_from_lists(gt.encode_batch_list(b))
        out["gigatoken encode_batch (awkward)"] = gt_awkward
    return out


def bench_set(name: str, texts: list[str], tok_path: Path, runs: int, batch_size: int) -> None:
    from tokenizers import Tokenizer

    from dataprep import encoders as en

    batches = batched(texts, batch_size)
    print(f"\n== {name}: {len(texts):,} texts in {len(batches)} batches of {batch_size}, {THREADS} threads, "
          f"median of {runs} ==")
    results: dict[str, float] = {}
    reference: Flat | None = None
    for label, fn in encoders_for(tok_path).items():
        seconds, parts = timed(lambda fn=fn: [fn(b) for b in batches], runs)
        flat = concat(parts)  # type: ignore[arg-type]
        if reference is None:
            reference = flat
        same = en.mismatched_rows(flat, reference) == []
        results[label] = seconds
        print(f"{label:34s} {seconds:8.3f} s  {results['HF encode_batch'] / seconds:7.1f}x  "
              f"ids identical to HF on every text: {same}", flush=True)
    assert reference is not None
    backend = Tokenizer.from_file(str(tok_path / "tokenizer.json"))
    hf = en.HFEncoder(backend)
    assert hf.token_starts is not None
    ids_by_batch = []
    for b in batches:
        ids_by_batch.append(hf.encode(b))
    seconds, oks = timed(lambda: [hf.token_starts.compute(b, *ids_by_batch[i])[1]  # type: ignore[union-attr]
                                  for i, b in enumerate(batches)], runs)
    proven = int(sum(int(ok.sum()) for ok in oks))  # type: ignore[union-attr]
    print(f"{'starts: TokenStarts.compute alone':34s} {seconds:8.3f} s  rows proven {proven:,}/{len(texts):,}")
    seconds, _ = timed(lambda: [hf.reference_rows(b) for b in batches], runs)
    print(f"{'starts: HF encode_batch offsets':34s} {seconds:8.3f} s  (ids + offsets → per-row starts arrays)")
    seconds, outs = timed(lambda: [hf.encode_with_starts(b) for b in batches], runs)
    print(f"{'HFEncoder.encode_with_starts':34s} {seconds:8.3f} s  {results['HF encode_batch'] / seconds:7.1f}x")
    check_starts(outs, batches, hf)  # type: ignore[arg-type]
    if en.fast_available():
        fast = en.FastEncoder(backend, hf)
        seconds, outs = timed(lambda: [fast.encode_with_starts(b) for b in batches], runs)
        fallback = sum(o.reference_rows for o in outs)  # type: ignore[union-attr]
        print(f"{'FastEncoder.encode_with_starts':34s} {seconds:8.3f} s  {results['HF encode_batch'] / seconds:7.1f}x  "
              f"({fallback} rows took reference offsets)")
        assert en.mismatched_rows(concat([(o.ids, o.offsets) for o in outs]), reference) == []  # type: ignore[union-attr]


def check_starts(outs: list[object], batches: list[list[str]], hf: object) -> None:
    """Every start equals HF's own offset (the whole set: this is the exactness claim, not a sample)."""
    bad = 0
    for out, batch in zip(outs, batches, strict=True):
        ref = hf.reference_rows(batch)  # type: ignore[attr-defined]
        for i, (_, starts) in enumerate(ref):
            a, b = out.offsets[i], out.offsets[i + 1]  # type: ignore[attr-defined]
            bad += not np.array_equal(out.starts[a:b], starts)  # type: ignore[attr-defined]
    print(f"{'':34s} starts equal HF offsets on every row: {bad == 0} ({bad} rows differ)")


def load_times(tok_path: Path, runs: int) -> None:
    print(f"\n== loading {tok_path.name}/tokenizer.json, median of {runs} ==")
    code = {
        "tokenizers": "from tokenizers import Tokenizer as T; T.from_file(P)",
        "fastokens": "import fastokens; fastokens.Tokenizer.from_file(P)",
        "gigatoken": "import gigatoken; gigatoken.Tokenizer(P)",
    }
    for name, stmt in code.items():
        script = ("import time, sys; P = sys.argv[1]; t = time.perf_counter(); " + stmt +
                  "; print(time.perf_counter() - t)")
        samples = []
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", script, str(tok_path / "tokenizer.json")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                break
            samples.append(float(done.stdout.strip().splitlines()[-1]))
        if samples:
            print(f"{name:34s} {statistics.median(samples):8.3f} s (import excluded)")


STARTUP = """
import sys, time
t = time.perf_counter()
import dataprep.cli, dataprep.tokenize, dataprep.template, dataprep.encoders
imported = time.perf_counter() - t
from dataprep import tokenizer_io
tok = (tokenizer_io.open_tokenizer if sys.argv[2] == "light" else tokenizer_io.load_tokenizer)(sys.argv[1])
backend = tok._tokenizer
dataprep.template.load_template(None, tok)
dataprep.encoders.AutoEncoder(backend)
total = time.perf_counter() - t
print(imported, total, int("torch" in sys.modules), int("transformers" in sys.modules))
"""


def startup(tok_path: Path, runs: int) -> None:
    print(f"\n== start-up of a data-prep process (imports + tokenizer + template + encoder), median of {runs} ==")
    for mode in ("light", "transformers"):
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", STARTUP, str(tok_path), mode], capture_output=True,
                                  text=True, cwd=REPO, check=True)
            wall = time.perf_counter() - start
            imported, total, torch, transformers = done.stdout.split()
            samples.append((wall, float(imported), float(total), torch, transformers))
        wall = statistics.median(s[0] for s in samples)
        total = statistics.median(s[2] for s in samples)
        print(f"{mode:14s} process wall {wall:6.2f} s, in-process {total:6.2f} s (dataprep imports "
              f"{statistics.median(s[1] for s in samples):.2f} s); torch imported: {samples[0][3] == '1'}, "
              f"transformers imported: {samples[0][4] == '1'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", default=THREADS, help="Rust threads for every library (default 2)")
    parser.add_argument("--rows", type=int, default=52_002)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--tokenizer", type=Path, default=None, help="default: SHARED/data/tokenizers/qwen2.5")
    parser.add_argument("--sets", default="alpaca,long")
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    from dataprep.tokenizer_io import open_tokenizer

    tok_path = args.tokenizer or args.shared / "data" / "tokenizers" / "qwen2.5"
    tokenizer = open_tokenizer(str(tok_path))
    print(f"tokenizer {tok_path} ({type(tokenizer).__name__}); cpus {os.cpu_count()}; threads {THREADS}; "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-encoders-") as tmp:
        sets = build_sets(Path(tmp), args.shared, args.rows, args.sets.split(","), tokenizer)
    for name, texts in sets.items():
        bench_set(name, texts, tok_path, args.runs, args.batch_size)
    if not args.skip_startup:
        load_times(tok_path, args.runs)
        startup(tok_path, args.runs)
    print(json.dumps({"load_average_end": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
