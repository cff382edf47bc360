"""Read a shard directory: committed shards, their stats, parquet rows and samples.

A shard is committed exactly when its ``stats.json`` exists and parses (the writer writes it
last, by temp file + rename). Everything here only reads; ``out_dir`` is a local path or an
fsspec URL.
"""

from __future__ import annotations

import tarfile
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from mvdata.shards.names import _SHARD_RE, DATA_DIR, shard_paths
from schemas.models import ShardRow, ShardStats, SizesJson
from schemas.tables import check_frame


def filesystem(out_dir: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``out_dir`` and its root path (no trailing slash)."""
    fs, root = url_to_fs(out_dir)
    return fs, root.rstrip("/")


# --------------------------------------------------------------------------- readers
def is_committed(out_dir: str, shard_name: str) -> bool:
    """True when the shard's ``stats.json`` exists and parses as :class:`ShardStats`."""
    try:
        read_stats(out_dir, shard_name)
    except (FileNotFoundError, ValueError):
        return False
    return True


def read_stats(out_dir: str, shard_name: str) -> ShardStats:
    """The shard's stats (``FileNotFoundError`` when absent, ``ValueError`` when invalid)."""
    fs, root = filesystem(out_dir)
    with fs.open(shard_paths(root, shard_name)["stats"], "rb") as f:
        return ShardStats.model_validate_json(f.read())


def list_shards(out_dir: str, *, committed_only: bool = True) -> list[str]:
    """Sorted shard names under ``out_dir/data``: committed ones, or any with a tar or stats."""
    fs, root = filesystem(out_dir)
    data = f"{root}/{DATA_DIR}"
    if not fs.exists(data):
        return []
    names: set[str] = set()
    for path in fs.ls(data, detail=False):
        base = str(path).rsplit("/", 1)[-1]
        for suffix in (".stats.json", ".tar") if not committed_only else (".stats.json",):
            stem = base.removesuffix(suffix)
            if stem != base and _SHARD_RE.match(stem):
                names.add(stem)
    return sorted(names)


def sizes_json(out_dir: str) -> SizesJson:
    """``sizes.json`` content: written samples per committed shard, keyed ``data/{shard}.tar``."""
    return SizesJson(
        shards={
            f"{DATA_DIR}/{name}.tar": read_stats(out_dir, name).num_written
            for name in list_shards(out_dir)
        }
    )


def read_shard_rows(out_dir: str, shard_name: str) -> list[ShardRow]:
    """The shard's parquet rows, checked against :class:`ShardRow`."""
    import polars as pl

    fs, root = filesystem(out_dir)
    with fs.open(shard_paths(root, shard_name)["parquet"], "rb") as f:
        frame = pl.read_parquet(f)
    check_frame(ShardRow, frame, where=f"{shard_name}.parquet")
    return [ShardRow.model_validate(r) for r in frame.to_dicts()]


def iter_samples(out_dir: str, shard_name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Read up to ``limit`` samples of a shard: ``{"__key__": key, ext: bytes, ...}``."""
    fs, root = filesystem(out_dir)
    out: list[dict[str, Any]] = []
    with (
        fs.open(shard_paths(root, shard_name)["tar"], "rb") as f,
        tarfile.open(fileobj=f, mode="r|") as tar,
    ):
        for info in tar:
            key, _, ext = info.name.partition(".")
            if not out or out[-1]["__key__"] != key:
                if limit is not None and len(out) >= limit:
                    break
                out.append({"__key__": key})
            fobj = tar.extractfile(info)
            assert fobj is not None
            out[-1][ext] = fobj.read()
    return out
