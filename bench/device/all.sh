#!/usr/bin/env bash
# On the GPU machine, as the last of the five back-to-back calls (bench/device/README.md): the
# loader checks (check.sh) and the training step (train.sh) in one call, so that a session's
# 15 device minutes are not spent on a sixth start. Each part has its own time limit and a
# failure in one does not stop the other; every log goes to $OUT, which comes back even when
# the call runs past its limit.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
timeout "${CHECK_S:-240}" bash bench/device/check.sh 2>&1 | tee "$OUT/check.log"
echo "check.sh exit ${PIPESTATUS[0]}" | tee -a "$OUT/check.log"
timeout "${TRAIN_S:-300}" bash bench/device/train.sh 2>&1 | tee "$OUT/train.log"
echo "train.sh exit ${PIPESTATUS[0]}" | tee -a "$OUT/train.log"
