"""The spread over seeds of finished benchmark reports: per seed, MultiviewVLM's linear probe,
kNN and zero-shot on the held-out subjects, the AU prior's own naming and the issue-13 target
checks; over seeds, mean, standard deviation, min and max of each. It reads the reports' JSON
only: it trains, embeds and chooses nothing.

    python scripts/seed_spread.py bench/results/benchmark/seed{4,7,8,9}-long --out spread.json

Each argument is a benchmark result folder holding ``report/report.json`` and
``configs/main.yaml`` (as committed under ``bench/results/benchmark/``) or a ``mvmodel
benchmark`` OUT. Reports of different protocols, budgets or settings are refused: a spread is
over seeds only. The main run's whole training config is compared, not only the benchmark's
``--set`` list, because a changed code default (``prior.fit`` became ``training`` on
2026-12-06) changes a run without appearing among its overrides; a key a config lacks counts as
different from any value. ``--allow KEY`` accepts a named difference (for example
``--allow optim.amp`` for float32 and bf16 seeds) and writes each seed's value of it into the
result, so the mix is stated, not hidden.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import scipy.stats
import yaml

from mvdata.core import differing_settings
from mvdata.io import atomic_write_json

#: The benchmark settings that must agree between the reports (every one but the seed).
SAME = ("resolved", "overrides", "identities", "holdout_folds", "noise_mm", "pose_jitter_deg")

MAIN = "MultiviewVLM"
GEOMETRY_PREFIX = "geometry alone"

#: Training-config keys that differ between seeds by construction (the seed) or by machine
#: (a cache path), never compared.
CONFIG_IGNORED = ("seed", "text.cache_dir")

#: The value written for a key one config lacks (an older run, made before the key existed).
ABSENT = "(absent)"


def read_report(folder: Path) -> dict[str, Any]:
    """``folder/report/report.json``, parsed; a ``SystemExit`` naming the file when absent."""
    path = folder / "report" / "report.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no report (is {folder} a benchmark result folder?)")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_main_config(folder: Path) -> dict[str, Any]:
    """The main run's training config, ``folder/configs/main.yaml``, flattened to dotted keys,
    without the keys in ``CONFIG_IGNORED``; a ``SystemExit`` naming the file when absent."""
    path = folder / "configs" / "main.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no main-run config (is {folder} a benchmark result folder?)")
    flat = flatten(yaml.safe_load(path.read_text()) or {})
    return {k: v for k, v in flat.items() if k not in CONFIG_IGNORED}


def config_differences(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every key whose value is not the same in all configs (each compared with the first by
    ``mvdata.core.differing_settings``) → its value per config (``ABSENT`` where one lacks it)."""
    keys = sorted({k for c in configs[1:] for k in differing_settings(configs[0], c)})
    return {k: [c.get(k, ABSENT) for c in configs] for k in keys}


def overrides_without(overrides: list[str] | None, allowed: set[str]) -> list[str]:
    """The benchmark's ``--set`` list less the entries that set an allowed key."""
    return [o for o in overrides or [] if o.split("=", 1)[0] not in allowed]


def seed_row(doc: dict[str, Any]) -> dict[str, Any]:
    """One seed's numbers (fractions) and its target checks, from one report."""
    methods = doc["methods"]
    main = methods[MAIN]
    geometry = next(v for k, v in methods.items() if k.startswith(GEOMETRY_PREFIX))
    return {
        "seed": doc["benchmark"]["seed"],
        "linear_probe": main["linear_probe"]["mean"],
        "knn": main["knn"]["mean"],
        "zero_shot": main["zero_shot"]["mean"],
        "prior_naming": geometry["zero_shot"]["mean"],
        "linear_probe_folds": main["linear_probe"]["folds"],
        "zero_shot_folds": main["zero_shot"]["folds"],
        "targets": {t["target"]: bool(t["met"]) for t in doc["targets"]},
    }


def spread(values: list[float], bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max, and the 95 % confidence
    interval of the mean over seeds (Student's t with n - 1 degrees of freedom; ``None`` for one
    value). The interval is over seeds, so it holds the training's randomness and the test
    set's sampling both; with 3-4 seeds it is wide (t = 4.30 / 3.18), as it should be. Clipped
    to ``bounds``: [0, 1] for accuracies (fractions), [-1, 1] for a difference of two."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    ci: list[float] | None = None
    if len(values) > 1:
        half = float(scipy.stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))
        ci = [max(bounds[0], mean - half), min(bounds[1], mean + half)]
    return {"mean": mean, "std": sd, "min": min(values), "max": max(values), "ci95": ci}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+", help="benchmark result folders")
    ap.add_argument("--out", type=Path, required=True, help="the JSON result")
    ap.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="KEY",
        help="a training-config key (section.key) that may differ between the seeds; repeatable",
    )
    args = ap.parse_args(argv)
    allowed = set(args.allow)
    docs = [read_report(f) for f in args.folders]
    configs = [read_main_config(f) for f in args.folders]
    first = docs[0]["benchmark"]
    for folder, doc in zip(args.folders, docs, strict=True):
        for key in SAME:
            mine, theirs = doc["benchmark"].get(key), first.get(key)
            if key == "overrides":
                mine, theirs = overrides_without(mine, allowed), overrides_without(theirs, allowed)
            if mine != theirs:
                print(
                    f"error: {folder}: benchmark setting {key}={mine!r}, "
                    f"{args.folders[0]} has {theirs!r}: not a spread over seeds",
                    file=sys.stderr,
                )
                return 2
    differences = config_differences(configs)
    refused = {k: v for k, v in differences.items() if k not in allowed}
    if refused:
        listing = "; ".join(
            f"{k}: " + ", ".join(f"{f}={v!r}" for f, v in zip(args.folders, vals, strict=True))
            for k, vals in refused.items()
        )
        print(
            f"error: the main runs' configs (configs/main.yaml) differ: {listing}: not a spread "
            "over seeds (--allow KEY accepts a difference and records it)",
            file=sys.stderr,
        )
        return 2
    rows = [seed_row(d) for d in docs]
    for row, config in zip(rows, configs, strict=True):
        row["allowed_differences"] = {k: config.get(k, ABSENT) for k in sorted(allowed)}
    seeds = [r["seed"] for r in rows]
    if len(set(seeds)) != len(seeds):
        print(f"error: a seed appears twice: {seeds}", file=sys.stderr)
        return 2
    metrics = ("linear_probe", "knn", "zero_shot", "prior_naming")
    targets = sorted({t for r in rows for t in r["targets"]})
    result: dict[str, Any] = {
        "command": " ".join(["python", "scripts/seed_spread.py", *argv]),
        "settings": {k: first.get(k) for k in SAME},
        "allowed_differences": sorted(allowed),
        "seeds": rows,
        "over_seeds": {m: spread([r[m] for r in rows]) for m in metrics},
        "zero_shot_minus_prior": spread(
            [r["zero_shot"] - r["prior_naming"] for r in rows], bounds=(-1.0, 1.0)
        ),
        "targets_met": {t: [r["seed"] for r in rows if r["targets"].get(t)] for t in targets},
    }
    atomic_write_json(args.out, result)
    for r in rows:
        mixed = "".join(f", {k}={v}" for k, v in r["allowed_differences"].items())
        print(
            f"seed {r['seed']}: linear probe {100 * r['linear_probe']:.1f}, kNN "
            f"{100 * r['knn']:.1f}, zero-shot {100 * r['zero_shot']:.1f}, prior "
            f"{100 * r['prior_naming']:.1f}{mixed}"
        )
    for m in metrics:
        s = result["over_seeds"][m]
        ci = f", 95 % CI {100 * s['ci95'][0]:.1f}-{100 * s['ci95'][1]:.1f}" if s["ci95"] else ""
        print(
            f"{m}: {100 * s['mean']:.1f} ± {100 * s['std']:.1f} "
            f"(min {100 * s['min']:.1f}, max {100 * s['max']:.1f}{ci})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
