"""How much ``prior.fit=training`` changes the geometric prior against the former pooling
(``prior.fit=all``) on built shards: per shard directory, the largest change of a p_geo entry
on the training and the held-out samples, how many samples' argmax (the prior's naming) moves,
and the prior's naming accuracy on the held-out subjects at intensities 3-4 under both. Labels
are read here to measure only; nothing is trained or chosen.

    python scripts/prior_fit_check.py /tmp/bench/seed8-4x/shards/static ... --held-out 0 1 2 \
        --out bench/results/prior_fit_check.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from mvdata.io import atomic_write_json
from mvdata.shards.meta import iter_sample_jsons
from mvmodel.prior.table import prior_table, prob_columns


def check(shards: str, held_out: set[int]) -> dict[str, Any]:
    rows = list(iter_sample_jsons(shards))
    train = {str(s["key"]) for s in rows if s.get("fold") not in held_out}
    pooled, fitted = prior_table(rows), prior_table(rows, fit_keys=train)
    cols = [c for c in prob_columns() if c in pooled.columns]
    pa, pb = pooled.select(cols).to_numpy(), fitted.select(cols).to_numpy()
    keys = pooled["key"].to_list()
    held = np.array([k not in train for k in keys])
    labels = {str(s["key"]): s.get("labels") or {} for s in rows}
    classes = [c[2:] for c in cols]
    y = np.array(
        [classes.index(e) if (e := labels[k].get("expression")) in classes else -1 for k in keys]
    )
    level = np.array([labels[k].get("intensity") or 0 for k in keys])
    test = held & (y >= 0) & np.isin(level, [3, 4])
    out: dict[str, Any] = {"shards": shards, "samples": len(keys), "held_out": int(held.sum())}
    for name, mask in (("training", ~held), ("held_out", held)):
        out[f"max_abs_change_{name}"] = float(np.abs(pa[mask] - pb[mask]).max())
        out[f"naming_changed_{name}"] = int((pa[mask].argmax(1) != pb[mask].argmax(1)).sum())
    out["naming_accuracy_held_out_3_4"] = {
        "all": float((pa[test].argmax(1) == y[test]).mean()),
        "training": float((pb[test].argmax(1) == y[test]).mean()),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shards", nargs="+", help="built shard directories")
    ap.add_argument("--held-out", nargs="+", type=int, default=[0, 1, 2], help="held-out folds")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    results = [check(s, set(args.held_out)) for s in args.shards]
    for r in results:
        print(r)
    if args.out:
        atomic_write_json(
            args.out, {"command": " ".join(["python", *sys.argv]), "results": results}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
