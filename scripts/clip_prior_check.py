"""How often the geometric prior names a 4D clip's expression, with and without the sequence's
first frame carried in the clip's json (schema 1.1), on a development set that is neither
benchmark seed: an evaluation (it reads the labels), never a training input.

    python scripts/clip_prior_check.py SHARDS [SHARDS ...] --out result.json

SHARDS are ``mvdata build --kind sequence --clip-sampling motion`` outputs. "without" drops
``reference_frame``/``reference_landmarks`` from every json, which is what shards built before
1.1 hold: the earliest frame a clip shows is then the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mvdata.build.query import read_dataset_meta
from mvdata.io import atomic_write_json
from mvdata.shards.meta import iter_sample_jsons
from mvmodel.prior.facs import CLASSES
from mvmodel.prior.table import prior_table, prob_columns


def naming_accuracy(docs: list[dict[str, Any]], carried: bool) -> float:
    """Share of samples whose prior argmax is their labelled expression (labels never reach
    the prior: they are dropped before it sees the samples)."""
    drop = {"labels"} | (set() if carried else {"reference_frame", "reference_landmarks"})
    df = prior_table([{k: v for k, v in d.items() if k not in drop} for d in docs])
    pred = [CLASSES[i] for i in df.select(prob_columns()).to_numpy().argmax(axis=1)]
    return float(np.mean([p == d["labels"]["expression"] for p, d in zip(pred, docs, strict=True)]))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shards", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"command": " ".join(["python", "scripts/clip_prior_check.py", *argv])}
    for shards in args.shards:
        docs = list(iter_sample_jsons(str(shards)))
        meta = read_dataset_meta(str(shards)).model_dump()
        synth_json = Path(meta["source_root"]) / "synth.json"
        synth = json.loads(synth_json.read_text()) if synth_json.exists() else {}
        result[str(shards)] = {
            "synth": {
                k: synth.get(k)
                for k in ("seed", "num_identities", "intensities", "pose_jitter_deg", "noise_mm")
            },
            "build": {k: meta[k] for k in ("clip_frames", "clip_sampling", "image_size")},
            "samples": len(docs),
            "clip_first_frames": sorted({int(d["frames"][0]) for d in docs}),
            "prior_naming_carried_first_frame": naming_accuracy(docs, carried=True),
            "prior_naming_earliest_clip_frame": naming_accuracy(docs, carried=False),
        }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
