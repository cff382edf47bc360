"""Summaries of a built shard directory: counts for ``mvdata info`` and a contact sheet PNG.

Counts come from the per-shard parquet files (they list written and failed samples alike) and
the stats files; ``dataset.json`` adds the name, views and modalities when present.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydantic import ValidationError

from mvdata.shards.codecs import image_problem
from mvdata.shards.contact_sheet import contact_sheet
from mvdata.shards.names import DATA_DIR, MODALITY_EXT
from mvdata.shards.reader import (
    file_type_problem,
    filesystem,
    iter_samples,
    list_shards,
    read_shard_rows,
    read_stats,
)
from schemas.models import DatasetMetadata

#: Folder of a build's own state (``mvdata.build.config.STATE_DIR``; shards cannot import build).
_STATE_DIR = ".mvdata"


@dataclass
class Info:
    """What :func:`dataset_info` reports about a shard directory."""

    out_dir: str
    name: str | None = None
    source: str | None = None
    num_shards: int = 0
    num_uncommitted: int = 0
    num_samples: int = 0
    num_failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    subjects: int = 0
    folds: dict[int, int] = field(default_factory=dict)
    expressions: dict[str, int] = field(default_factory=dict)
    tar_bytes: int = 0
    num_views: int | None = None
    modalities: list[str] = field(default_factory=list)
    image_size: int | None = None
    clip_frames: int | None = None
    schema_version: str | None = None

    def rows(self) -> list[tuple[str, str]]:
        """``(field, value)`` pairs for a two-column table."""

        def fmt(d: dict[int, int] | dict[str, int]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])))

        out = [
            ("name", self.name or "-"),
            ("source", self.source or "-"),
            ("schema version", self.schema_version or "-"),
            ("shards (committed)", str(self.num_shards)),
            ("shards not committed", str(self.num_uncommitted)),
            ("samples", str(self.num_samples)),
            ("failed", str(self.num_failed)),
            ("failures per kind", fmt(self.errors) or "-"),
            ("subjects", str(self.subjects)),
            ("samples per fold", fmt(self.folds) or "-"),
            ("samples per expression", fmt(self.expressions) or "-"),
            ("tar bytes", f"{self.tar_bytes:,}"),
        ]
        if self.num_views is not None:
            out += [
                ("views", str(self.num_views)),
                ("modalities", ", ".join(self.modalities)),
                ("image size", f"{self.image_size} px"),
                ("frames per clip", str(self.clip_frames)),
            ]
        return out


def dataset_info(out_dir: str) -> Info:
    """Summarise ``out_dir``: committed shards, samples, failures per kind, subjects, folds.

    A ``ValueError`` names the file when ``out_dir`` is not a shard directory (neither
    ``dataset.json``, nor a build's ``.mvdata/build.json``, nor a ``data/`` folder) or when a
    file it reads is not what it should be."""
    fs, root = filesystem(out_dir)
    if not fs.exists(root):
        raise FileNotFoundError(f"{out_dir} does not exist")
    if not fs.isdir(root):
        raise ValueError(f"{out_dir}: not a directory (info takes a shard directory)")
    marks = [f"{root}/dataset.json", f"{root}/{_STATE_DIR}/build.json"]
    if not any(fs.exists(m) for m in marks) and not list_shards(out_dir, committed_only=False):
        raise ValueError(
            f"{out_dir}: not an mvdata shard directory (no dataset.json, no "
            f"{_STATE_DIR}/build.json, no shard under {DATA_DIR}/)"
        )
    info = Info(out_dir)
    meta_path = f"{root}/dataset.json"
    if fs.exists(meta_path):
        problem = file_type_problem(fs, meta_path)
        if problem:
            raise ValueError(problem)
        try:
            with fs.open(meta_path, "rb") as f:
                meta = DatasetMetadata.model_validate_json(f.read())
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(
                f"{meta_path}: not a valid dataset.json ({exc.error_count()} errors, first: "
                f"{first['msg']} at {first['loc']})"
            ) from None
        info.name, info.source, info.schema_version = meta.name, meta.source, meta.schema_version
        info.num_views, info.modalities = len(meta.views), list(meta.modalities)
        info.image_size, info.clip_frames = meta.image_size, meta.clip_frames
    committed = list_shards(out_dir)
    info.num_shards = len(committed)
    info.num_uncommitted = len(list_shards(out_dir, committed_only=False)) - len(committed)
    errors: Counter[str] = Counter()
    folds: Counter[int] = Counter()
    expressions: Counter[str] = Counter()
    subjects: set[str] = set()
    for name in committed:
        info.tar_bytes += read_stats(out_dir, name).tar_bytes
        for r in read_shard_rows(out_dir, name):
            if r.status == "failed":
                info.num_failed += 1
                errors[str(r.error_kind)] += 1
                continue
            info.num_samples += 1
            subjects.add(r.subject)
            folds[r.fold] += 1
            expressions[r.expression or "-"] += 1
    info.errors, info.folds, info.expressions = dict(errors), dict(folds), dict(expressions)
    info.subjects = len(subjects)
    return info


def _image_size(sample: dict[str, Any], first: bytes) -> int:
    """The sample's image size: from its ``json`` member, else the first image's width."""
    try:
        return int(json.loads(sample["json"])["image_size"])
    except (KeyError, ValueError, TypeError):
        pass
    try:
        with Image.open(io.BytesIO(first)) as im:
            return int(im.size[0])
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0  # image_problem then names what is wrong with it


def _decode(ext: str, data: bytes, where: str, size: int) -> np.ndarray:
    problem = image_problem(ext.split(".", 2)[-1], data, size)
    if problem:
        raise ValueError(f"{where} member {ext}: {problem}")
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im)
    if ext.endswith("depth.png"):
        return arr.astype(np.uint16)
    return arr


def write_contact_sheet(out_dir: str, png_path: str, n: int = 4) -> None:
    """Write a PNG of the first ``n`` samples: views side by side per modality, one row per
    sample; for 4D clips one row each for the first, middle and last frame, so the motion shows.

    A ``ValueError`` names the file when ``png_path`` is a directory or a member shown does not
    decode."""
    fs_png, path_png = filesystem(png_path)
    if fs_png.isdir(path_png):
        raise ValueError(f"{png_path}: is a directory; give the PNG file to write")
    rows: list[dict[str, np.ndarray]] = []
    labels: list[str] = []
    shown = 0
    for name in list_shards(out_dir):
        for sample in iter_samples(out_dir, name, limit=n - shown):
            shown += 1
            num_frames = len({e.split(".", 1)[0] for e in sample if e.startswith("t")})
            frames = sorted({0, num_frames // 2, num_frames - 1})
            for t in frames:
                row: dict[str, np.ndarray] = {}
                for modality, suffix in MODALITY_EXT.items():
                    exts = sorted(
                        e for e in sample if e.startswith(f"t{t:02d}.") and e.endswith(suffix)
                    )
                    if exts:
                        where = f"shard {name} key {sample['__key__']}"
                        size = _image_size(sample, sample[exts[0]])
                        row[modality] = np.stack([_decode(e, sample[e], where, size) for e in exts])
                rows.append(row)
                labels.append(
                    str(sample["__key__"]) + (f"  frame t{t:02d}" if num_frames > 1 else "")
                )
        if shown >= n:
            break
    if not rows:
        raise ValueError(f"{out_dir} has no committed sample to show")
    sheet = contact_sheet(rows, labels)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    with fs_png.open(path_png, "wb") as f:
        f.write(buf.getvalue())
