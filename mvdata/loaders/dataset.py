"""A shard directory as a loader sees it (:class:`DatasetInfo`, read and checked once by
:func:`open_dataset`) and the epoch arithmetic every backend shares (steps, shard order)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

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
        """Written samples over all shards (``sizes.json``)."""
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
        """Path of a shard's DALI index."""
        return os.path.join(self.root, DATA_DIR, f"{shard}.idx")


def open_dataset(data_dir: str | os.PathLike[str], *, split: str | None = None) -> DatasetInfo:
    """Read and check ``dataset.json`` and ``sizes.json`` of a shard directory: a local path or
    an fsspec URL (``file://``, ``s3://``, ``gs://``, ``hf://``, ... with its backend installed).

    Raises ``ValueError`` (naming the file) when the directory is not an mvdata shard directory,
    was written with another schema major version, or lists shards whose files are missing.
    ``split`` keeps only the shards named ``{split}-NNNNNN``.
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
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}: not readable JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != "mvdata-webdataset":
        raise ValueError(f"{meta_path}: format is not 'mvdata-webdataset': not our shard directory")
    check_version(raw.get("schema_version"), where=meta_path)
    try:
        meta = DatasetMetadata.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{meta_path}: does not match DatasetMetadata: {exc}") from exc
    if "rgb" not in meta.modalities:
        raise ValueError(f"{meta_path}: modalities {meta.modalities} carry no rgb")
    sizes_path = os.path.join(root, "sizes.json")
    try:
        sizes = SizesJson.model_validate_json(read("sizes.json"))
    except FileNotFoundError as exc:
        raise ValueError(f"{sizes_path} not found: the build was not finalised") from exc
    except ValidationError as exc:
        raise ValueError(f"{sizes_path}: does not match SizesJson: {exc}") from exc
    try:  # one listing, not one request a file (remote stores answer each in ~100 ms)
        present = {os.path.basename(p.rstrip("/")) for p in fs.ls(f"{path}/data", detail=False)}
    except FileNotFoundError:
        present = set()
    counts: dict[str, int] = {}
    for rel, n in sizes.shards.items():
        name = os.path.basename(rel).removesuffix(".tar")
        if split is not None and not name.startswith(f"{split}-"):
            continue
        for suffix in (".tar", ".idx", ".stats.json"):
            if name + suffix not in present:
                missing = os.path.join(root, "data", name + suffix)
                raise ValueError(f"{sizes_path} lists shard {name}, but {missing} is missing")
        counts[name] = int(n)
    shards = sorted(counts)
    if not shards or sum(counts.values()) == 0:
        raise ValueError(f"{sizes_path}: no samples" + (f" in split {split!r}" if split else ""))
    return DatasetInfo(root=root, meta=meta, shards=shards, sizes=counts, local=local)


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
