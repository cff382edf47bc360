#!/usr/bin/env bash
# On the GPU machine, after check.sh installed DALI and the carried wheels into /tmp/site (same
# warm machine, the call right after): the training step with the real DALI loader (mixed
# decoding) against the same step on in-memory tensors, eager and torch.compile, ViT-S/16 at
# 224 px over 3 views, bf16 autocast. Writes $OUT/train-gpu.json (bench/bench_train.py).
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu-train.txt"
python3 bench/bench_train.py --device cuda --backbone vit_small_patch16_224 --size 224 \
  --views 3 --batch-size 128 --samples 2048 --workers 16 --steps 30 --warmup 8 --compile \
  --out "$OUT/train-gpu.json" 2>&1 | tail -40
