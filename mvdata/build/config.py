"""The build's settings: one frozen model, validated once, hashed so that a resumed build can
refuse different settings (``OUT/.mvdata/build.json`` keeps them)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import field_validator, model_validator

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
    #: Subject -> fold pairs given by the user (``--folds-from``: an earlier build's manifest,
    #: or a published split list) instead of the seeded assignment; None: seeded by ``seed``.
    subject_folds: tuple[tuple[str, int], ...] | None = None
    #: Where ``subject_folds`` came from, for messages only (not hashed: the pairs are).
    folds_from: str = ""

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

    @model_validator(mode="after")
    def _subject_folds(self) -> BuildConfig:
        if self.subject_folds is None:
            return self
        where = f" in {self.folds_from}" if self.folds_from else ""
        subjects = [s for s, _ in self.subject_folds]
        if not subjects:
            raise ValueError(f"subject_folds: no subject{where}")
        if len(set(subjects)) != len(subjects):
            raise ValueError(f"subject_folds: a subject is listed twice{where}")
        bad = [(s, f) for s, f in self.subject_folds if not 0 <= f < self.num_folds]
        if bad:
            s, f = bad[0]
            raise ValueError(
                f"subject_folds: subject {s!r} has fold {f}{where}, not within "
                f"0..{self.num_folds - 1} (folds count from 0; set --folds to their number)"
            )
        return self

    @property
    def frames_per_sample(self) -> int:
        return 1 if self.kind == "static" else self.clip_frames

    def folds_provenance(self) -> str | None:
        """Where a given subject -> fold map came from, as ``dataset.json`` records it: the
        file's name (not its local path, which means nothing once published) and a digest of
        the pairs, so two builds can be seen to share a split; None for the seeded shuffle."""
        if self.subject_folds is None:
            return None
        pairs = json.dumps(sorted(self.subject_folds)).encode()
        name = Path(self.folds_from).name if self.folds_from else "subject_folds"
        n = len(self.subject_folds)
        return f"{name} ({n} subjects, pairs sha256 {hashlib.sha256(pairs).hexdigest()[:16]})"

    def digest(self) -> str:
        """A short hash of every setting (the same settings give the same digest everywhere)."""
        dump = self.model_dump()
        # Left out while unused, so that builds made before the field keep their digest (and
        # resume); the path never counts, the pairs it gave do.
        dump.pop("folds_from")
        if dump["subject_folds"] is None:
            dump.pop("subject_folds")
        text = json.dumps(dump, sort_keys=True)
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


def read_subject_folds(path: Path) -> tuple[tuple[str, int], ...]:
    """The subject -> fold pairs of a file, sorted by subject: an earlier build's
    ``manifest.parquet`` (reuse its folds: a rebuild with more subjects, other views or another
    reader version keeps every subject's fold), or a CSV (``.csv``; ``.tsv`` tab-separated)
    with a header and the columns ``subject`` and ``fold`` (folds count from 0), e.g. a
    published split list. A ``ValueError`` naming the file for anything else."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file (--folds-from)")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pl.read_parquet(path)
        else:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            frame = pl.read_csv(path, separator=sep, schema_overrides={"subject": pl.String})
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from None
    missing = [c for c in ("subject", "fold") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: no column {' or '.join(missing)} (columns: {', '.join(frame.columns)})"
        )
    pairs = frame.select(
        pl.col("subject").cast(pl.String).str.strip_chars(), pl.col("fold")
    ).unique()
    if pairs["subject"].null_count() or pairs["fold"].null_count():
        raise ValueError(f"{path}: an empty subject or fold")
    fold = pairs["fold"]
    # A strict cast still truncates 1.5 to 1: a float column must hold whole numbers only.
    fractional = fold.dtype.is_float() and bool((fold != fold.floor()).any())
    try:
        pairs = pairs.with_columns(pl.col("fold").cast(pl.Int64, strict=True))
    except pl.exceptions.PolarsError:
        fractional = True
    if fractional:
        raise ValueError(f"{path}: the fold column holds something other than whole numbers")
    twice = pairs.filter(pl.col("subject").is_duplicated())["subject"].unique().sort()
    if len(twice):
        raise ValueError(
            f"{path}: {len(twice)} subject(s) in two folds (a subject must be in one): "
            f"{', '.join(twice.to_list()[:5])}"
        )
    if pairs.is_empty():
        raise ValueError(f"{path}: no rows")
    return tuple((str(s), int(f)) for s, f in pairs.sort("subject").iter_rows())
