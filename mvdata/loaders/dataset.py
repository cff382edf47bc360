"""A shard directory as a loader sees it (:class:`DatasetInfo`, read and checked once by
:func:`open_dataset`) and the epoch arithmetic every backend shares (steps, shard order)."""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from mvdata.shards.index import outside_tar, read_index
from mvdata.shards.names import DATA_DIR, MODALITY_EXT
from schemas import check_version
from schemas.models import DatasetMetadata, Modality, SizesJson


@dataclass(frozen=True)
class DatasetInfo:
    """What a loader needs from a shard directory, read and checked once."""

    root: str
    meta: DatasetMetadata
    shards: list[str]
    sizes: dict[str, int]
    #: False when ``root`` is a remote fsspec URL (only the webdataset loader streams those).
    local: bool = True
    #: The keys a loader reads (``None``: every sample); set with ``index_dir`` by
    #: :func:`mvdata.loaders.subset.without_folds`, which also reduces ``shards`` and ``sizes``.
    keep: frozenset[str] | None = None
    #: Where the reduced ``.idx`` files of a :func:`~mvdata.loaders.subset.without_folds` view
    #: live (``None``: the shards' own).
    index_dir: str | None = None
    #: The folds left out of this view (``()``: none).
    left_out_folds: tuple[int, ...] = ()

    @property
    def frames(self) -> int:
        """Clip frames ``T`` of every sample."""
        return self.meta.clip_frames

    @property
    def num_views(self) -> int:
        """Views ``V`` of every sample."""
        return len(self.meta.views)

    @property
    def has_depth(self) -> bool:
        """True when samples carry depth members."""
        return "depth" in self.meta.modalities

    @property
    def total(self) -> int:
        """Written samples over all shards (``sizes.json``; in a view without some folds, those
        left)."""
        return sum(self.sizes[s] for s in self.shards)

    @property
    def has_normals(self) -> bool:
        """True when samples carry normal-map members."""
        return "normal" in self.meta.modalities

    def exts(self, modality: Modality) -> list[str]:
        """A modality's member extensions, ``t``-major then ``v`` (the batch's ``[T, V]`` order)."""
        suffix = MODALITY_EXT[modality]
        return [
            f"t{t:02d}.v{v:02d}.{suffix}" for t in range(self.frames) for v in range(self.num_views)
        ]

    def rgb_exts(self) -> list[str]:
        """RGB member extensions (``tNN.vNN.rgb.jpg``)."""
        return self.exts("rgb")

    def depth_exts(self) -> list[str]:
        """Depth member extensions (``tNN.vNN.depth.png``)."""
        return self.exts("depth")

    def normal_exts(self) -> list[str]:
        """Normal-map member extensions (``tNN.vNN.normal.png``)."""
        return self.exts("normal")

    def tar_path(self, shard: str) -> str:
        """Path of a shard's tar."""
        return os.path.join(self.root, DATA_DIR, f"{shard}.tar")

    def idx_path(self, shard: str) -> str:
        """Path of a shard's DALI index (its reduced copy in a view without some folds)."""
        if self.index_dir is not None:
            return os.path.join(self.index_dir, f"{shard}.idx")
        return os.path.join(self.root, DATA_DIR, f"{shard}.idx")


def open_dataset(data_dir: str | os.PathLike[str], *, split: str | None = None) -> DatasetInfo:
    """Read and check ``dataset.json`` and ``sizes.json`` of a shard directory: a local path or
    an fsspec URL (``file://``, ``s3://``, ``gs://``, ``hf://``, ... with its backend installed).

    Raises ``ValueError`` (naming the file) when the directory is not an mvdata shard directory,
    was written with another schema major version, lists shards whose files are missing or are
    not regular files (a FIFO would block a reader forever), or when what is cheap to check
    disagrees: ``sizes.json``'s total against ``dataset.json``'s ``num_samples``, and
    ``dataset.json``'s image size, views, frames and schema version against the first sample
    (its ``json`` member and the header of its first RGB image, read through the index).
    ``split`` keeps only the shards named ``{split}-NNNNNN``. Shards that hold no sample (every
    planned sample of theirs failed in the build) are left out: DALI refuses an empty index.
    """
    from fsspec.core import url_to_fs
    from fsspec.implementations.local import LocalFileSystem

    given = os.fspath(data_dir)
    try:
        fs, path = url_to_fs(given)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{given}: cannot open this URL ({exc})") from exc
    local = isinstance(fs, LocalFileSystem)
    # Local roots stay plain paths (DALI opens them itself); remote ones stay URLs.
    root = path if local and "://" in given else given.rstrip("/")
    path = path.rstrip("/")

    def read(name: str) -> bytes:
        # A FIFO or device where a root file should be would block the read forever.
        if fs.info(f"{path}/{name}").get("type") != "file":
            raise ValueError(f"{os.path.join(root, name)}: not a regular file")
        with fs.open(f"{path}/{name}", "rb") as f:
            return bytes(f.read())

    meta_path = os.path.join(root, "dataset.json")
    try:
        raw_meta = read("dataset.json")
    except FileNotFoundError:
        raise ValueError(
            f"{meta_path} not found: {root} is not an mvdata shard directory"
        ) from None
    except OSError as exc:
        raise ValueError(f"{meta_path}: not readable ({exc})") from exc
    try:
        raw = json.loads(raw_meta)
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for binary garbage
        raise ValueError(f"{meta_path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != "mvdata-webdataset":
        raise ValueError(f"{meta_path}: format is not 'mvdata-webdataset': not our shard directory")
    check_version(raw.get("schema_version"), where=meta_path)
    try:
        meta = DatasetMetadata.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{meta_path}: does not match DatasetMetadata: {_first(exc)}") from None
    if "rgb" not in meta.modalities:
        raise ValueError(f"{meta_path}: modalities {meta.modalities} carry no rgb")
    if not meta.views:
        raise ValueError(f"{meta_path}: views=0: a dataset.json without views has nothing to load")
    sizes_path = os.path.join(root, "sizes.json")
    try:
        sizes = SizesJson.model_validate_json(read("sizes.json"))
    except FileNotFoundError:
        raise ValueError(f"{sizes_path} not found: the build was not finalised") from None
    except ValidationError as exc:
        raise ValueError(f"{sizes_path}: does not match SizesJson: {_first(exc)}") from None
    except OSError as exc:
        raise ValueError(f"{sizes_path}: not readable ({exc})") from None
    if sum(sizes.shards.values()) != meta.num_samples or min(sizes.shards.values(), default=0) < 0:
        raise ValueError(
            f"{sizes_path} lists {sum(sizes.shards.values())} samples, {meta_path} says "
            f"{meta.num_samples}: the root files disagree (run `mvdata verify {root}`)"
        )
    try:  # one listing, not one request a file (remote stores answer each in ~100 ms)
        present = {
            os.path.basename(str(e["name"]).rstrip("/")): e
            for e in fs.ls(f"{path}/data", detail=True)
        }
    except FileNotFoundError:
        present = {}
    counts: dict[str, int] = {}
    for rel, n in sizes.shards.items():
        name = os.path.basename(rel).removesuffix(".tar")
        if split is not None and not name.startswith(f"{split}-"):
            continue
        for suffix in (".tar", ".idx", ".stats.json"):
            where = os.path.join(root, "data", name + suffix)
            if name + suffix not in present:
                raise ValueError(f"{sizes_path} lists shard {name}, but {where} is missing")
            if present[name + suffix].get("type") != "file":
                raise ValueError(f"{where}: not a regular file (a FIFO, device or directory?)")
        if n > 0:  # an empty shard (all its samples failed) has nothing to read
            counts[name] = int(n)
    shards = sorted(counts)
    if not shards:
        raise ValueError(f"{sizes_path}: no samples" + (f" in split {split!r}" if split else ""))
    info = DatasetInfo(root=root, meta=meta, shards=shards, sizes=counts, local=local)
    first = shards[0]
    _check_first_sample(info, fs, f"{path}/data/{first}", int(present[first + ".tar"]["size"]))
    return info


def _first(exc: ValidationError) -> str:
    """A pydantic error in one line: its first problem and how many there are."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{exc.error_count()} error(s), first: {loc + ': ' if loc else ''}{err['msg']}"


def _check_first_sample(info: DatasetInfo, fs: Any, base: str, tar_size: int) -> None:
    """Compare ``dataset.json`` with the first sample of a shard (``base``: its path without
    suffix): a ``dataset.json`` edited or copied from another build would otherwise break a
    loader only at its first batch (DALI: a failed reshape). Two small reads through the index."""
    meta_path = os.path.join(info.root, "dataset.json")
    idx_path = f"{base}.idx"
    with fs.open(idx_path, "rb") as f:
        samples = read_index(f.read(), where=idx_path)
    if not samples:
        raise ValueError(f"{idx_path}: lists no sample, but sizes.json promises some")
    outside = outside_tar(samples[:1], tar_size)
    if outside:
        raise ValueError(f"{idx_path}: member {outside[0][2]} lies outside {base}.tar (cut short?)")
    entries = {ext: (off, size) for ext, off, size, _ in samples[0]}
    rgb = info.rgb_exts()[0]
    if "json" not in entries or rgb not in entries:
        return  # a sample missing members: the loaders skip and count it
    with fs.open(f"{base}.tar", "rb") as tar:
        tar.seek(entries["json"][0])
        raw_json = tar.read(entries["json"][1])
        tar.seek(entries[rgb][0])
        raw_rgb = tar.read(entries[rgb][1])
    try:
        doc = json.loads(raw_json)
        got = {
            "image_size": int(doc["image_size"]),
            "views": len(doc["views"]),
            "clip_frames": len(doc["frames"]),
            "schema_version": str(doc["schema_version"]).split(".")[0],
        }
    except (ValueError, KeyError, TypeError):
        return  # an unreadable json member: LazyMeta names it when read; verify finds it
    meta = info.meta
    want = {
        "image_size": meta.image_size,
        "views": len(meta.views),
        "clip_frames": meta.clip_frames,
        "schema_version": meta.schema_version.split(".")[0],
    }
    for field_name, value in want.items():
        if got[field_name] != value:
            raise ValueError(
                f"{meta_path} says {field_name}={value}, but the first sample of {base}.tar "
                f"has {got[field_name]}: the root files do not belong to these shards"
            )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw_rgb)) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return  # an undecodable member: the loaders skip and count it
    if (width, height) != (meta.image_size, meta.image_size):
        raise ValueError(
            f"{meta_path} says image_size={meta.image_size}, but {base}.tar's first image "
            f"{rgb} is {width}x{height}"
        )


def steps_per_epoch(total: int, world_size: int, batch_size: int) -> int:
    """``ceil(ceil(total / world_size) / batch_size)``: steps every rank takes per epoch."""
    if total < 0 or world_size < 1 or batch_size < 1:
        raise ValueError("need total >= 0, world_size >= 1, batch_size >= 1")
    return math.ceil(math.ceil(total / world_size) / batch_size)


def shard_order(shards: list[str], *, seed: int, epoch: int, shuffle: bool) -> list[str]:
    """The shard order of an epoch: sorted, or a permutation drawn from ``(seed, epoch)`` only.

    The same on every rank (it depends on nothing local), and any epoch can be rebuilt directly,
    which a resumed run needs.
    """
    ordered = sorted(shards)
    if not shuffle:
        return ordered
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(len(ordered))
    return [ordered[i] for i in perm]


def check_same_steps(steps: int, local_rank: int = 0) -> None:
    """When ``torch.distributed`` is initialised, raise unless every rank has ``steps`` steps.

    With NCCL the check runs on ``cuda:{local_rank}`` (named, not the current device, which a
    script may not have set yet: every rank would then talk from GPU 0)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    t = torch.tensor([steps, -steps], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.to(torch.device("cuda", local_rank))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    hi, lo = int(t[0]), -int(t[1])
    if hi != lo:
        raise RuntimeError(f"ranks disagree on steps per epoch ({lo}..{hi}); same data and flags?")
