#!/usr/bin/env bash
# Install everything the project needs into ./.venv (idempotent: a second run only checks).
# System: Mesa's EGL + llvmpipe for headless rendering (Debian: libegl1, libgl1-mesa-dri).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/free-space.sh
PY=${PYTHON:-python3}

if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  need_apt=()
  for pkg in libegl1 libgl1-mesa-dri; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing system packages: ${need_apt[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 && SUDO="sudo" || {
        echo "error: install ${need_apt[*]} (headless EGL rendering) as root, then rerun" >&2; exit 1; }
    fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
else
  echo "note: not a Debian/Ubuntu system: make sure EGL + Mesa (or the NVIDIA driver's EGL) is installed" >&2
fi

stamp=.venv/.mvdata-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    # A new environment is about 7.5 GB (torch's CUDA build alone is 5.5 GB). Say so up front: a
    # disk that fills mid-install leaves pip's OSError buried and a half-unpacked torch behind.
    require_free_gb "$(pwd)" "${MVDATA_MIN_FREE_GB:-8}" "installing into .venv" MVDATA_MIN_FREE_GB
    "$PY" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  # torch first and pinned, so nothing later can pull a different multi-GB build.
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e ".[all,dev]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, nvidia.dali, lancedb, webdataset, moderngl, eos, timm, importlinter" \
    || { echo "error: the installation is incomplete (see pip's messages above)" >&2; exit 1; }
  touch "$stamp"
fi
