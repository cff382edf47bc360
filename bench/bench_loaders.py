"""Loader throughput: DALI (CPU) and webdataset vs the floor of PIL-decoding the same JPEGs.

    python bench/bench_loaders.py [--data DIR] [--samples 192] [--size 224] [--views 4]
    python bench/bench_loaders.py --gpu      # on a GPU machine: DALI mixed vs a bare pipeline

Without ``--data`` a synthetic shard directory is written to a temp dir (T=1, ``--views`` views,
RGB JPEG + 16-bit depth PNG). References, in the same run:

* CPU: ``pil_floor`` = PIL decoding every RGB JPEG of the shards on all cores
  (``multiprocessing.Pool``), no I/O, no depth, no batching: the loaders' ratio to it is reported.
* GPU (``--gpu``): a bare DALI pipeline (reader + ``mixed`` JPEG decode + normalise, no depth, no
  augmentation) over the same JPEGs; target: the full loader (depth PNGs + augmentation) at
  ≥ 90 % of it.

Writes ``bench/results/loaders.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mvdata.io import atomic_write_json
from mvdata.loaders import Backend, benchmark, open_dataset
from mvdata.shards.codecs import encode_jpeg, encode_png8, encode_png16
from mvdata.shards.index import read_index
from mvdata.shards.names import member_names, shard_name
from mvdata.shards.writer import ShardWriter
from mvdata.testing import (
    normal_map,
    placeholder_cameras,
    placeholder_sample_json,
    write_root_files,
)
from schemas.models import Modality

RESULTS = Path(__file__).resolve().parent / "results" / "loaders.json"


def make_data(
    out: Path, samples: int, size: int, views: int, per_shard: int, *, normals: bool = False
) -> None:
    """Write a synthetic shard directory (smooth images + noise, like rendered faces); with
    ``normals``, a camera-facing normal map per view too (the training default's third input)."""
    rng = np.random.default_rng(0)
    cams = placeholder_cameras(views, yaw_span=90.0)
    modalities: list[Modality] = ["rgb", "depth", "normal"] if normals else ["rgb", "depth"]
    names = member_names(1, views, modalities)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for s in range(0, samples, per_shard):
        with ShardWriter(str(out), shard_name("train", s // per_shard), member_names=names) as w:
            for i in range(s, min(s + per_shard, samples)):
                key = f"bench_{i:06d}"
                sj = placeholder_sample_json(
                    key,
                    frames=1,
                    cameras=cams,
                    modalities=modalities,
                    image_size=size,
                    depth_scale_mm=0.01,
                    dataset="bench",
                    kind="static",
                    sequence="q",
                )
                members = {"json": sj.model_dump_json().encode()}
                for v in range(views):
                    c = rng.uniform(0, 1, (3, 3))
                    img = np.stack([c[k, 0] * yy + c[k, 1] * xx for k in range(3)], -1) * 120
                    img = img + rng.normal(0, 8, img.shape)
                    members[f"t00.v{v:02d}.rgb.jpg"] = encode_jpeg(
                        np.clip(img, 0, 255).astype(np.uint8), 90
                    )
                    r2 = (yy - 0.5) ** 2 + (xx - 0.5) ** 2
                    depth = np.where(r2 < 0.16, 50000 - 100000 * r2, 0).astype(np.uint16)
                    members[f"t00.v{v:02d}.depth.png"] = encode_png16(depth)
                    if normals:
                        members[f"t00.v{v:02d}.normal.png"] = encode_png8(normal_map(rng, size))
                w.add_sample(key, members)
            w.commit(seconds={})
    write_root_files(
        out,
        cameras=cams,
        modalities=modalities,
        image_size=size,
        frames=1,
        depth_scale_mm=0.01,
        num_shards=-(-samples // per_shard),
        samples_per_shard=per_shard,
        name="bench",
        jpeg_quality=90,
        indent=None,
    )


def _jpegs(data: Path) -> list[bytes]:
    info = open_dataset(data)
    out = []
    for shard in info.shards:
        tar = Path(info.tar_path(shard)).read_bytes()
        for comps in read_index(Path(info.idx_path(shard)).read_bytes()):
            out += [tar[o : o + n] for ext, o, n, _ in comps if ext.endswith(".rgb.jpg")]
    return out


def _decode(b: bytes) -> int:
    return int(np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).shape[0])


def pil_floor(data: Path, repeats: int = 3) -> dict[str, float]:
    """Images/s of PIL decoding the shards' JPEGs on all cores (no I/O, no depth)."""
    jpegs = _jpegs(data) * repeats
    procs = os.cpu_count() or 1
    with mp.get_context("fork").Pool(procs) as pool:
        pool.map(_decode, jpegs[: procs * 4])  # warm the workers
        t0 = time.perf_counter()
        pool.map(_decode, jpegs, chunksize=16)
        sec = time.perf_counter() - t0
    return {
        "images": len(jpegs),
        "seconds": sec,
        "images_per_s": len(jpegs) / sec,
        "processes": procs,
    }


def bare_gpu_pipeline(data: Path, batch_size: int, steps: int, threads: int) -> dict[str, float]:
    """Reader + mixed JPEG decode + normalise over the same RGB members: the GPU reference."""
    from nvidia.dali import fn as _fn
    from nvidia.dali import pipeline_def as _pipeline_def
    from nvidia.dali import types as _types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    fn: Any = _fn  # DALI's stubs are narrower than its API (see mvdata/loaders/dali.py)
    types: Any = _types
    pipeline_def: Any = _pipeline_def
    info = open_dataset(data)
    exts = info.rgb_exts()

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=0)
    def pipe() -> Any:
        outs = fn.readers.webdataset(
            paths=[info.tar_path(s) for s in info.shards],
            index_paths=[info.idx_path(s) for s in info.shards],
            ext=exts,
            name="Reader",
            pad_last_batch=True,
        )
        outs = [outs] if len(exts) == 1 else outs
        imgs = [
            fn.crop_mirror_normalize(
                fn.decoders.image(o, device="mixed", hw_decoder_load=0.0),
                dtype=types.FLOAT,
                output_layout="CHW",
                mean=[124.0, 116.0, 104.0],
                std=[58.0, 57.0, 57.0],
            )
            for o in outs
        ]
        return fn.stack(*imgs)

    p = pipe()
    it = DALIGenericIterator([p], ["images"], reader_name="Reader", auto_reset=True)
    done, t0, n = 0, 0.0, 0
    while done < steps + 2:
        for b in it:
            if done == 2:
                t0, n = time.perf_counter(), 0
            n += b[0]["images"].shape[0]
            done += 1
            if done >= steps + 2:
                break
    import torch

    torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    return {"samples_per_s": n / sec, "images_per_s": n * len(exts) / sec}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=192)
    ap.add_argument("--per-shard", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--gpu", action="store_true", help="also DALI mixed vs a bare GPU pipeline")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp)
            make_data(data, args.samples, args.size, args.views, args.per_shard)
        cores = os.cpu_count() or 1
        floor = pil_floor(data)
        res: dict[str, Any] = {
            "machine": {"cpus": cores, "platform": platform.platform()},
            "data": {
                "samples": open_dataset(data).total,
                "size": args.size,
                "views": args.views,
                "synthetic": args.data is None,
            },
            "pil_floor_all_cores": floor,
        }
        # On a GPU machine only the GPU comparison is run (device time is scarce).
        runs: list[tuple[str, Backend, str]] = (
            [] if args.gpu else [("dali_cpu", "dali", "cpu"), ("wds", "wds", "cpu")]
        )
        for name, backend, dev in runs:
            # train = depth + augmentation; eval_rgb_only = the floor's work plus I/O, resize-free
            # normalise and batching (the closest like-for-like comparison with the floor).
            for mode, train, depth in (
                ("train", True, True),
                ("eval", False, True),
                ("eval_rgb_only", False, False),
            ):
                r = benchmark(
                    data,
                    backend=backend,
                    batch_size=args.batch_size,  # type: ignore[arg-type]
                    steps=args.steps,
                    num_workers=cores,
                    device=dev,
                    train=train,
                    with_depth=depth,
                )
                r["ratio_images_vs_pil_floor"] = r["images_per_s"] / floor["images_per_s"]
                res[f"{name}_{mode}"] = r
        if args.gpu:
            import torch

            if not torch.cuda.is_available():
                raise SystemExit("--gpu: no CUDA device here")
            bare = bare_gpu_pipeline(data, args.batch_size, args.steps, cores)
            # The loader with DALI's default hardware-decoder share and with none (gotchas.md:
            # on an H200 nvJPEG on the CUDA cores alone beat the hardware decoder at 224 px).
            full = {
                f"hw_decoder_load_{load}": benchmark(
                    data,
                    backend="dali",
                    batch_size=args.batch_size,
                    steps=args.steps,
                    num_workers=cores,
                    device="cuda",
                    train=True,
                    hw_decoder_load=load,
                )
                for load in (0.0, 0.65)
            }
            best = max(full.values(), key=lambda r: r["images_per_s"])
            res["gpu"] = {
                "device": torch.cuda.get_device_name(0),
                "bare": bare,
                "full": full,
                "ratio_full_vs_bare": best["images_per_s"] / bare["images_per_s"],
                "target": 0.9,
            }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
