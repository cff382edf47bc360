#!/usr/bin/env bash
# Install, then run the main job end to end on the embedded default (the synthetic source).
# Everything lands in ./quickstart-out (replaced on every run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# A development checkout sits beside ../shared, which holds the Surrey Face Model; elsewhere the
# synthetic source uses $MVDATA_FACE_MODEL_DIR, the user cache, or its built-in procedural face.
if [ -z "${MVDATA_FACE_MODEL_DIR:-}" ] && [ -f ../shared/facemodels/sfm/sfm_shape_3448.bin ]; then
  export MVDATA_FACE_MODEL_DIR="$PWD/../shared/facemodels/sfm"
fi
OUT=quickstart-out
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. synthetic 3D/4D faces"
mvdata synth "$OUT/synth" --identities 6 --sequences --frames 25 --seed 0
