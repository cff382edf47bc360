"""Two real gloo ranks (spawned processes): every sample once per epoch, equal step counts, also
when one rank meets a corrupt member and restarts its pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as tmp_mp

from mvdata.loaders import Backend, make_loader
from mvdata.testing import assign_folds, build_shard_dir

WORLD = 2


def _worker(rank: int, data: str, backend: Backend, out: str, exclude: list[int]) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/pg", rank=rank, world_size=WORLD)
    try:
        # make_loader checks across ranks that the step counts agree (all_reduce on gloo).
        loader = make_loader(
            data,
            batch_size=3,
            rank=rank,
            world_size=WORLD,
            backend=backend,
            device="cpu",
            train=True,
            seed=5,
            num_workers=0 if backend == "wds" else 1,  # wds workers: covered elsewhere
            exclude_folds=exclude,
        )
        epochs = []
        for _ in range(2):
            steps, keys, pads = 0, [], 0
            for batch in loader:
                steps += 1
                assert batch.images.shape[0] == 3 and len(batch.keys) == 3
                keys += [k for k, ok in zip(batch.keys, batch.valid.tolist(), strict=True) if ok]
                pads += int((~batch.valid).sum())
            epochs.append({"steps": steps, "keys": keys, "pads": pads, "len": len(loader)})
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(epochs, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("backend", "corrupt", "exclude"),
    [
        ("dali", False, False),
        ("wds", False, False),
        ("dali", True, False),
        ("wds", True, False),
        ("dali", True, True),
        ("wds", True, True),
    ],
)
def test_two_ranks_exactly_once(
    tmp_path: Path, backend: Backend, corrupt: bool, exclude: bool
) -> None:
    """``exclude``: fold 1 of 3 left out of the loaders (``exclude_folds``): the other folds'
    samples exactly once across ranks, none of fold 1's."""
    data = tmp_path / "shards"
    data.mkdir()
    bad = {"syn_0011": {"t00.v01.rgb.jpg": b"\xff\xd8\xff\xe0 not a jpeg"}} if corrupt else {}
    keys = build_shard_dir(data, [5, 5, 3], edit=bad)
    held = [1] if exclude else []
    if exclude:
        fold = assign_folds(data, 3)
        keys = [k for k in keys if fold[k] not in held]
        assert "syn_0011" in keys  # the corrupt sample is still read
    args = (str(data), backend, str(tmp_path), held)
    tmp_mp.spawn(_worker, args=args, nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    good = sorted(set(keys) - set(bad))
    for epoch in range(2):
        per_rank = [ranks[r][epoch] for r in range(WORLD)]
        assert per_rank[0]["steps"] == per_rank[1]["steps"] == per_rank[0]["len"]
        seen = per_rank[0]["keys"] + per_rank[1]["keys"]
        assert sorted(seen) == good  # every good sample exactly once across ranks
        assert sum(p["pads"] for p in per_rank) == WORLD * 3 * per_rank[0]["steps"] - len(good)
    if backend == "dali":  # ceil(ceil(13 / 2) / 3); with fold 1 left out ceil(ceil(9 / 2) / 3)
        assert ranks[0][0]["len"] == (2 if exclude else 3)
