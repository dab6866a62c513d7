#!/usr/bin/env bash
# The trainer's GPU checks (issue 5), from the repository root after `cargo build --release --bins`:
#   trainer/scripts/gpu-check.sh [OUT]      (OUT defaults to /tmp/trainer-gpu-check)
# 1. loader benchmark (decode + shuffle + collate, no model) at seq 512 on 1..N threads;
# 2. ELECTRA-base RTD updates at batch 32, seq 512 (seq/s, MFU, data-wait) and the PyTorch +
#    transformers reference step (scripts/bench/reference_rtd_step.py) on the same GPU;
# 3. a tiny RTD run long enough to beat the all-"original" validation baseline;
# 4. a masked-LM run on CUDA (pinned-memory path with masked positions).
# Needs ../shared/data (or FAST_ELECTRA_SHARED_DATA) and the torch 2.11 Python.
set -euo pipefail
OUT=${1:-/tmp/trainer-gpu-check}
SHARED=${FAST_ELECTRA_SHARED_DATA:-../shared/data}
BIN=${CARGO_TARGET_DIR:-target}/release
T=$BIN/trainer; P=$BIN/preprocess
TOK=$SHARED/tokenizers/bert-base-uncased/tokenizer.json
export LD_LIBRARY_PATH=$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))")
rm -rf "$OUT"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc

echo "== data: seq 512 (all of the corpus) and seq 64 (20 speeches)"
$P tokenize --input "$SHARED/corpus/sotu.jsonl" "$SHARED/corpus/moby-dick.txt" --tokenizer "$TOK" \
  --out "$OUT/tok512" --max-seq-len 512 --row-group-rows 256 2>&1 | tail -1
head -n 20 "$SHARED/corpus/sotu.jsonl" > "$OUT/sotu-20.jsonl"
$P tokenize --input "$OUT/sotu-20.jsonl" --tokenizer "$TOK" --out "$OUT/tok64" --max-seq-len 64 \
  --validation-fraction 0.2 --row-group-rows 64 2>&1 | tail -1
$T --objective mlm --shards "$OUT/tok64" --run-dir "$OUT/aux" --model tiny --batch-size 16 \
  --max-steps 12 --lr 2e-3 --warmup-steps 2 --log-every 4 --device cuda 2>&1 | tail -1
$P --epoch 0 --epochs 2 --tokens "$OUT/tok512" --aux-model "$OUT/aux/export" --out "$OUT/ep512" --device cuda 2>&1 | tail -1
for e in 0 1; do
  $P --epoch $e --epochs 2 --tokens "$OUT/tok64" --aux-model "$OUT/aux/export" --out "$OUT/ep64" --device cuda 2>&1 | tail -1
done
$P --epoch 1 --epochs 2 --tokens "$OUT/tok64/validation" --aux-model "$OUT/aux/export" --out "$OUT/val64" --device cuda 2>&1 | tail -1

echo "== 1. loader benchmark, seq 512"
for t in 1 2 4 8 16; do $T loader-bench --shards "$OUT/ep512/epoch-000" --threads $t; done

echo "== 2. ELECTRA-base RTD, batch 32, seq 512; then the reference"
$T --shards "$OUT/ep512/epoch-000" --run-dir "$OUT/base" --model base --batch-size 32 --max-steps 90 \
  --warmup-steps 10 --log-every 30 --checkpoint-every 100000 --device cuda 2>&1 | tail -1
cat "$OUT/base/metrics.jsonl"
python3 scripts/bench/reference_rtd_step.py --model base --batch-size 32 --seq-len 512 2>&1 | tail -2

echo "== 3. tiny RTD until it beats the all-original baseline"
$T --shards "$OUT/ep64/epoch-000" "$OUT/ep64/epoch-001" --run-dir "$OUT/learn" --model tiny \
  --batch-size 16 --lr 1e-3 --warmup-steps 100 --max-steps 3000 --repeat-last-epoch --log-every 250 \
  --validation "$OUT/val64/epoch-001" --validate-every 500 --checkpoint-every 100000 --device cuda 2>&1 | tail -1
grep validation "$OUT/learn/metrics.jsonl"

echo "== 4. masked LM (small) on CUDA"
$T --objective mlm --shards "$OUT/tok512" --run-dir "$OUT/mlm" --model small --batch-size 32 \
  --max-steps 40 --warmup-steps 5 --log-every 20 --checkpoint-every 100000 --device cuda 2>&1 | tail -1
cat "$OUT/mlm/metrics.jsonl"
