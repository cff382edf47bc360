"""Baselines that need no training run of their own: geometry alone, and an untrained encoder.

* **Geometry alone** — the geometric prior's table (``RUN/prior.parquet`` when it was made from
  these shards with the run's prior settings, else computed the same way): the relative
  action-unit proxies (``rel_*``: landmark distances relative to each subject's neutral-like
  scan or a clip's first frame) through the same metric code as the embeddings (k-means, linear
  probe, kNN; imputed and standardised inside each fitted pipeline), and the prior's own naming
  (argmax of its ``p_<class>`` columns) as its zero-shot. No image model, no label to build it.
* **Random-init encoder** — :class:`~mvmodel.train.module.MultiviewVLMTrainer` built from the
  run's config, seeded with the run's seed exactly as ``mvmodel train`` seeds it before building
  the model (so it is the run's own step-0 network when the run used no pretrained weights),
  never trained, written as a weights file and loaded back through
  :meth:`~mvmodel.inference.TrainedModel.load`: it is then embedded and scored by the very code
  path of every trained model.

The trained baselines (supervised upper bound, single-view SimCLR-style, multiview without
pseudo-labels, no prior) are runs of ``mvmodel train`` with their configs; they are evaluated as
runs (``mvmodel evaluate RUN SHARDS --baseline NAME=RUN``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mvmodel.evaluate.metrics import evaluate_representation
from mvmodel.evaluate.protocols import Selection

if TYPE_CHECKING:
    from mvmodel.config import TrainConfig
    from mvmodel.inference import TrainedModel

__all__ = ["geometry_features", "geometry_method", "prior_frame", "random_init_model"]


def prior_frame(
    shards: str,
    samples: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    cache_dir: Path,
    *,
    data_sha256: str = "",
    run_dir: Path | None = None,
) -> tuple[pl.DataFrame, str]:
    """The prior table of every sample of ``shards`` under ``cfg``'s prior settings, and where
    it came from (``run`` or ``computed``).

    The run's ``prior.parquet`` (and its sidecar) are copied into ``cache_dir`` and used when
    their stamp (data fingerprint, prior settings, classes) matches these shards; otherwise the
    table is computed from the samples' landmarks (no label is read) into ``cache_dir``. The run
    directory is never written. ``data_sha256`` (the manifest's) names the cached file, so
    that reports of several shard directories can share ``cache_dir``.
    """
    from mvdata.loaders import open_dataset
    from mvmodel.prior.table import read_prior_table
    from mvmodel.train.data import load_prior

    cache_dir.mkdir(parents=True, exist_ok=True)
    tag = f"prior-{data_sha256[:12]}-{cfg.prior.reference}-{cfg.prior.subject_method}-{cfg.prior.clip}"
    path = cache_dir / f"{tag}.parquet"
    source = "computed"
    if run_dir is not None and (run_dir / "prior.parquet").is_file():
        for suffix in (".parquet", ".json"):
            src = run_dir / f"prior{suffix}"
            if src.is_file():
                shutil.copyfile(src, path.with_suffix(suffix))
        before = _identity(path)
        load_prior(open_dataset(shards), cfg, path, list(samples))
        # load_prior rewrites the file (a new inode) only when the run's stamp did not match.
        source = "run" if _identity(path) == before else "computed"
    else:
        load_prior(open_dataset(shards), cfg, path, list(samples))
    return read_prior_table(path), source


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def geometry_features(
    prior: pl.DataFrame, sel: Selection
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The selection's rows of the prior table: ``[n, F]`` relative proxies (NaN where
    undefined), ``[n, K]`` prior probabilities over the protocol's classes (None when the prior
    lacks one of them), and the proxy column names."""
    from mvmodel.prior.table import PROXY_COLUMNS

    keys = sel.keys
    joined = pl.DataFrame({"key": keys}).join(prior, on="key", how="left", maintain_order="left")
    if joined["subject"].null_count():
        missing = joined.filter(pl.col("subject").is_null())["key"].to_list()
        raise ValueError(
            f"the prior table lacks {len(missing)} evaluated samples, e.g. {missing[:3]}"
        )
    cols = [c for c in PROXY_COLUMNS if c in joined.columns]
    x = joined.select(cols).to_numpy().astype(np.float64)
    pcols = [f"p_{c}" for c in sel.classes]
    scores = (
        joined.select(pcols).to_numpy().astype(np.float64)
        if all(c in joined.columns for c in pcols)
        else None
    )
    return x, scores, cols


def geometry_method(prior: pl.DataFrame, sel: Selection, *, seed: int = 0) -> dict[str, Any]:
    """Geometry alone, through :func:`~mvmodel.evaluate.metrics.evaluate_representation`: the
    AU proxies' linear probe, kNN and k-means, and the prior's own naming as zero-shot."""
    x, scores, cols = geometry_features(prior, sel)
    out = evaluate_representation(x, sel, scores=scores, standardise=True, seed=seed)
    out["features"] = cols
    out["undefined_fraction"] = float(np.isnan(x).mean()) if x.size else 0.0
    return out


def random_init_model(main: TrainedModel, out_dir: Path, device: str = "auto") -> TrainedModel:
    """The run's network before any training (see the module doc), loaded like a trained one.

    ``model.pretrained`` is dropped: the baseline is a random-init encoder.
    """
    import torch

    from mvmodel.checkpoint import write_weights
    from mvmodel.config import config_hash
    from mvmodel.inference import TrainedModel
    from mvmodel.train.module import MultiviewVLMTrainer

    cfg = main.config.model_copy(
        update={"model": main.config.model.model_copy(update={"pretrained": None})}
    )
    trained = main.trainer.state_dict()
    key = "text.net.weight" if "text.net.weight" in trained else "text.net.0.weight"
    text_dim = int(trained[key].shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # what mvmodel train does right before building the model
        trainer = MultiviewVLMTrainer(cfg, text_dim)
    path = out_dir / "model.safetensors"
    meta = {
        "format": "mvmodel.multiviewvlm/1",
        "config": cfg.model_dump_json(),
        "config_hash": f"{config_hash(cfg)}-init",
        "step": "0",
        "classes": ",".join(cfg.text.prompts.classes),
    }
    state = trainer.state_dict()
    if not _same_weights(path, state):
        # Written only when absent or different: safetensors orders the metadata differently
        # on every save, and the file's sha256 keys the embedding cache.
        write_weights(path, state, meta)
    return TrainedModel.load(path, device=device)


def _same_weights(path: Path, state: dict[str, Any]) -> bool:
    """Whether ``path`` holds exactly these tensors (False when absent or unreadable)."""
    import torch

    from mvmodel.checkpoint import CheckpointError, read_weights

    if not path.is_file():
        return False
    try:
        saved, _ = read_weights(path)
    except CheckpointError:
        return False
    return saved.keys() == state.keys() and all(
        torch.equal(saved[k], state[k].detach().cpu()) for k in state
    )
