#!/usr/bin/env bash
# Install, then run every check CI runs: lint, format, types, import layering, schema files, and
# the test suite (CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ -z "${MVDATA_FACE_MODEL_DIR:-}" ] && [ -f ../shared/facemodels/sfm/sfm_shape_3448.bin ]; then
  export MVDATA_FACE_MODEL_DIR="$PWD/../shared/facemodels/sfm"
fi
echo "== ruff"; ruff check .
echo "== ruff format"; ruff format --check .
echo "== mypy"; mypy mvdata mvmodel cli schemas scripts bench
echo "== import contracts"; lint-imports
echo "== schema files"; python -m schemas.export --check
# The suite's training tests write checkpoints (resnet18 + optimizer state) under the temp dir:
# ~2.3 GB at peak with pyproject's retention policy (only failed tests' folders are kept). One clear
# line here beats twenty "No space left on device" failures midway.
source scripts/free-space.sh
require_free_gb "${TMPDIR:-/tmp}" "${MVDATA_TEST_MIN_TMP_GB:-3}" "the test suite" \
  MVDATA_TEST_MIN_TMP_GB "point TMPDIR elsewhere"
echo "== pytest"; python -m pytest -q -p no:cacheprovider "$@"
