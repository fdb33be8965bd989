#!/usr/bin/env bash
# Seed 003 (LLaMA-Efficient-Tuning SFT): a dataset_info.json entry, the `default` template ("A chat between a
# curious user..."), LoRA rank 8, cosine schedule, gradient accumulation, loss plot.
# Env: DATASET_INFO, DATASET, TOKENIZER, MODEL, OUT, STEPS.
set -euo pipefail
DATASET_INFO=${DATASET_INFO:-../shared/data/llamafactory/dataset_info.json}
DATASET=${DATASET:-alpaca_zh_demo}
TOKENIZER=${TOKENIZER:-fixtures/tokenizers/tiny-bpe}
OUT=${OUT:-out/llamafactory_lora}
mkdir -p "$OUT"
dataprep normalize --dataset-info "$DATASET_INFO" --dataset "$DATASET" \
  | dataprep split - --val-size "${VAL:-0.05}" --seed 42 \
  | dataprep tokenize - --tokenizer "$TOKENIZER" --template default --max-length "${MAX_LENGTH:-1024}" -o "$OUT/data"
dataprep train --data "$OUT/data" --model "${MODEL:-tiny}" -o "$OUT/run" --lora-r 8 --scheduler cosine \
  --batch-size 4 --grad-accum 8 --lr "${LR:-5e-5}" --max-steps "${STEPS:-100}" --eval-steps "${EVAL_STEPS:-50}"
