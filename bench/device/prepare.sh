#!/usr/bin/env bash
# On this (CPU) machine, before a session's device calls: cut DALI's wheels into .dali1-.dali5
# (../shared/tools/dali-for-device.sh) and download the pure-data dependencies the loaders need
# that the device image lacks (pydantic, fsspec, webdataset, pytest, ...) into .devwheels/
# (Python 3.12 wheels, ~6 MiB, git-ignored; not polars: the loaders import it lazily). Then run
# the checks there with the `run` calls bench/device/README.md lists.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bash ../shared/tools/dali-for-device.sh
rm -rf .devwheels && mkdir .devwheels
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64"
plat="$plat --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
for p in pydantic pydantic-core annotated-types typing-inspection \
         fsspec webdataset braceexpand pyyaml pytest pluggy iniconfig packaging pygments six dill; do
  python3 -m pip download -q --no-deps $plat -d .devwheels "$p" 2>&1 | grep -v "is ignored" || true
done
du -sh .devwheels
# A call carries at most 64 MiB with the working tree (~10.4 MiB): re-cut everything into five
# 49.8 MiB parts .dev1-.dev5 (bench/device/repack.py), the ones the calls carry.
for n in 1 2 3 4 5; do
  grep -qx "/.dev$n/" .git/info/exclude 2>/dev/null || echo "/.dev$n/" >> .git/info/exclude
done
python3 bench/device/repack.py
