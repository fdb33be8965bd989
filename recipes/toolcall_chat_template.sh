#!/usr/bin/env bash
# Tool-calling SFT with the tokenizer's own chat template (glaive sharegpt data with function_call/observation
# turns and a tools column), checked with render and inspect before training. Env: DATA, TOKENIZER, OUT, STEPS.
set -euo pipefail
DATA=${DATA:-fixtures/data/sharegpt.json}
TOKENIZER=${TOKENIZER:-fixtures/tokenizers/tiny-bpe}
OUT=${OUT:-out/toolcall}
mkdir -p "$OUT"
dataprep normalize "$DATA" --from sharegpt -o "$OUT/canonical.jsonl"
dataprep render "$OUT/canonical.jsonl" --tokenizer "$TOKENIZER" -o "$OUT/rendered.jsonl"
dataprep split "$OUT/canonical.jsonl" --val-size "${VAL:-0.2}" --seed 42 \
  | dataprep tokenize - --tokenizer "$TOKENIZER" --max-length "${MAX_LENGTH:-2048}" -o "$OUT/data"
dataprep inspect "$OUT/data" --index 0 > "$OUT/inspect.txt"
dataprep train --data "$OUT/data" --model "${MODEL:-tiny}" -o "$OUT/run" --max-steps "${STEPS:-100}"
