"""Shard naming: the ``data/{split}-{NNNNNN}`` files of a shard directory, sample keys and
the member names of a sample (``{key}.tNN.vNN.rgb.jpg``, ...). Read by the writer, the readers,
the loaders and verify alike: one spelling of the format."""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.models import MODALITIES, Modality

#: Sub-folder of a dataset that holds the shards.
DATA_DIR = "data"

#: File name suffix of each modality's image member.
MODALITY_EXT: dict[Modality, str] = {"rgb": "rgb.jpg", "depth": "depth.png", "normal": "normal.png"}
assert tuple(MODALITY_EXT) == MODALITIES, "one member extension per modality"

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")

_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{6})$")


# --------------------------------------------------------------------------- names
def shard_name(split: str, index: int) -> str:
    """``shard_name("train", 3) == "train-000003"``."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", split):
        raise ValueError(f"split {split!r} must match [A-Za-z0-9_]+")
    if not 0 <= index <= 999_999:
        raise ValueError(f"shard index {index} out of range 0..999999")
    return f"{split}-{index:06d}"


def parse_shard_name(name: str) -> tuple[str, int]:
    """Inverse of :func:`shard_name`: ``"train-000003" -> ("train", 3)``."""
    m = _SHARD_RE.match(name)
    if m is None:
        raise ValueError(f"not a shard name: {name!r}")
    return m["split"], int(m["index"])


def member_names(num_frames: int, num_views: int, modalities: Sequence[Modality]) -> list[str]:
    """Member extensions of every sample (``json`` included), sorted as they appear in the tar."""
    if not 1 <= num_frames <= 100 or not 1 <= num_views <= 100:
        raise ValueError("num_frames and num_views must be in 1..100 (two-digit member names)")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}")
    exts = ["json"]
    for t in range(num_frames):
        for v in range(num_views):
            exts.extend(f"t{t:02d}.v{v:02d}.{MODALITY_EXT[m]}" for m in modalities)
    return sorted(exts)


def check_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is a valid sample key (ASCII ``[A-Za-z0-9_-]``)."""
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"sample key {key!r} must match [A-Za-z0-9_-]+ (no dots)")


def shard_paths(out_dir: str, name: str) -> dict[str, str]:
    """Final paths (inside ``out_dir``) of a shard's four files, by kind."""
    base = f"{out_dir.rstrip('/')}/{DATA_DIR}/{name}"
    return {
        "tar": f"{base}.tar",
        "idx": f"{base}.idx",
        "parquet": f"{base}.parquet",
        "stats": f"{base}.stats.json",
    }
