"""The build's settings: one frozen model, validated once, hashed so that a resumed build can
refuse different settings (``OUT/.mvdata/build.json`` keeps them)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import field_validator

from mvdata.core import Settings
from mvdata.render.cameras import DEFAULT_VIEWS, check_views
from schemas.models import MODALITIES, Modality

#: Folder of a build's own state inside its output (``build.json``: settings and their digest,
#: the source files' fingerprint; ``lock``: held while a build writes).
STATE_DIR = ".mvdata"

#: Longest split name: it is part of every shard file name.
MAX_SPLIT_LEN = 64
_SPLIT_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_SPLIT_LEN - 1}}}")


def _within(value: int, lo: int, hi: int | None = None) -> int:
    if value < lo or (hi is not None and value > hi):
        limit = f"within {lo}..{hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"must be {limit}, got {value}")
    return value


class BuildConfig(Settings):
    """Every setting that changes the bytes of the shards (hashed; a resume must match)."""

    source: str
    source_root: str
    kind: Literal["static", "sequence"] = "static"
    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    modalities: tuple[Modality, ...] = ("rgb", "depth", "normal")
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

    # One validator a field, so that a bad value's error names its field (the CLI turns the
    # field into its option). Validators never change model_dump(), so the digest of existing
    # builds stays what it was.
    @field_validator("modalities")
    @classmethod
    def _modalities(cls, modalities: tuple[Modality, ...]) -> tuple[Modality, ...]:
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(
                f"must be distinct among {', '.join(MODALITIES)}; got {list(modalities)}"
            )
        return modalities

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, value: int) -> int:
        return _within(value, 16, 2048)

    @field_validator("clip_frames")
    @classmethod
    def _clip_frames(cls, value: int) -> int:
        return _within(value, 1, 64)

    @field_validator("samples_per_shard")
    @classmethod
    def _samples_per_shard(cls, value: int) -> int:
        return _within(value, 1)

    @field_validator("num_folds")
    @classmethod
    def _num_folds(cls, value: int) -> int:
        return _within(value, 2)

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        return _within(value, 0)  # numpy's SeedSequence takes no negative seed

    @field_validator("jpeg_quality")
    @classmethod
    def _jpeg_quality(cls, value: int) -> int:
        return _within(value, 1, 100)

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        # The split names every shard file: ASCII letters, digits and _ (no '-', which parts
        # the shard index off), short enough for file names on every filesystem.
        if not _SPLIT_RE.fullmatch(value):
            raise ValueError(
                f"{value[:40]!r}{'...' if len(value) > 40 else ''} must be 1-{MAX_SPLIT_LEN} "
                "ASCII letters, digits and _ (not starting with a digit)"
            )
        return value

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
