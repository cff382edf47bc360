"""The build plan: settings, subject-independent folds, the global seeded shuffle, shards.

:func:`make_plan` is a pure function of (source files, settings), so every worker of a
multi-machine build computes the same plan; ``BuildConfig.digest`` lets a resumed build refuse
different settings.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from mvdata.mesh import Item, ReadError
from mvdata.render import DEFAULT_VIEWS
from mvdata.shards import shard_name
from schemas.models import ManifestRow, Modality
from schemas.tables import frame_from_rows


@dataclass(frozen=True)
class BuildConfig:
    """Every setting that changes the bytes of the shards (hashed; a resume must match)."""

    source: str
    source_root: str
    kind: Literal["static", "sequence"] = "static"
    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    modalities: tuple[Modality, ...] = ("rgb", "depth")
    image_size: int = 224
    clip_frames: int = 8
    clip_sampling: Literal["uniform", "motion"] = "uniform"
    samples_per_shard: int = 256
    num_folds: int = 10
    seed: int = 0
    split: str = "train"
    jpeg_quality: int = 90
    name: str = ""

    def validate(self) -> None:
        """Raise ``ValueError`` with one clear message for a bad setting."""
        if self.kind not in ("static", "sequence"):
            raise ValueError(f"--kind must be static or sequence, got {self.kind!r}")
        if not self.views:
            raise ValueError("at least one view is needed")
        for yaw, pitch in self.views:
            if not (-90 < yaw < 90 and -60 < pitch < 60):
                raise ValueError(f"view ({yaw}, {pitch}) out of range: |yaw| < 90, |pitch| < 60")
        bad = [m for m in self.modalities if m not in ("rgb", "depth", "normal")]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct among rgb, depth, normal; got {list(self.modalities)}")
        if not 16 <= self.image_size <= 2048:
            raise ValueError("image size must be within 16..2048")
        if self.clip_frames < 1 or self.clip_frames > 64:
            raise ValueError("clip frames must be within 1..64")
        if self.clip_sampling not in ("uniform", "motion"):
            raise ValueError(f"clip sampling must be uniform or motion, got {self.clip_sampling!r}")
        if self.samples_per_shard < 1:
            raise ValueError("samples per shard must be at least 1")
        if self.num_folds < 2:
            raise ValueError("at least 2 folds are needed")
        if not self.split.isidentifier() or "-" in self.split:
            raise ValueError(f"split name {self.split!r} must be letters, digits and _")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("JPEG quality must be within 1..100")

    @property
    def frames_per_sample(self) -> int:
        return 1 if self.kind == "static" else self.clip_frames

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def make_plan(cfg: BuildConfig) -> Plan:
    """Scan the source and lay out every sample: folds, global shuffle, shards."""
    from mvdata.sources import get_source

    cfg.validate()
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
    folds = assign_folds([it.meta.subject for it in items], cfg.num_folds, cfg.seed)
    items.sort(key=lambda it: it.key)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2,)))
    order = rng.permutation(len(items))
    rows: list[dict[str, Any]] = []
    for pos, idx in enumerate(order):
        it = items[int(idx)]
        shard = pos // cfg.samples_per_shard
        rows.append(
            dict(
                key=it.key, source=it.source, dataset=it.meta.dataset, subject=it.meta.subject,
                sequence=it.meta.sequence, kind=it.kind, num_source_frames=it.num_frames,
                expression=it.meta.expression, intensity=it.meta.intensity,
                fold=folds[it.meta.subject], split=cfg.split, shard=shard,
                shard_name=shard_name(cfg.split, shard), index_in_shard=pos % cfg.samples_per_shard,
                order=pos,
            )
        )  # fmt: skip
    manifest = frame_from_rows(ManifestRow, rows)
    return Plan(
        config=cfg,
        items={it.key: it for it in items},
        manifest=manifest,
        scan_errors=list(scan.errors),
        licence=source.licence,
        dataset=items[0].meta.dataset,
    )


def parse_views(text: str) -> tuple[tuple[float, float], ...]:
    """``"0,0;-20,0;20,0"`` or ``"0;-20;20"`` (yaw only) -> ((yaw, pitch), ...)."""
    views = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        nums = part.split(",")
        try:
            yaw = float(nums[0])
            pitch = float(nums[1]) if len(nums) > 1 else 0.0
        except ValueError:
            raise ValueError(f"bad view {part!r}: write yaw[,pitch] in degrees, views separated by ';'") from None
        if len(nums) > 2:
            raise ValueError(f"bad view {part!r}: at most yaw,pitch")
        views.append((yaw, pitch))
    if not views:
        raise ValueError("no views given")
    return tuple(views)
