"""Where the DALI CPU loader's time goes at the CPU training default (112 px, 3 views, batch
16): the loader alone, read batch after batch (no model), with one part switched on at a time,
and the loaders' uint8 → unit-vector conversion of the normal maps timed by itself against
the ``F.normalize`` form the loaders used until 2026-12-08 (the stated reference).

    python bench/bench_loader_parts.py [--threads 2] [--steps 32]

Rows: ``eval_rgb`` (decode + normalise), ``train_rgb`` (+ crop/scale and colour
augmentation), ``train_rgb_depth`` (+ 16-bit depth PNGs), ``train_rgb_depth_normals`` (+ normal
PNGs: the training default) and the same in eval; read them against the model's step of
``bench/bench_train.py`` on the same machine, since on 2 cores the loader's seconds come out of
the step's. Writes ``bench/results/loader_parts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_loaders import make_data

from mvdata.io import atomic_write_json
from mvdata.loaders import benchmark
from mvdata.loaders.batch import normals_from_uint8

RESULTS = Path(__file__).resolve().parent / "results" / "loader_parts.json"
#: (name, train, with_depth, with_normals)
PARTS = (
    ("eval_rgb", False, False, False),
    ("train_rgb", True, False, False),
    ("train_rgb_depth", True, True, False),
    ("train_rgb_depth_normals", True, True, True),
    ("eval_rgb_depth_normals", False, True, True),
)


def normals_via_normalize(normals: torch.Tensor) -> torch.Tensor:
    """The reference: the conversion as the loaders did it until 2026-12-08, one
    ``F.normalize`` over the strided channel dim (within 2 ulp of the current one)."""
    n = torch.nn.functional.normalize(normals.float() * (2.0 / 255.0) - 1.0, dim=-3)
    return n * (normals.amax(dim=-3, keepdim=True) > 0)


def time_conversion(
    convert: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
    views: int,
    size: int,
    repeats: int = 50,
) -> float:
    """Seconds ``convert`` takes for one batch's ``[B, 1, V, 3, H, W]`` uint8 normal maps."""
    maps = torch.randint(0, 256, (batch, 1, views, 3, size, size), dtype=torch.uint8)
    for _ in range(3):
        convert(maps)
    t0 = time.perf_counter()
    for _ in range(repeats):
        convert(maps)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": vars(args) | {"out": str(args.out)},
        "torch_threads": torch.get_num_threads(),
        "loader_s_per_batch": {},
    }
    shape = (args.batch_size, args.views, args.size)
    ours, ref = (
        time_conversion(normals_from_uint8, *shape),
        time_conversion(normals_via_normalize, *shape),
    )
    res["normals_conversion_s_per_batch"] = {
        "normals_from_uint8": ours,
        "reference_F_normalize": ref,
        "speedup_vs_reference": ref / ours,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shards"
        make_data(data, args.samples, args.size, args.views, per_shard=64, normals=True)
        for name, train, depth, normals in PARTS:
            r = benchmark(
                data,
                backend="dali",
                batch_size=args.batch_size,
                steps=args.steps,
                num_workers=args.threads,
                device="cpu",
                train=train,
                with_depth=depth,
                with_normals=normals,
            )
            res["loader_s_per_batch"][name] = args.batch_size / r["samples_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
