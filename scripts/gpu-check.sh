#!/usr/bin/env bash
# Every GPU check in one go, for a lent GPU machine (torch 2.11 Python, no Rust there).
# Prepare here:  scripts/gpu-check.sh --prepare   (strips the release binaries into .gpu/ and
# copies the tokenizer and corpus from scripts/fetch-data's folder); on the device:
# `bash scripts/gpu-check.sh` with `.gpu` carried (`--corruption-only` stops after the
# preprocessor's checks; `--fused-only` makes the little data it needs and runs only the checks
# of the hand-written step and the sampler kernel: docs/fused-step.md).
# Prints one figure per check; the full log goes to $OUT/gpu-check.log.
set -uo pipefail
if [ "${1:-}" = "--prepare" ]; then
  set -e
  SHARED=$(scripts/fetch-data)
  BIN="${CARGO_TARGET_DIR:-target}/release"
  mkdir -p .gpu
  for b in preprocess trainer; do strip -o .gpu/$b "$BIN/$b"; done
  strip -o .gpu/bench_encoder "$BIN/examples/bench_encoder"
  cp "$SHARED/tokenizers/bert-base-uncased/tokenizer.json" .gpu/
  gzip -c "$SHARED/corpus/sotu.jsonl" > .gpu/sotu.jsonl.gz
  cp "$SHARED/corpus/moby-dick.txt" .gpu/
  du -sh .gpu; exit 0
fi
G=.gpu; W=/tmp/gpu-work; OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$W" "$OUT"; exec > >(tee "$OUT/gpu-check.log") 2>&1
export LD_LIBRARY_PATH=$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))")
P=$G/preprocess; T=$G/trainer

# The hand-written step (docs/fused-step.md): needs $W/tok512 and $W/ep512/epoch-000 and the tiny aux $W/aux.
fused_checks() {
  echo "== fused step: every kernel vs the tch reference on the GPU, whole-step gradients vs fp32 autograd (trainer fused-check), synchronised after every launch: a kernel fault names its kernel"
  FAST_ELECTRA_CUDA_SYNC=1 CUDA_LAUNCH_BLOCKING=1 timeout 200 $T fused-check --device cuda --model base \
    --batch-size 32 --seq-len 512 --sections kernels,step 2>&1 | grep -v '^$'
  echo "== fused step: forward+backward time, fused vs autograd; sampler kernel vs reference sampler and both against the exact probabilities (chi-square)"
  timeout 300 $T fused-check --device cuda --model base --batch-size 32 --seq-len 512 --sections timing,sampler 2>&1 | grep -v '^$'
  echo "== fused step: ELECTRA-base RTD update, batch 32 x 512: --step fused, --step autograd, then the PyTorch+transformers reference (seq/s, peak memory from nvidia-smi)"
  for step in fused autograd; do
    timeout 200 $T --shards $W/ep512/epoch-000 --run-dir $W/base-$step --model base --batch-size 32 --max-steps 90 \
      --warmup-steps 10 --log-every 15 --checkpoint-every 100000 --device cuda --no-verify-shards --step $step 2>&1 | tail -2
    echo "$step: $(tail -1 $W/base-$step/metrics.jsonl)"; cp $W/base-$step/metrics.jsonl $OUT/base-$step-metrics.jsonl
  done
  timeout 150 python3 scripts/bench/reference_rtd_step.py --model base --batch-size 32 --seq-len 512 2>&1 | tail -2
  echo "== fused step: ELECTRA-large RTD update, batch 32 x 512: fused, autograd, reference"
  for step in fused autograd; do
    timeout 250 $T --shards $W/ep512/epoch-000 --run-dir $W/large-$step --model large --batch-size 32 --max-steps 40 \
      --warmup-steps 5 --log-every 10 --checkpoint-every 100000 --device cuda --no-verify-shards --repeat-last-epoch --step $step 2>&1 | tail -2
    echo "$step: $(tail -1 $W/large-$step/metrics.jsonl)"
  done
  timeout 200 python3 scripts/bench/reference_rtd_step.py --model large --batch-size 32 --seq-len 512 2>&1 | tail -2
  echo "== fused step: preprocess --epoch 1 of the seq-512 shards, --sampler kernel vs reference (pipeline times)"
  for smp in reference kernel; do
    timeout 200 $P --epoch 1 --epochs 2 --tokens $W/tok512 --aux-model $W/aux/export --out $W/ep512-$smp --device cuda \
      --batch-size 128 --sampler $smp --profile-batches 2>&1 | tail -4
  done
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
gunzip -c $G/sotu.jsonl.gz > $W/sotu.jsonl

if [ "${1:-}" = "--fused-only" ]; then
  $P tokenize --input $W/sotu.jsonl $G/moby-dick.txt --tokenizer $G/tokenizer.json --out $W/tok512 --max-seq-len 512 --row-group-rows 256 2>&1 | tail -1
  head -n 20 $W/sotu.jsonl > $W/sotu-20.jsonl
  $P tokenize --input $W/sotu-20.jsonl --tokenizer $G/tokenizer.json --out $W/tok64 --max-seq-len 64 --row-group-rows 64 2>&1 | tail -1
  $T --objective mlm --shards $W/tok64 --run-dir $W/aux --model tiny --batch-size 16 --max-steps 12 \
    --lr 2e-3 --warmup-steps 2 --log-every 4 --device cuda 2>&1 | tail -1
  $P --epoch 0 --epochs 2 --tokens $W/tok512 --aux-model $W/aux/export --out $W/ep512 --device cuda --batch-size 128 2>&1 | tail -2
  fused_checks
  echo "== done (the fused-step checks only)"; exit 0
fi

echo "== tokenize SOTU+Moby at 512: 1 thread, all cores"
$P tokenize --input $W/sotu.jsonl $G/moby-dick.txt --tokenizer $G/tokenizer.json --out $W/tok1 --max-seq-len 512 --threads 1 2>&1 | tail -1
$P tokenize --input $W/sotu.jsonl $G/moby-dick.txt --tokenizer $G/tokenizer.json --out $W/tok512 --max-seq-len 512 --row-group-rows 256 2>&1 | tail -1

echo "== corruption: ours vs reference (4-layer base-width aux, seq 512, batch 128), twice each, alternating"
for run in 1 2; do
  timeout 150 $P bench --device cuda --preset base --seq-len 512 --batch-size 128 --batches 20 --warmup 5 2>&1 | tail -4
  timeout 150 python3 scripts/bench/reference_corrupt.py --batch-size 128 --seq-len 512 2>&1 | tail -2 | head -1
done

echo "== preprocess --epoch 0 end to end (reader, model, Parquet writer), 4-layer base-width aux, 16 x SOTU at 512"
for i in $(seq 16); do cat $W/sotu.jsonl; done > $W/sotu16.jsonl
$P tokenize --input $W/sotu16.jsonl --tokenizer $G/tokenizer.json --out $W/tok16 --max-seq-len 512 2>&1 | tail -1
printf '{"model_type":"electra","architectures":["ElectraForMaskedLM"],"vocab_size":30522,"hidden_size":768,"embedding_size":768,"num_hidden_layers":4,"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512}' > $W/aux4.json
$T --objective mlm --shards $W/tok16 --run-dir $W/aux4 --model $W/aux4.json --batch-size 8 --max-steps 2 \
  --warmup-steps 1 --log-every 1 --checkpoint-every 100000 --device cuda --no-verify-shards 2>&1 | tail -1
# Defaults (batch 128; on CUDA 4 encoding threads), then again with the per-stage profile.
timeout 200 $P --epoch 0 --epochs 10 --tokens $W/tok16 --aux-model $W/aux4/export --out $W/ep16 --device cuda 2>&1 | tail -3
timeout 200 $P --epoch 1 --epochs 10 --tokens $W/tok16 --aux-model $W/aux4/export --out $W/ep16 --device cuda --profile-batches 2>&1 | tail -4

if [ "${1:-}" = "--corruption-only" ]; then echo "== done (corruption checks only)"; exit 0; fi

echo "== encoder forward+backward (bench_encoder, base, batch 8 x 128 and batch 32 x 512)"
timeout 100 $G/bench_encoder --device cuda --preset base --warmup 3 --iters 20 2>&1 | tail -3
timeout 100 $G/bench_encoder --device cuda --preset base --batch 32 --seq 512 --warmup 3 --iters 10 2>&1 | tail -3

echo "== data for the trainer: tiny aux MLM on CUDA, epoch 0 of seq-512 shards, seq-64 epochs"
head -n 20 $W/sotu.jsonl > $W/sotu-20.jsonl
$P tokenize --input $W/sotu-20.jsonl --tokenizer $G/tokenizer.json --out $W/tok64 --max-seq-len 64 \
  --validation-fraction 0.2 --row-group-rows 64 2>&1 | tail -1
$T --objective mlm --shards $W/tok64 --run-dir $W/aux --model tiny --batch-size 16 --max-steps 12 \
  --lr 2e-3 --warmup-steps 2 --log-every 4 --device cuda 2>&1 | tail -1
$P --epoch 0 --epochs 2 --tokens $W/tok512 --aux-model $W/aux/export --out $W/ep512 --device cuda --batch-size 128 2>&1 | tail -2
for e in 0 1; do $P --epoch $e --epochs 2 --tokens $W/tok64 --aux-model $W/aux/export --out $W/ep64 --device cuda 2>&1 | tail -1; done
$P --epoch 1 --epochs 2 --tokens $W/tok64/validation --aux-model $W/aux/export --out $W/val64 --device cuda 2>&1 | tail -1

echo "== loader benchmark (epoch shards, seq 512)"
for t in 1 4 16; do $T loader-bench --shards $W/ep512/epoch-000 --threads $t 2>&1 | tail -1; done

echo "== ELECTRA-base RTD step, batch 32, seq 512: ours, then the PyTorch+transformers reference"
timeout 200 $T --shards $W/ep512/epoch-000 --run-dir $W/base --model base --batch-size 32 --max-steps 90 \
  --warmup-steps 10 --log-every 15 --checkpoint-every 100000 --device cuda --no-verify-shards 2>&1 | tail -2
cat $W/base/metrics.jsonl; cp $W/base/metrics.jsonl $OUT/base-metrics.jsonl
timeout 150 python3 scripts/bench/reference_rtd_step.py --model base --batch-size 32 --seq-len 512 2>&1 | tail -2

fused_checks

echo "== tiny RTD run on CUDA until it beats the all-original baseline"
timeout 150 $T --shards $W/ep64/epoch-000 $W/ep64/epoch-001 --run-dir $W/learn --model tiny \
  --batch-size 16 --lr 1e-3 --warmup-steps 100 --max-steps 3000 --repeat-last-epoch --log-every 500 \
  --validation $W/val64/epoch-001 --validate-every 1000 --checkpoint-every 100000 --device cuda 2>&1 | tail -1
grep validation $W/learn/metrics.jsonl
echo "== done"
