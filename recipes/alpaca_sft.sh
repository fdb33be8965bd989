#!/usr/bin/env bash
# Seed 004 (Alpaca SFT notebook): drop short answers, build messages, stratify by length bucket, tokenize with
# the `<|user|>`/`<|assistant|>` + eos layout, train. Env: DATA, TOKENIZER, MODEL, OUT, VAL, STEPS.
set -euo pipefail
DATA=${DATA:-fixtures/data/alpaca.json}
TOKENIZER=${TOKENIZER:-fixtures/tokenizers/tiny-bpe}
OUT=${OUT:-out/alpaca_sft}
mkdir -p "$OUT"
dataprep normalize "$DATA" --from alpaca --rejects "$OUT/rejects.normalize.jsonl" \
  | dataprep filter - --min-response-chars 6 --rejects "$OUT/rejects.filter.jsonl" \
  | dataprep split - --val-size "${VAL:-0.02}" --seed 42 --bucket-by words --bucket-width 200 --max-bucket 4 \
  | dataprep tokenize - --tokenizer "$TOKENIZER" --template plain --max-length "${MAX_LENGTH:-2048}" -o "$OUT/data"
dataprep train --data "$OUT/data" --model "${MODEL:-tiny}" -o "$OUT/run" --max-steps "${STEPS:-100}" \
  --batch-size 4 --grad-accum 2 --lr "${LR:-2e-4}" --seed 42
