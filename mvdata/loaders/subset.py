"""Leave whole folds out of a loader (:func:`without_folds`): the loader then never reads their
samples, and its epoch, steps and batches are those of the other folds only.

Why in the loader and not as a mask in training: rows read only to be masked cost their decoding
and leave every batch part-empty (a benchmark holding 3 of 10 folds out trained on about 11 of
every 16 rows), and "the training loop never even decoded those subjects" is a stronger promise
than "it masked them".

Which fold a sample is in comes from the build's ``manifest.parquet`` (``key`` → ``fold``, the
subject-independent folds :mod:`mvdata.build` assigns). Both backends read the same reduced
sample list: DALI through reduced copies of the shards' ``.idx`` files (lines of the left-out
samples dropped, the offsets untouched: the tars are read in place), webdataset by dropping the
left-out keys before decoding (:attr:`DatasetInfo.keep`). The reduced indexes live in a temporary
directory for as long as the returned :class:`DatasetInfo`; nothing is written to the dataset.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable

from mvdata.io import atomic_write
from mvdata.loaders.dataset import DatasetInfo
from mvdata.shards.index import IndexEntry, format_index, read_index
from mvdata.shards.names import DATA_DIR
from mvdata.shards.reader import filesystem, open_regular

MANIFEST = "manifest.parquet"


def fold_of_keys(info: DatasetInfo) -> dict[str, int]:
    """``key`` → ``fold`` of every planned sample, from the build's ``manifest.parquet``; a
    ``ValueError`` naming the file when it is missing or lacks those columns."""
    import polars as pl

    fs, root = filesystem(info.root)
    where = os.path.join(info.root, MANIFEST)
    try:
        with open_regular(fs, f"{root}/{MANIFEST}") as f:
            frame = pl.read_parquet(io.BytesIO(f.read()), columns=["key", "fold"])
    except FileNotFoundError:
        raise ValueError(
            f"{where} not found: leaving folds out of a loader needs the build's manifest "
            "(which fold each sample is in); rebuild, or copy it from the build"
        ) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"{where}: no readable key and fold columns ({exc})") from None
    if frame["fold"].null_count() or frame["key"].null_count():
        raise ValueError(f"{where}: a sample without key or fold")
    return dict(zip(frame["key"].to_list(), (int(f) for f in frame["fold"].to_list()), strict=True))


def without_folds(info: DatasetInfo, folds: Iterable[int]) -> DatasetInfo:
    """``info`` with the samples of ``folds`` left out: reduced shard indexes, sizes and shard
    list (a shard left with no sample is dropped), and :attr:`DatasetInfo.keep` listing the keys
    kept. ``info`` itself when ``folds`` is empty.

    Raises ``ValueError`` naming the file when the manifest is missing or unreadable, when an
    index lists a sample the manifest does not know (the manifest is from another build), or
    when no sample is left."""
    drop = frozenset(int(f) for f in folds)
    if not drop:
        return info
    drop |= frozenset(info.left_out_folds)  # a view of a view: from the shards' own indexes
    fold_of = fold_of_keys(info)
    fs, root = filesystem(info.root)
    tmp = tempfile.mkdtemp(prefix="mvdata-folds-")
    try:
        sizes: dict[str, int] = {}
        keep: set[str] = set()
        for shard in info.shards:
            where = os.path.join(info.root, DATA_DIR, f"{shard}.idx")
            with open_regular(fs, f"{root}/{DATA_DIR}/{shard}.idx") as f:
                samples = read_index(f.read(), where=where)
            kept: list[list[IndexEntry]] = []
            for comps in samples:
                key = comps[0][3].split(".", 1)[0]
                if key not in fold_of:
                    raise ValueError(
                        f"{where} lists sample {key}, which {os.path.join(info.root, MANIFEST)} "
                        "does not: the manifest is not this build's (run `mvdata verify`)"
                    )
                if fold_of[key] not in drop:
                    kept.append(comps)
                    keep.add(key)
            if kept:
                atomic_write(os.path.join(tmp, f"{shard}.idx"), format_index(kept))
                sizes[shard] = len(kept)
        if not sizes:
            raise ValueError(
                f"{info.root}: every sample is in the left-out folds {sorted(drop)}: nothing to read"
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = dataclasses.replace(
        info,
        shards=sorted(sizes),
        sizes=sizes,
        index_dir=tmp,
        keep=frozenset(keep),
        left_out_folds=tuple(sorted(drop)),
    )
    # The reduced indexes live as long as the DatasetInfo that names them (and its loader).
    weakref.finalize(out, shutil.rmtree, tmp, True)
    return out
