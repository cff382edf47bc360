"""webdataset + torch DataLoader loader (no DALI needed), returning :class:`MultiviewBatch`.

webdataset's own stages, composed: a ``DataPipeline`` of ``SimpleShardList`` over this rank's
shards, ``split_by_worker``, ``tarfile_to_samples`` (open, expand, group by key), ``shuffle`` of
the raw bytes before decoding, and ``map`` with a ``handler`` — what ``WebDataset`` assembles. A
remote shard directory (``s3://``, ``gs://``, ``hf://``, ...) streams like a local one: its
scheme is registered in webdataset's ``gopen_schemes`` table with an fsspec opener
(:func:`register_fsspec_scheme`). Decoding is PIL: JPEG to uint8 RGB, 16-bit PNG to uint16
(exact).

Design decisions:

* **Rank split.** Shards, not samples, are split across ranks: rank ``r`` reads
  ``shard_order(epoch)[r::world_size]`` (what ``split_by_node`` does, but with the rank passed in
  rather than read from the environment, and with the per-epoch shard permutation of
  :func:`mvdata.loaders.shard_order`). DataLoader workers are capped at this rank's shard count,
  and ``empty_check=False`` covers a rank with fewer shards than workers.
* **Equal steps.** Not ``with_epoch``: it cuts or repeats samples to reach a count, which breaks
  "each sample once per epoch". Instead every rank runs exactly ``len(loader)`` steps, the most
  any rank can need whatever the permutation (the ``ceil(shards / world)`` largest shards), and
  fills the rest with padding rows (``valid=False``). With equal shards this is
  ``ceil(ceil(total / world) / batch)``, DALI's count, up to the last shard's shortfall.
* **Resume.** webdataset has no reader checkpoint: :meth:`WdsLoader.load_state_dict` replays the
  epoch and drops the first ``step`` batches, which reproduces the same batches because every
  shuffle and augmentation is seeded from ``(seed, epoch)`` and the sample key.
* **Bad input.** A missing or undecodable member raises inside ``map``; the handler logs shard and
  key, counts it (:attr:`WdsLoader.errors`, shared with the worker processes) and continues.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import multiprocessing as mp
from collections.abc import Iterator
from functools import partial
from typing import IO, Any
from urllib.parse import urlparse

import fsspec
import numpy as np
import torch
import webdataset as wds
from PIL import Image
from webdataset.gopen import gopen_schemes

from mvdata.core import SampleError
from mvdata.loaders.base import LoaderBase, LoaderOptions
from mvdata.loaders.batch import LazyMeta, MultiviewBatch, normalise_uint8, normals_from_uint8
from mvdata.loaders.dataset import DatasetInfo, shard_order

log = logging.getLogger(__name__)


def _gopen_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> IO[bytes]:
    """A webdataset ``gopen`` handler that opens ``url`` through fsspec (``s3://``, ``gs://``,
    ``hf://``, ``memory://``, ... with the store's backend installed)."""
    opened: IO[bytes] = fsspec.open(url, mode).open()
    return opened


def _init_worker(root: str, worker_id: int) -> None:
    register_fsspec_scheme(root)


def register_fsspec_scheme(root: str) -> None:
    """Make webdataset's URL opener read ``root``'s scheme through fsspec.

    ``gopen_schemes`` is webdataset's documented table of URL handlers; registering there lets
    the loader compose webdataset's own ``tarfile_to_samples`` stage (open -> expand -> group)
    instead of re-assembling its internals. The shard URLs are fsspec URLs (made from the root
    :func:`~mvdata.loaders.dataset.open_dataset` opened with fsspec), so fsspec must open them,
    also for schemes webdataset has a command-line handler of its own for (``gs``, ``hf``). Called
    in the main process and in each DataLoader worker (a ``spawn`` worker starts without it).
    """
    scheme = urlparse(root).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # "C:" is a Windows drive, not a scheme
        gopen_schemes[scheme] = _gopen_fsspec


class CountingHandler:
    """webdataset ``handler``: log the error, count it in shared memory, continue."""

    def __init__(self) -> None:
        self.count = mp.get_context().Value("i", 0)

    def __call__(self, exn: Exception) -> bool:
        log.warning("skipped bad sample: %s", exn)
        with self.count.get_lock():
            self.count.value += 1
        return True


Row = tuple[str, tuple[bytes, str], Any, Any, Any]


class _Decoder:
    """Decode one raw sample to ``(key, (json bytes, "shard S key K"), images uint8 [T,V,3,S,S],
    depth float [T,V,1,S,S], normals uint8 [T,V,3,S,S])`` (depth and normals ``None`` when not
    loaded; the json is parsed when read, as :class:`LazyMeta` does for DALI).

    A picklable callable (it runs in DataLoader workers)."""

    def __init__(
        self,
        info: DatasetInfo,
        *,
        size: int,
        with_depth: bool,
        with_normals: bool,
        train: bool,
        seed: int,
        epoch: int,
        max_zoom: float,
        jitter: float,
    ) -> None:
        self.rgb, self.depth = info.rgb_exts(), info.depth_exts() if with_depth else []
        self.normal = info.normal_exts() if with_normals else []
        self.t, self.v, self.src = info.frames, info.num_views, info.meta.image_size
        self.size, self.train, self.seed, self.epoch = size, train, seed, epoch
        self.max_zoom, self.jitter = max_zoom, jitter

    def _params(self, key: str) -> list[dict[str, Any]]:
        """Per-view augmentation, seeded by (seed, epoch, key): a replay gives the same batch."""
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        rng = np.random.default_rng([self.seed, self.epoch, digest])
        out = []
        for _ in range(self.v):
            s = rng.uniform(1.0 - self.max_zoom, 1.0)
            cy, cx = 0.5 + rng.uniform(-1.0, 1.0, 2) * (1.0 - s) * 0.5
            box = (
                (cx - s / 2) * self.src,
                (cy - s / 2) * self.src,
                (cx + s / 2) * self.src,
                (cy + s / 2) * self.src,
            )
            b, c, sat = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter, 3)
            out.append({"box": box, "brightness": b, "contrast": c, "saturation": sat})
        return out

    def _rgb(self, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
        img = img.convert("RGB")
        if p is not None:
            img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=p["box"])
        elif self.size != img.width or self.size != img.height:
            img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
        a = np.asarray(img)
        if p is None:
            return a
        # colour jitter as DALI's color_twist does it: brightness, contrast, saturation
        x = a.astype(np.float32) * p["brightness"]
        x = (x - 128.0) * p["contrast"] + 128.0
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = grey[..., None] + (x - grey[..., None]) * p["saturation"]
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)

    def _depth(self, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        return self._nearest(data, p, ("I;16", "I;16B", "I", "L"), "16-bit grey").astype(np.float32)

    def _normal(self, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        return self._nearest(data, p, ("RGB",), "8-bit RGB")

    def _nearest(
        self, data: bytes, p: dict[str, Any] | None, modes: tuple[str, ...], what: str
    ) -> np.ndarray:
        """Decode a depth or normal PNG and resize it nearest-neighbour (stored values kept)."""
        img: Image.Image = Image.open(io.BytesIO(data))
        img.load()
        if img.mode not in modes:
            raise ValueError(f"PNG mode {img.mode}, expected {what}")
        if p is not None:
            img = img.resize((self.size, self.size), Image.Resampling.NEAREST, box=p["box"])
        elif self.size != img.width or self.size != img.height:
            img = img.resize((self.size, self.size), Image.Resampling.NEAREST)
        return np.asarray(img)

    def __call__(self, sample: dict[str, Any]) -> Row:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        try:
            meta = (bytes(sample["json"]), f"shard {url} key {key}")
            params = self._params(key) if self.train else None
            imgs = [
                self._rgb(sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.rgb)
            ]
            deps = [
                self._depth(sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.depth)
            ]
            nrms = [
                self._normal(sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.normal)
            ]
        except (KeyError, OSError, ValueError, SyntaxError) as exc:
            raise SampleError(
                "decode", f"shard {url} key {key}: {type(exc).__name__}: {exc}"
            ) from exc
        s = self.size
        images = (
            torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).reshape(self.t, self.v, 3, s, s)
        )
        depth = torch.from_numpy(np.stack(deps)).reshape(self.t, self.v, 1, s, s) if deps else None
        normals = None
        if nrms:
            normals = torch.from_numpy(np.stack(nrms)).permute(0, 3, 1, 2)
            normals = normals.reshape(self.t, self.v, 3, s, s)
        return key, meta, images, depth, normals


class WdsLoader(LoaderBase):
    """One rank's webdataset loader; iterate for one epoch of :class:`MultiviewBatch`.

    Its saved state is the epoch and step: restoring replays the epoch up to the next unseen
    batch, exactly, since every random draw is seeded from seed, epoch and key."""

    backend = "wds"

    def __init__(self, info: DatasetInfo, opts: LoaderOptions, *, bufsize: int = 256) -> None:
        super().__init__(info, opts)
        self.num_workers = opts.num_workers
        self.bufsize = bufsize
        self._handler = CountingHandler()
        # The most samples any rank can get: the ceil(shards/world) largest shards.
        per_rank = math.ceil(len(info.shards) / opts.world_size)
        most = sum(sorted(info.sizes.values(), reverse=True)[:per_rank])
        self.steps = math.ceil(most / opts.batch_size)

    @property
    def errors(self) -> int:
        """Samples skipped as bad input so far (all workers)."""
        return int(self._handler.count.value)

    def _samples(self) -> Iterator[Row]:
        order = shard_order(
            self.info.shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle
        )
        mine = order[self.rank :: self.world_size]
        if not mine:
            return
        handler = self._handler
        stages: list[Any] = [
            # the shard order is already this epoch's permutation, and this rank's share
            wds.SimpleShardList([self.info.tar_path(s) for s in mine]),
            wds.split_by_worker,
            wds.tarfile_to_samples(handler=handler),
        ]
        if self.shuffle:
            seed = self.seed * 7919 + self.epoch
            stages.append(wds.shuffle(self.bufsize, initial=self.bufsize, seed=seed))
        decoder = _Decoder(
            self.info,
            size=self.size,
            with_depth=self.with_depth,
            with_normals=self.with_normals,
            train=self.train,
            seed=self.seed,
            epoch=self.epoch,
            max_zoom=self.max_zoom,
            jitter=self.jitter,
        )
        stages.append(wds.map(decoder, handler=handler))
        ds = wds.DataPipeline(*stages)
        workers = min(self.num_workers, len(mine))
        register_fsspec_scheme(self.info.root)
        yield from torch.utils.data.DataLoader(
            ds,
            batch_size=None,
            num_workers=workers,
            worker_init_fn=partial(_init_worker, self.info.root) if workers else None,
        )

    def _batch(self, rows: list[Row]) -> MultiviewBatch:
        n, b, s = len(rows), self.batch_size, self.size
        t, v = self.info.frames, self.info.num_views
        images = torch.zeros(b, t, v, 3, s, s, dtype=torch.uint8)
        depth = torch.zeros(b, t, v, 1, s, s) if self.with_depth else None
        normals = torch.zeros(b, t, v, 3, s, s, dtype=torch.uint8) if self.with_normals else None
        for i, (_, _, img, dep, nrm) in enumerate(rows):
            images[i] = img
            if depth is not None:
                depth[i] = dep
            if normals is not None:
                normals[i] = nrm
        if depth is not None:
            depth *= self.info.meta.depth_scale_mm
        return MultiviewBatch(
            images=normalise_uint8(images),
            depth=depth,
            keys=[r[0] for r in rows] + [""] * (b - n),
            valid=torch.arange(b) < n,
            meta=LazyMeta(
                [r[1][0] for r in rows] + [None] * (b - n),
                [r[1][1] for r in rows] + [""] * (b - n),
            ),
            views=[c.index for c in self.info.meta.views],
            frames=t,
            normals=None if normals is None else normals_from_uint8(normals),
        )

    def __iter__(self) -> Iterator[MultiviewBatch]:
        skip, done = self.step, 0
        rows: list[Row] = []

        def emit() -> Iterator[MultiviewBatch]:
            nonlocal done, rows
            if done >= self.steps:
                raise RuntimeError(f"rank {self.rank} has more than {self.steps} batches")
            if done >= skip:
                batch = self._batch(rows)
                self.step = done + 1
                yield batch
            done += 1
            rows = []

        for row in self._samples():
            rows.append(row)
            if len(rows) == self.batch_size:
                yield from emit()
        while done < self.steps:
            yield from emit()
        self.epoch, self.step = self.epoch + 1, 0
