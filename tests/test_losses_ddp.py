"""Two real gloo ranks (spawned processes) against one process on the concatenated batch: the
mean of the rank losses and the DDP-averaged gradients of every input and parameter must equal
the single-process loss and gradients, with different numbers of valid rows on the two ranks."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp_mp
import torch.nn.functional as F

from mvmodel.losses import ImageTextLoss, MultiviewContrastiveLoss, SigmoidMultiviewLoss

WORLD = 2
LOCAL = 5  # rows per rank (padding included)
N_VIEWS, DIM, K = 4, 6, 4
TOL = 1e-6


def make_global_batch() -> dict[str, torch.Tensor]:
    """A fixed batch of WORLD * LOCAL rows; rank 0 holds 4 valid rows, rank 1 holds 2."""
    rng = np.random.default_rng(1234)
    n = WORLD * LOCAL
    valid = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    # class 0 and class 1 both appear on both ranks: masking crosses ranks
    pseudo = np.array([0, 1, 2, -1, 0, 1, 0, 3, 0, 1])
    q = rng.dirichlet(np.full(K, 0.4), size=n)
    conf = np.array([1, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)
    centre = rng.normal(size=(n, 1, DIM))
    return {
        "z": torch.tensor(centre + 0.8 * rng.normal(size=(n, N_VIEWS, DIM))),
        "f": torch.tensor(rng.normal(size=(n, DIM))),
        "c": torch.tensor(rng.normal(size=(K, DIM))),
        "q": torch.tensor(q),
        "conf": torch.tensor(conf),
        "valid": torch.tensor(valid),
        "pseudo": torch.tensor(pseudo),
    }


def run_losses(
    batch: dict[str, torch.Tensor], rows: slice, rank: int, world_size: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Compute the three losses on ``batch[rows]`` and backpropagate their sum.

    The raw embeddings of the WHOLE batch, the prototypes, log τ and the sigmoid bias are leaves
    held (identically) by every rank, like DDP's replicated parameters; each rank only uses its
    own rows. Returns (loss values of this rank, gradients of the leaves).
    """
    leaves = {
        "z": batch["z"].clone().requires_grad_(True),
        "f": batch["f"].clone().requires_grad_(True),
        "c": batch["c"].clone().requires_grad_(True),
        "log_tau": torch.tensor(math.log(0.15), dtype=torch.float64, requires_grad=True),
    }
    mv = MultiviewContrastiveLoss(rank, world_size, nominal_negatives=16.0)
    it = ImageTextLoss(rank, world_size, view_weight=0.6, t2i_weight=1.4)
    sg = SigmoidMultiviewLoss(rank, world_size, init_bias=-1.5).double()
    tau = leaves["log_tau"].exp()
    z = F.normalize(leaves["z"][rows], dim=-1)
    f = F.normalize(leaves["f"][rows], dim=-1)
    c = F.normalize(leaves["c"], dim=-1)
    valid, pseudo = batch["valid"][rows], batch["pseudo"][rows]
    out_mv = mv(z, valid, pseudo, tau)
    out_it = it(f, z, c, batch["q"][rows], batch["conf"][rows], valid, tau)
    out_sg = sg(z, valid, pseudo, tau)
    (out_mv + out_it.total + out_sg).backward()
    losses = {
        "multiview": out_mv.detach(),
        "i2t": out_it.i2t.detach(),
        "i2t_views": out_it.i2t_views.detach(),
        "t2i": out_it.t2i.detach(),
        "image_text": out_it.total.detach(),
        "sigmoid": out_sg.detach(),
    }
    grads = {k: v.grad for k, v in leaves.items() if v.grad is not None}
    assert sg.bias.grad is not None
    grads["bias"] = sg.bias.grad
    return losses, grads


def _worker(rank: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        batch = make_global_batch()
        rows = slice(rank * LOCAL, (rank + 1) * LOCAL)
        losses, grads = run_losses(batch, rows, rank, WORLD)
        # What DDP does: average gradients of replicated leaves over ranks. The global loss is
        # the mean of the rank losses.
        for g in grads.values():
            dist.all_reduce(g)
            g /= WORLD
        rank_losses = {k: v.item() for k, v in losses.items()}
        for v in losses.values():
            dist.all_reduce(v)
            v /= WORLD
        if rank == 0:
            ref_losses, ref_grads = run_losses(batch, slice(None), 0, 1)
            result = {
                "loss": {k: [losses[k].item(), ref_losses[k].item()] for k in losses},
                "grad_diff": {k: (grads[k] - ref_grads[k]).abs().max().item() for k in ref_grads},
                "grad_scale": {k: ref_grads[k].abs().max().item() for k in ref_grads},
                "grad_keys": sorted(grads),
                "rank0_loss": rank_losses,
            }
            Path(out, "result.json").write_text(json.dumps(result))
        else:
            Path(out, "rank1.json").write_text(json.dumps(rank_losses))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    tmp_mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    res = json.loads((tmp_path / "result.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    for name, (ddp, single) in res["loss"].items():
        assert ddp == pytest.approx(single, abs=TOL), name
        assert single > 0, name  # every term is active on this batch
    # the ranks' own values differ (4 vs 2 valid rows), only their mean is the global loss
    assert res["rank0_loss"]["multiview"] != pytest.approx(rank1["multiview"], abs=1e-3)
    assert res["grad_keys"] == ["bias", "c", "f", "log_tau", "z"]
    for name, diff in res["grad_diff"].items():
        assert res["grad_scale"][name] > 1e-3, name  # a real gradient, not two zeros
        assert diff < TOL, (name, diff)
