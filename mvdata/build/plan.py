"""The build plan: settings, subject-independent folds, the global seeded shuffle, shards.

:func:`make_plan` is a pure function of (source files, settings), so every worker of a
multi-machine build computes the same plan; ``BuildConfig.digest`` (:mod:`mvdata.build.config`) lets a resumed build refuse
different settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mvdata.build.config import BuildConfig
from mvdata.core import Item, ReadError
from mvdata.shards.names import shard_name
from mvdata.sources.registry import get_source
from schemas.models import ManifestRow
from schemas.tables import frame_from_rows


@dataclass
class Plan:
    config: BuildConfig
    items: dict[str, Item]  # key -> item
    manifest: pl.DataFrame  # ManifestRow columns, ordered by (shard, index_in_shard)
    scan_errors: list[ReadError]
    licence: str
    dataset: str

    @property
    def shard_names(self) -> list[str]:
        return sorted(set(self.manifest["shard_name"].to_list()))


def assign_folds(subjects: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Subject -> fold: subjects sorted, shuffled with ``seed`` and dealt round-robin, so folds
    differ in size by at most one subject and no subject spans two folds."""
    ordered = sorted(set(subjects))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    perm = rng.permutation(len(ordered))
    return {ordered[int(i)]: pos % num_folds for pos, i in enumerate(perm)}


def _given_folds(cfg: BuildConfig, subjects: Sequence[str]) -> dict[str, int]:
    """The user's subject -> fold map; every subject of the items built must be in it (a subject
    left out would need a fold chosen here, and any choice could break the user's split)."""
    folds = dict(cfg.subject_folds or ())
    missing = sorted(set(subjects) - folds.keys())
    if missing:
        raise ValueError(
            f"{cfg.folds_from or 'subject_folds'}: no fold for {len(missing)} subject(s) of "
            f"{cfg.source_root}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return folds


def make_plan(cfg: BuildConfig) -> Plan:
    """Scan the source and lay out every sample: folds, global shuffle, shards."""
    root = Path(cfg.source_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    source = get_source(cfg.source)
    scan = source.scan(root)
    items = [it for it in scan.items if it.kind == cfg.kind]
    if not items:
        kinds = Counter(it.kind for it in scan.items)
        hint = f" (found {dict(kinds)}; choose --kind accordingly)" if kinds else ""
        raise ValueError(f"{root}: the {cfg.source} reader found no {cfg.kind} items{hint}")
    if cfg.subject_folds is not None:
        folds = _given_folds(cfg, [it.meta.subject for it in items])
    else:
        # Folds from every subject the reader found, of either kind: a static and a sequence
        # build of one root then share the subject -> fold map even where a subject lacks one
        # kind, so a model trained on one build's training folds never meets its subjects in
        # the other's tests.
        folds = assign_folds([it.meta.subject for it in scan.items], cfg.num_folds, cfg.seed)
    items.sort(key=lambda it: it.key)
    repeated = sorted(k for k, n in Counter(it.key for it in items).items() if n > 1)
    if repeated:  # a reader's bug: one sample would silently replace another
        shown = ", ".join(repeated[:5])
        raise ValueError(
            f"{root}: the {cfg.source} reader gave {len(repeated)} keys twice: {shown}"
        )
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2,)))
    order = rng.permutation(len(items))
    rows: list[dict[str, Any]] = []
    for pos, idx in enumerate(order):
        it = items[int(idx)]
        shard = pos // cfg.samples_per_shard
        rows.append(
            dict(
                key=it.key,
                source=it.source,
                dataset=it.meta.dataset,
                subject=it.meta.subject,
                sequence=it.meta.sequence,
                kind=it.kind,
                num_source_frames=it.num_frames,
                expression=it.meta.expression,
                intensity=it.meta.intensity,
                fold=folds[it.meta.subject],
                split=cfg.split,
                shard=shard,
                shard_name=shard_name(cfg.split, shard),
                index_in_shard=pos % cfg.samples_per_shard,
                order=pos,
            )
        )
    manifest = frame_from_rows(ManifestRow, rows)
    return Plan(
        config=cfg,
        items={it.key: it for it in items},
        manifest=manifest,
        scan_errors=list(scan.errors),
        licence=source.licence,
        dataset=items[0].meta.dataset,
    )
