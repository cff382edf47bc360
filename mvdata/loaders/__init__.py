"""Loaders of mvdata shard directories: DALI (GPU or CPU) and webdataset + torch DataLoader.

Both return :class:`MultiviewBatch`; :func:`make_loader` picks the backend. Everything a loader
needs from the directory is checked before any worker starts (:func:`open_dataset`): a directory
that is not an mvdata shard directory, or one written with another schema major version, is a
``ValueError`` naming the file.

Contract shared by the backends:

* **Steps.** Every rank takes exactly ``len(loader)`` steps per epoch, the same on every rank
  (computed from ``sizes.json``, checked across ranks at start when ``torch.distributed`` is up).
  Rows that carry no sample (the end of a rank's share) are padding: ``valid=False``.
* **Exactly once.** Unless a sample is skipped as bad input, every sample appears in exactly one
  valid row per epoch across all ranks.
* **Shuffle.** The build already shuffled samples globally (recorded seed). In training the
  loaders add a per-epoch permutation of the *shard order* derived from ``(seed, epoch)`` only
  (:func:`shard_order`), so any rank can build any epoch without history, plus a buffer shuffle of
  decoded-free bytes. Eval (``train=False``) reads shards in sorted order, unshuffled.
* **Bad input.** See each backend: missing members are logged with shard and key, counted and
  skipped by both; a sample with a corrupt member is logged with shard, key and member, counted
  (``loader.errors``) and left out by both — webdataset drops it in its decoder, DALI masks its
  row (``valid=False``) after restarting its pipeline from the last checkpoint with the member
  pointed elsewhere (:mod:`mvdata.loaders.quarantine`), so the step count never changes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import ValidationError

from mvdata.loaders.batch import LoaderDataError, MultiviewBatch
from mvdata.shards import MODALITY_EXT
from schemas import check_version
from schemas.models import DatasetMetadata, SizesJson

log = logging.getLogger(__name__)

Backend = Literal["auto", "dali", "wds"]

__all__ = [
    "DatasetInfo",
    "Loader",
    "LoaderDataError",
    "MultiviewBatch",
    "check_same_steps",
    "dali_available",
    "make_loader",
    "open_dataset",
    "shard_order",
    "steps_per_epoch",
]


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

    def exts(self, modality: str) -> list[str]:
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
        return os.path.join(self.root, "data", f"{shard}.tar")

    def idx_path(self, shard: str) -> str:
        """Path of a shard's DALI index."""
        return os.path.join(self.root, "data", f"{shard}.idx")


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


class Loader(Protocol):
    """What :func:`make_loader` returns: an iterable over one epoch of batches."""

    backend: str
    epoch: int

    @property
    def errors(self) -> int:
        """Samples of this rank left out so far as bad input, each logged with shard and key
        (DALI: an undecodable member, missing ones are in ``skipped``; webdataset: either)."""
        ...

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[MultiviewBatch]: ...
    def set_epoch(self, epoch: int) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def dali_available() -> bool:
    """True when NVIDIA DALI (and its image codec) imports."""
    try:
        import nvidia.dali  # noqa: F401
        from nvidia.dali.plugin import pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def make_loader(
    data_dir: str | os.PathLike[str],
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
    backend: Backend = "auto",
    device: str = "auto",
    train: bool = True,
    seed: int = 0,
    epoch: int = 0,
    split: str | None = None,
    image_size: int | None = None,
    with_depth: bool = True,
    with_normals: bool = True,
    num_workers: int = 2,
    shuffle: bool | None = None,
    max_zoom: float = 0.1,
    jitter: float = 0.2,
    state: dict[str, Any] | None = None,
    **backend_kwargs: Any,
) -> Loader:
    """Build a loader over a shard directory for one rank.

    ``backend``: ``"auto"`` = DALI (mixed GPU decoding when ``device`` is CUDA, CPU decoding
    otherwise), or webdataset when DALI does not import or ``data_dir`` is a remote URL;
    ``"dali"``/``"wds"`` force one.
    ``device``: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"`` (GPU ``local_rank``) or
    ``"cuda:N"``. ``with_depth`` and ``with_normals`` load those maps when the shards carry
    them. ``num_workers`` is DALI's thread count or the DataLoader's worker count. ``shuffle``
    (default: when training), ``max_zoom`` and ``jitter`` (the scale/shift and colour
    augmentation of training) are the same for both backends; ``backend_kwargs`` go to one
    (DALI: ``on_missing``, ``on_corrupt``, ``hw_decoder_load``, ``initial_fill``; webdataset:
    ``bufsize``). ``state`` (from ``loader.state_dict()``) resumes with the next unseen batch.
    Iterating the loader yields one epoch, then advances ``loader.epoch``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
    info = open_dataset(data_dir, split=split)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "auto":
        backend = "dali" if dali_available() and info.local else "wds"
    from mvdata.loaders.base import LoaderOptions

    opts = LoaderOptions(
        batch_size=batch_size, rank=rank, world_size=world_size, train=train, seed=seed,
        epoch=epoch, image_size=image_size, with_depth=with_depth, with_normals=with_normals,
        num_workers=num_workers, shuffle=shuffle, max_zoom=max_zoom, jitter=jitter,
    )  # fmt: skip
    loader: Loader
    if backend == "dali":
        if not dali_available():
            raise ValueError("backend 'dali' asked for, but nvidia.dali does not import")
        if not info.local:
            raise ValueError(
                f"{info.root} is remote and DALI reads local files only: copy or mount the shard "
                "directory, or use backend 'wds' (it streams the tars)"
            )
        from mvdata.loaders.dali import DaliLoader

        device_id = None
        if device.startswith("cuda"):  # "cuda" → this rank's GPU; "cuda:N" → GPU N
            device_id = int(device.partition(":")[2] or local_rank)
        loader = DaliLoader(info, opts, device_id=device_id, **backend_kwargs)
    elif backend == "wds":
        from mvdata.loaders.wds import WdsLoader

        loader = WdsLoader(info, opts, **backend_kwargs)
    else:
        raise ValueError(f"unknown backend {backend!r}; use auto, dali or wds")
    if state is not None:
        loader.load_state_dict(state)
    check_same_steps(len(loader), local_rank)
    return loader


def benchmark(
    data_dir: str | os.PathLike[str],
    *,
    backend: Backend = "auto",
    batch_size: int = 32,
    steps: int = 50,
    warmup: int = 2,
    num_workers: int = 2,
    device: str = "auto",
    train: bool = True,
    with_depth: bool = True,
    with_normals: bool = True,
    **loader_kwargs: Any,
) -> dict[str, Any]:
    """Read ``steps`` batches (after ``warmup``) and report samples/s and images/s.

    Epochs roll over as needed; only valid rows count as samples, ``images`` = samples × T × V.
    ``loader_kwargs`` go to the backend (e.g. DALI's ``hw_decoder_load``).
    """
    import time

    loader = make_loader(
        data_dir,
        batch_size=batch_size,
        backend=backend,
        device=device,
        train=train,
        num_workers=num_workers,
        with_depth=with_depth,
        with_normals=with_normals,
        **loader_kwargs,
    )
    per_sample = 0
    samples = 0
    done = 0
    t0 = time.perf_counter()
    while done < warmup + steps:
        for batch in loader:
            if done == warmup:
                samples, t0 = 0, time.perf_counter()
            per_sample = batch.frames * len(batch.views)
            samples += batch.num_valid
            done += 1
            if done >= warmup + steps:
                break
    seconds = time.perf_counter() - t0
    return {
        "backend": loader.backend,
        "batch_size": batch_size,
        "steps": steps,
        "num_workers": num_workers,
        "samples": samples,
        "errors": loader.errors,
        "seconds": seconds,
        "samples_per_s": samples / seconds if seconds > 0 else 0.0,
        "images_per_s": samples * per_sample / seconds if seconds > 0 else 0.0,
    }
