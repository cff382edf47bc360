"""Correctness of the DALI loader on a GPU (``device="mixed"``), against the same loader on the
CPU over the same shards: run by ``bench/device/check.sh``; ``--device cpu`` dry-runs it here.

Checks, each recorded as pass/fail with its numbers in the JSON written to ``--out``:

* eval batches: same keys and valid masks; RGB within JPEG-decoder tolerance (nvJPEG vs
  libjpeg-turbo, mean |diff| < 2/255 of the range); depth in mm and normals exactly equal;
  images on the GPU;
* a shuffled training epoch on the GPU covers every sample exactly once;
* corrupt members are skipped and counted on the GPU as on the CPU (mixed-decoder error path);
* checkpoint/resume on the GPU continues with the next unseen batch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mvdata.io import atomic_write_json
from mvdata.loaders import make_loader
from mvdata.loaders.batch import unnormalise as _unnormalise
from mvdata.testing import CORRUPT, build_shard_dir
from mvdata.testing import rows as _rows
from schemas.models import MODALITIES


def check_eval_equal(root: Path, device: str) -> dict[str, Any]:
    kw: dict[str, Any] = dict(batch_size=4, backend="dali", train=False, num_workers=4)
    gpu = list(make_loader(root, device=device, **kw))
    cpu = list(make_loader(root, device="cpu", **kw))
    assert _rows(gpu) == _rows(cpu), "keys or valid masks differ"
    worst = 0.0
    for g, c in zip(gpu, cpu, strict=True):
        m = c.valid
        assert g.images.device.type == ("cuda" if device == "cuda" else "cpu")
        diff = (_unnormalise(g.images.cpu()[m]) - _unnormalise(c.images[m])).abs().mean().item()
        worst = max(worst, diff)
        assert g.depth is not None and c.depth is not None
        assert torch.equal(g.depth.cpu()[m], c.depth[m]), "depth differs"
        assert g.normals is not None and c.normals is not None
        assert torch.equal(g.normals.cpu()[m], c.normals[m]), "normals differ"
    assert worst < 2.0, f"RGB mean |diff| {worst:.3f} >= 2"
    return {"batches": len(gpu), "rgb_mean_abs_diff_0_255": worst}


def check_train_epoch(root: Path, device: str, keys: list[str]) -> dict[str, Any]:
    loader = make_loader(root, batch_size=4, backend="dali", device=device, train=True, seed=3)
    got = [k for k, ok in _rows(list(loader)) if ok]
    assert sorted(got) == keys, "a training epoch did not cover every sample exactly once"
    return {"samples": len(got), "shuffled": got != keys}


def check_corrupt(root: Path, device: str, keys: list[str]) -> dict[str, Any]:
    loader = make_loader(root, batch_size=2, backend="dali", device=device, train=False)
    got = [k for k, ok in _rows(list(loader)) if ok]
    assert got == [k for k in keys if k not in CORRUPT], "corrupt samples not skipped exactly"
    assert loader.errors == len(CORRUPT), f"errors {loader.errors}"
    return {"errors": loader.errors}


def check_resume(root: Path, device: str) -> dict[str, Any]:
    kw: dict[str, Any] = dict(batch_size=2, backend="dali", device=device, train=True, seed=7)
    full = _rows(list(make_loader(root, **kw)))
    part = make_loader(root, **kw)
    it = iter(part)
    head = _rows([next(it), next(it)])
    state = json.loads(json.dumps(part.state_dict()))
    del it, part
    assert head + _rows(list(make_loader(root, state=state, **kw))) == full, "resume differs"
    return {"steps": len(full) // 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a dry run)")
    ap.add_argument("--out", type=Path, default=Path("gpu-checks.json"))
    args = ap.parse_args()
    results: dict[str, Any] = {"device": args.device}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        clean, bad = Path(tmp, "clean"), Path(tmp, "bad")
        clean.mkdir()
        bad.mkdir()
        keys = build_shard_dir(clean, [5, 5, 3], modalities=MODALITIES)
        bad_keys = build_shard_dir(bad, [4, 3], edit=CORRUPT)
        checks: dict[str, Callable[[], dict[str, Any]]] = {
            "eval_equal_to_cpu": lambda: check_eval_equal(clean, args.device),
            "train_epoch_once": lambda: check_train_epoch(clean, args.device, keys),
            "corrupt_skipped": lambda: check_corrupt(bad, args.device, bad_keys),
            "resume": lambda: check_resume(clean, args.device),
        }
        for name, check in checks.items():
            try:
                results[name] = {"ok": True, **check()}
            except Exception as exc:  # noqa: BLE001 - every check reports, none stops the others
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
    results["all_ok"] = all(v["ok"] for v in results.values() if isinstance(v, dict))
    atomic_write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
