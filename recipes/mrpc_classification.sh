#!/usr/bin/env bash
# Seed 002 (GLUE MRPC): sentence-pair classification with token_type_ids, accuracy and F1 on validation.
# Env: TRAIN, DEV, TOKENIZER, MODEL, OUT, STEPS.
set -euo pipefail
TRAIN=${TRAIN:-fixtures/data/pairs.tsv}
DEV=${DEV:-fixtures/data/pairs.tsv}
TOKENIZER=${TOKENIZER:-fixtures/tokenizers/tiny-wordpiece}
OUT=${OUT:-out/mrpc}
mkdir -p "$OUT"
dataprep tokenize "train=$TRAIN" "validation=$DEV" --task classification --text '#1 String' \
  --text-pair '#2 String' --label Quality --tokenizer "$TOKENIZER" --max-length 128 -o "$OUT/data"
dataprep train --data "$OUT/data" --model "${MODEL:-tiny}" -o "$OUT/run" --max-steps "${STEPS:-100}" \
  --eval-steps "${EVAL_STEPS:-50}" --batch-size 16
