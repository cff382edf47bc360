"""Is the linear probe the bottleneck? The benchmark's linear probe and kNN on a run's joint
embedding ``f`` (what the report scores) against the same on the fused backbone feature before
the projection head (the layer SimCLR and CLIP probe), each with the report's C grid and a wider
one. An evaluation of finished runs on their held-out folds: it trains nothing and chooses
nothing for the benchmark (the report's protocol and numbers are unchanged).

    python scripts/probe_layers.py OUT [--runs main,supervised] [--step N] --out result.json

OUT is a ``mvmodel benchmark`` output (``OUT/runs/NAME``, ``OUT/shards/static``). The protocol
is the report's: the bu3dfe preset over every subject and the folds as built, intensities 3-4,
tested on the folds the run held out; C (and k) chosen by the subject-grouped inner CV on the
training folds only. The joint-embedding row with the report's grid must equal the report's
linear probe: the script checks that it reads what the report read. Each layer's spread
(effective rank, mean cosine: ``mvmodel.evaluate.metrics.embedding_spread``) says whether a
probe at chance is a collapse, and in which layer. ``--step N`` probes the runs' checkpoint of
step N (``RUN/checkpoints/ckpt-0000000N``) instead of their final weights: a run still training
can be looked at; there is no report to compare with then.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvdata.io import atomic_write_json
from mvdata.shards.meta import iter_sample_jsons
from mvmodel.evaluate.benchmark import BASELINES, VARIANTS
from mvmodel.evaluate.features import FeatureSet
from mvmodel.evaluate.metrics import (
    C_GRID,
    embedding_spread,
    fit_knn,
    fit_linear_probe,
    l2_normalise,
    predict_by_fold,
    prediction_metrics,
)
from mvmodel.evaluate.pipeline import MAIN
from mvmodel.evaluate.protocols import make_protocol, sample_table, select
from mvmodel.inference import TrainedModel

#: Ten times wider on each side than the report's grid (CLIP swept 1e-6..1e6): a grid whose
#: chosen C sits on its edge may be too narrow.
WIDE_C_GRID: tuple[float, ...] = tuple(10.0**k for k in range(-4, 5))


def embed(run: Path, shards: str) -> tuple[list[str], np.ndarray, np.ndarray, TrainedModel]:
    """Keys, joint embeddings and fused backbone features of every sample of ``shards``."""
    model = TrainedModel.load(run, device="cpu")
    keys: list[str] = []
    joint: list[np.ndarray] = []
    fused: list[np.ndarray] = []
    for eb in model.embed_shards(shards, batch_size=32, num_workers=2):
        keys += eb.keys
        joint.append(eb.f)
        fused.append(eb.fused)
    return keys, np.concatenate(joint), np.concatenate(fused), model


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Mean, std and per-fold accuracy (%) and the hyperparameter each fold chose."""
    return {
        "mean": round(100 * metrics["mean"], 1),
        "std": round(100 * metrics["std"], 1),
        "folds": {k: round(100 * v, 1) for k, v in metrics["folds"].items()},
        "chosen": {
            k: {p: v for p, v in d.items() if p != "selected_by"}
            for k, d in metrics["params"].items()
        },
    }


def report_linear_probe(out_dir: Path, run: str) -> float | None:
    """The run's linear probe (%) in ``OUT/report/report.json``, None when the report lacks it."""
    path = out_dir / "report" / "report.json"
    if not path.is_file():
        return None
    method = MAIN if run == "main" else {**BASELINES, **VARIANTS}.get(run, (run,))[0]
    entry = json.loads(path.read_text())["methods"].get(method)
    return None if entry is None else round(100 * entry["linear_probe"]["mean"], 1)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, help="a mvmodel benchmark OUT")
    ap.add_argument("--runs", default="main", help="comma-separated run names under OUT/runs")
    ap.add_argument("--out", type=Path, required=True, help="the JSON result")
    ap.add_argument("--step", type=int, default=None, help="probe this checkpoint's weights")
    args = ap.parse_args(argv)
    shards = str(args.out_dir / "shards" / "static")
    table = sample_table(list(iter_sample_jsons(shards)))
    protocol = make_protocol("bu3dfe", num_subjects=None, num_folds=None)
    result: dict[str, Any] = {
        "command": " ".join(["python", "scripts/probe_layers.py", *argv]),
        "protocol": protocol.describe(),
        "c_grid": list(C_GRID),
        "wide_c_grid": list(WIDE_C_GRID),
        "runs": {},
    }
    for name in args.runs.split(","):
        t0 = time.perf_counter()
        weights = args.out_dir / "runs" / name
        if args.step is not None:
            weights = weights / "checkpoints" / f"ckpt-{args.step:08d}"
            if not weights.is_dir():
                print(f"error: {weights}: no checkpoint of step {args.step}", file=sys.stderr)
                return 2
        keys, joint, fused, model = embed(weights, shards)
        sel = select(
            table, protocol, mode="holdout", holdout_folds=tuple(model.config.data.exclude_folds)
        )
        # FeatureSet.rows: the report's own key lookup (a clear error for samples not embedded)
        rows = FeatureSet(name, keys, joint, None, []).rows(sel.keys)
        # embeddings are L2-normalised as the report does; the raw backbone features are
        # standardised inside each fit (on its training samples), as the geometry features are
        layers = {
            "joint embedding": (l2_normalise(joint[rows]), False),
            "backbone (pre-projection)": (fused[rows], True),
        }
        out: dict[str, Any] = {
            "test_folds": list(sel.test_folds),
            "test_samples": None,
            "step": model.step,
        }
        test = sel.test_mask()
        for layer, (x, standardise) in layers.items():
            # the joint embedding as the report reads it; the raw features as they are
            out[f"spread, {layer}"] = {k: round(v, 4) for k, v in embedding_spread(x[test]).items()}
            for grid_name, grid in (("report grid", C_GRID), ("wide grid", WIDE_C_GRID)):

                def lp(a: Any, b: Any, g: Any, s: bool = standardise, c: Any = grid) -> Any:
                    return fit_linear_probe(a, b, g, standardise=s, c_grid=c)

                m = prediction_metrics(predict_by_fold(x, sel, lp), sel)
                out["test_samples"] = m["n_test"]
                out[f"linear probe, {layer}, {grid_name}"] = summary(m)

            def knn(a: Any, b: Any, g: Any, s: bool = standardise) -> Any:
                return fit_knn(a, b, g, standardise=s)

            out[f"kNN, {layer}"] = summary(prediction_metrics(predict_by_fold(x, sel, knn), sel))
        # the first row is the report's own computation: it must give the report's number
        reported = None if args.step is not None else report_linear_probe(args.out_dir, name)
        ours = out["linear probe, joint embedding, report grid"]["mean"]
        out["report's linear probe"] = reported
        if reported is not None and reported != ours:
            print(f"error: {name}: {ours} here, {reported} in the report", file=sys.stderr)
            return 1
        out["seconds"] = round(time.perf_counter() - t0, 1)
        result["runs"][name] = out
        print(
            name,
            {k: v.get("mean", v) for k, v in out.items() if isinstance(v, dict)},
            flush=True,
        )
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
