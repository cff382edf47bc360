#!/usr/bin/env bash
# On the GPU machine, in the repository root, once the parts of .dev1-.dev5 (bench/device/repack.py)
# are gathered in /tmp/parts (bench/device/README.md): install DALI and the loaders'
# dependencies into /tmp/site, then run the GPU loader checks (bench/device/gpu_checks.py) and
# the loader benchmark (the loader vs a bare reader -> mixed decode -> normalise pipeline, same
# run). Results go to $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/parts "$OUT"
cd /tmp/parts
# bench/device/repack.py's five parts: one tar of every wheel (DALI without other Pythons'
# modules, its dependencies and .devwheels' packages).
cat bundle.part* | tar -x && rm bundle.part*
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/parts/*.whl
cd - >/dev/null
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, nvidia.dali as d; print('torch', torch.__version__, 'dali', d.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
# Correctness first (DALI mixed vs the CPU loader, corrupt skip, resume), then the benchmark.
python3 bench/device/gpu_checks.py --out "$OUT/gpu-checks.json" 2>&1 | tail -40 || true
# GPU-sized: 2048 samples x 4 views at 224 px, batches of 128 (8.2k images/s is what a ViT-S
# step over 6 views consumes on an H200; the bare mixed pipeline ran ~39k images/s there).
python3 bench/bench_loaders.py --gpu --samples 2048 --per-shard 256 --batch-size 128 --steps 48 \
  --out "$OUT/loaders-gpu.json" 2>&1 | tail -60
