"""The build's settings: one frozen model, validated once, hashed so that a resumed build can
refuse different settings (``OUT/.mvdata/build.json`` keeps them)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import field_validator, model_validator

from mvdata.core import Settings
from mvdata.render.cameras import DEFAULT_VIEWS, check_views
from schemas.models import MODALITIES, Modality

#: Folder of a build's own state inside its output (``build.json``: settings and their digest).
STATE_DIR = ".mvdata"


class BuildConfig(Settings):
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

    @field_validator("views")
    @classmethod
    def _views(cls, views: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        return check_views(views)

    @model_validator(mode="after")
    def _check(self) -> BuildConfig:
        """One clear message for a bad setting."""
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(
                f"modalities must be distinct among {', '.join(MODALITIES)}; "
                f"got {list(self.modalities)}"
            )
        if not 16 <= self.image_size <= 2048:
            raise ValueError("image size must be within 16..2048")
        if self.clip_frames < 1 or self.clip_frames > 64:
            raise ValueError("clip frames must be within 1..64")
        if self.samples_per_shard < 1:
            raise ValueError("samples per shard must be at least 1")
        if self.num_folds < 2:
            raise ValueError("at least 2 folds are needed")
        if not self.split.isidentifier() or "-" in self.split:
            raise ValueError(f"split name {self.split!r} must be letters, digits and _")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("JPEG quality must be within 1..100")
        return self

    @property
    def frames_per_sample(self) -> int:
        return 1 if self.kind == "static" else self.clip_frames

    def digest(self) -> str:
        """A short hash of every setting (the same settings give the same digest everywhere)."""
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
            raise ValueError(
                f"bad view {part!r}: write yaw[,pitch] in degrees, views separated by ';'"
            ) from None
        if len(nums) > 2:
            raise ValueError(f"bad view {part!r}: at most yaw,pitch")
        views.append((yaw, pitch))
    if not views:
        raise ValueError("no views given")
    return tuple(views)
