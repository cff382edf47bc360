#!/usr/bin/env bash
# On the GPU machine, after the five part calls (bench/device/README.md): the loader checks
# (check.sh) and the training step (train.sh) in one call. Each part has its own time limit and
# a failure in one does not stop the other; every log goes to $OUT, which comes back when the
# call runs past its limit but not when the machine dies (2026-12-05): separate calls for each
# step are the safer order, and a warm call costs seconds.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
timeout "${CHECK_S:-240}" bash bench/device/check.sh 2>&1 | tee "$OUT/check.log"
echo "check.sh exit ${PIPESTATUS[0]}" | tee -a "$OUT/check.log"
timeout "${TRAIN_S:-300}" bash bench/device/train.sh 2>&1 | tee "$OUT/train.log"
echo "train.sh exit ${PIPESTATUS[0]}" | tee -a "$OUT/train.log"
