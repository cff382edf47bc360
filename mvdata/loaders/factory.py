"""Pick and build a loader backend for one rank (:func:`make_loader`), and measure one
(:func:`benchmark`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from mvdata.loaders.batch import MultiviewBatch
from mvdata.loaders.dataset import DatasetInfo, check_same_steps, open_dataset
from mvdata.loaders.options import Backend, LoaderOptions
from mvdata.loaders.subset import without_folds


class Loader(Protocol):
    """What :func:`make_loader` returns: an iterable over one epoch of batches."""

    backend: str
    epoch: int
    #: What it reads (a :func:`~mvdata.loaders.subset.without_folds` view with ``exclude_folds``).
    info: DatasetInfo
    #: Batches of the current epoch handed out so far (the next one has this index).
    step: int

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
    exclude_folds: Sequence[int] = (),
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
    ``bufsize``, ``max_bad_fraction``: stop the epoch once more than this share of it, and more
    than one sample, is bad or lost; default 0.05). ``state`` (from ``loader.state_dict()``) resumes with the next unseen batch.
    ``exclude_folds``: the samples of these folds (the build's ``manifest.parquet``) are never
    read; the epoch, ``len(loader)`` and every batch are the other folds'
    (:func:`mvdata.loaders.subset.without_folds`).
    Iterating the loader yields one epoch, then advances ``loader.epoch``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
    info = without_folds(open_dataset(data_dir, split=split), exclude_folds)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "auto":
        backend = "dali" if dali_available() and info.local else "wds"
    opts = LoaderOptions(
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        train=train,
        seed=seed,
        epoch=epoch,
        image_size=image_size,
        with_depth=with_depth,
        with_normals=with_normals,
        num_workers=num_workers,
        shuffle=shuffle,
        max_zoom=max_zoom,
        jitter=jitter,
    )
    loader: Loader
    if backend == "dali":
        if not dali_available():
            raise ValueError("backend 'dali' asked for, but nvidia.dali does not import")
        if not info.local:
            raise ValueError(
                f"{info.root} is remote and DALI reads local files only: copy or mount the shard "
                "directory, or use backend 'wds' (it streams the tars)"
            )
        from mvdata.loaders.dali.loader import DaliLoader

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
