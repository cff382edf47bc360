"""Frozen embeddings of every sample, computed once per (checkpoint, data) and cached.

A model embeds every sample of the shard directory in one eval pass (sorted, no augmentation);
the fused embedding ``f`` and the zero-shot probabilities over the model's classes are written to
``CACHE/<checkpoint sha256[:16]>-<manifest sha256[:12]>-<views>.parquet`` with a JSON sidecar
naming what made it. Protocols, metrics and reports read the cache: evaluating the same
checkpoint again (another protocol, more baselines) embeds nothing. The cache is keyed by the
checkpoint's bytes, not the run's name: another checkpoint never reuses it.

A run trained on a subset of the views (``data.views``, e.g. the single-view baseline) is
embedded from those views only, as it was trained; any other run from every view of the shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from mvdata.io import atomic_write, atomic_write_json
from mvdata.shards.reader import filesystem

if TYPE_CHECKING:
    from mvmodel.inference import TrainedModel

__all__ = ["FeatureSet", "embed_features", "manifest_sha256"]

#: Bumped when the cached columns change meaning (a cache of another version is recomputed).
CACHE_VERSION = 1


def manifest_sha256(shards: str | Path) -> str:
    """sha256 of ``SHARDS/manifest.parquet``: the data's fingerprint in reports and caches."""
    fs, root = filesystem(str(shards))
    path = f"{root}/manifest.parquet"
    h = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no manifest (is {shards} a `mvdata build` output?)"
        ) from None
    return h.hexdigest()


@dataclass
class FeatureSet:
    """Embeddings of every sample of a shard directory by one model."""

    name: str
    keys: list[str]
    #: ``[N, D]`` fused embeddings (unit rows, as the model outputs them).
    f: NDArray[np.float32]
    #: ``[N, K]`` zero-shot probabilities over :attr:`classes` (None for a model without them).
    zero_shot: NDArray[np.float32] | None
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def rows(self, keys: Sequence[str]) -> NDArray[np.int64]:
        """Row index of each key; ``ValueError`` naming keys this set does not hold."""
        index = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in index]
        if missing:
            raise ValueError(
                f"{self.name}: {len(missing)} evaluated samples were not embedded (e.g. "
                f"{missing[:3]}): were the features made from other shards?"
            )
        return np.asarray([index[k] for k in keys], dtype=np.int64)

    def zero_shot_scores(self, keys: Sequence[str], classes: Sequence[str]) -> NDArray[Any] | None:
        """``[n, len(classes)]`` zero-shot probabilities of ``keys`` restricted to ``classes``
        (the argmax is then over the protocol's classes only), or None when the model lacks a
        class of the protocol."""
        if self.zero_shot is None or any(c not in self.classes for c in classes):
            return None
        cols = [self.classes.index(c) for c in classes]
        return self.zero_shot[self.rows(keys)][:, cols]


def _cache_stem(sha: str, data: str, views: tuple[int, ...] | None) -> str:
    tag = "all" if views is None else "v" + "-".join(map(str, views))
    return f"{sha[:16]}-{data[:12]}-{tag}"


def embed_features(
    model: TrainedModel,
    shards: str | Path,
    cache_dir: str | Path,
    *,
    name: str,
    batch_size: int = 32,
    num_workers: int = 2,
    data_sha256: str | None = None,
) -> FeatureSet:
    """Every sample of ``shards`` through ``model`` (one eval epoch), cached in ``cache_dir``."""
    data = data_sha256 or manifest_sha256(shards)
    views = model.trained_views
    stem = _cache_stem(model.checkpoint_sha256, data, views)
    cache = Path(cache_dir)
    table_path, side_path = cache / f"{stem}.parquet", cache / f"{stem}.json"
    stamp = {
        "cache_version": CACHE_VERSION,
        "checkpoint_sha256": model.checkpoint_sha256,
        "manifest_sha256": data,
        "views": list(views) if views is not None else None,
        "classes": list(model.classes),
    }
    if table_path.is_file() and side_path.is_file():
        try:
            side = json.loads(side_path.read_text())
        except (OSError, ValueError):
            side = {}
        if side.get("stamp") == stamp:
            df = pl.read_parquet(table_path)
            return _from_frame(df, name, list(model.classes), {**side["info"], "cached": True})

    t0 = time.perf_counter()
    keys: list[str] = []
    fs: list[NDArray[np.float32]] = []
    zs: list[NDArray[np.float32]] = []
    for batch in model.loader(shards, batch_size=batch_size, num_workers=num_workers):
        if not batch.num_valid:
            continue
        emb = model.embed_batch(batch)  # the run's own views (TrainedModel.trained_views)
        keys.extend(emb.keys)
        fs.append(emb.f.astype(np.float32))
        zs.append(model.zero_shot(emb.f).astype(np.float32))
    if not keys:
        raise ValueError(f"{shards}: the loader gave no sample to embed")
    f = np.concatenate(fs)
    z = np.concatenate(zs)
    seconds = time.perf_counter() - t0
    info = {
        "model_id": model.model_id,
        "checkpoint_sha256": model.checkpoint_sha256,
        "step": model.step,
        "weights": str(model.source),
        "views": list(views) if views is not None else "all",
        "manifest_sha256": data,
        "num_samples": len(keys),
        "embed_seconds": round(seconds, 2),
        "device": str(model.device),
        "cache": str(table_path),
    }
    df = pl.DataFrame(
        {
            "key": keys,
            "f": pl.Series("f", f, dtype=pl.Array(pl.Float32, f.shape[1])),
            **{f"zs_{c}": z[:, i] for i, c in enumerate(model.classes)},
        }
    )
    buf = io.BytesIO()
    df.write_parquet(buf)
    atomic_write(table_path, buf.getvalue())
    atomic_write_json(side_path, {"stamp": stamp, "info": info})  # written last: the commit
    return _from_frame(df, name, list(model.classes), {**info, "cached": False})


def _from_frame(
    df: pl.DataFrame, name: str, classes: list[str], info: dict[str, Any]
) -> FeatureSet:
    zcols = [f"zs_{c}" for c in classes]
    return FeatureSet(
        name=name,
        keys=df["key"].to_list(),
        f=df["f"].to_numpy().astype(np.float32),
        zero_shot=df.select(zcols).to_numpy().astype(np.float32)
        if all(c in df.columns for c in zcols)
        else None,
        classes=classes,
        info=info,
    )
