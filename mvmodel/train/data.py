"""What a run needs from the shard directory before the first step: the directory checked
against the config, the geometric prior's table (computed once, cached in the run), and the
held-back labels kept apart for measurement."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvdata.io import atomic_write
from mvdata.loaders import DatasetInfo, open_dataset
from mvdata.shards.meta import iter_sample_jsons
from mvmodel.config import TrainConfig

if TYPE_CHECKING:  # polars is imported where the table is made: a GPU image may lack it
    import polars as pl

    from mvmodel.prior.table import PriorIndex

__all__ = [
    "HeldBackLabels",
    "check_shards",
    "data_fingerprint",
    "load_prior",
]


def check_shards(shards: str, cfg: TrainConfig) -> DatasetInfo:
    """Open the shard directory and check it can feed this config, before any work.

    ``ValueError`` (one message naming the file or the setting) for: not a shard directory, a
    schema mismatch, an empty split (from :func:`mvdata.loaders.open_dataset`), shards without the
    modalities ``model.channels`` asks for, more views or frames than the model takes.
    """
    info = open_dataset(shards, split=cfg.data.split)
    channels = cfg.model.channels
    meta_path = f"{info.root}/dataset.json"
    fits = "rgb+depth" if "depth" in info.meta.modalities else "rgb"
    for needed in ("depth", "normal"):
        if needed in channels and needed not in info.meta.modalities:
            # the default channels need normals (since 2026-12-05): shards built earlier with
            # the old default "rgb,depth" end up here, so name both ways out
            raise ValueError(
                f"{meta_path}: the shards carry {list(info.meta.modalities)}, but model.channels="
                f"{channels} needs {needed}: rebuild with --modalities rgb,depth,normal, or "
                f"train with model.channels={fits}"
            )
    if info.num_views > cfg.model.max_views:
        raise ValueError(
            f"{meta_path}: {info.num_views} views per sample, but model.max_views="
            f"{cfg.model.max_views}"
        )
    if info.frames > cfg.model.max_frames:
        raise ValueError(
            f"{meta_path}: {info.frames} frames per clip, but model.max_frames="
            f"{cfg.model.max_frames}"
        )
    return info


def data_fingerprint(info: DatasetInfo) -> str:
    """A short hash of what the run reads: the dataset metadata and the samples per shard."""
    doc = {"dataset": info.meta.model_dump(mode="json"), "sizes": info.sizes}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def training_keys(samples: Sequence[dict[str, Any]], cfg: TrainConfig) -> set[str]:
    """Keys of the samples that train under ``cfg``: in ``data.split`` (when set) and not in a
    ``data.exclude_folds`` fold (each sample json's ``split`` and ``fold``)."""
    held_out = set(cfg.data.exclude_folds)
    return {
        str(s["key"])
        for s in samples
        if (cfg.data.split is None or s.get("split") == cfg.data.split)
        and s.get("fold") not in held_out
    }


def load_prior(
    info: DatasetInfo, cfg: TrainConfig, path: Path, samples: Sequence[dict[str, Any]] | None
) -> PriorIndex:
    """The geometric prior of every sample, keyed by sample key.

    Computed once from the samples' landmarks (``samples``: their parsed json members; read from
    the shards when None) and cached at ``path`` with a sidecar naming the data fingerprint and
    the prior settings; a cache made from other data or settings is recomputed. Never called in
    the training loop: a step only looks rows up.
    """
    from mvmodel.prior.table import PriorIndex, prior_table, read_prior_table, write_prior_table

    stamp = {"data": data_fingerprint(info), "prior": cfg.prior.model_dump(mode="json")}
    stamp["classes"] = list(cfg.text.prompts.classes)
    if cfg.prior.fit == "training":
        stamp["fit"] = {"split": cfg.data.split, "exclude_folds": list(cfg.data.exclude_folds)}
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == stamp:
                return PriorIndex(read_prior_table(path))
        except (OSError, ValueError):
            pass  # an unreadable cache is recomputed below
    rows = list(samples) if samples is not None else list(iter_sample_jsons(info.root))
    neutral = "neutral" in cfg.text.prompts.classes
    table = prior_table(
        rows,
        reference=cfg.prior.reference,
        subject_method=cfg.prior.subject_method,
        clip=cfg.prior.clip,
        temperature=cfg.prior.temperature,
        neutral=neutral,
        fit_keys=training_keys(rows, cfg) if cfg.prior.fit == "training" else None,
    )
    table = _order_classes(table, cfg.text.prompts.classes)
    write_prior_table(table, path)
    atomic_write(sidecar, json.dumps(stamp, sort_keys=True).encode())
    return PriorIndex(read_prior_table(path))


def _order_classes(table: pl.DataFrame, classes: Sequence[str]) -> pl.DataFrame:
    """Keep the prior's probability columns in the prompt bank's class order."""
    prob = [c for c in table.columns if c.startswith("p_")]
    wanted = [f"p_{c}" for c in classes]
    missing = [c for c in wanted if c not in prob]
    if missing:
        raise ValueError(f"the geometric prior has no column for {missing}")
    others = [c for c in table.columns if c not in prob]
    return table.select([*others, *wanted])


@dataclass(frozen=True)
class HeldBackLabels:
    """Each sample's source label, read from its json member for MEASUREMENT only.

    Training never sees this object: it is given to the epoch-end agreement measurement alone
    (a test scrambles these labels and checks that training stays bit-identical).
    """

    expression: dict[str, str | None]

    @classmethod
    def from_samples(cls, samples: Sequence[dict[str, Any]]) -> HeldBackLabels:
        out: dict[str, str | None] = {}
        for s in samples:
            labels = s.get("labels") or {}
            out[str(s["key"])] = labels.get("expression") if isinstance(labels, dict) else None
        return cls(out)

    def of(self, keys: Sequence[str]) -> list[str | None]:
        """The labels of ``keys`` (None where a key has none)."""
        return [self.expression.get(k) for k in keys]
