"""webdataset + torch DataLoader loader (no DALI needed), returning :class:`MultiviewBatch`.

webdataset's own stages, composed: a ``DataPipeline`` of ``SimpleShardList`` over this rank's
shards, ``split_by_worker``, webdataset's ``tarfile_samples`` (open, expand, group by key) run
shard by shard so that each shard's yield is counted (:func:`expand_shards`), ``shuffle`` of
the raw bytes before decoding, and a decoding stage (:func:`decode_samples`). A
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
* **Bad input.** Only data errors are swallowed; anything else (a bug, an out-of-memory)
  propagates. A sample with a missing member, or one that does not decode to the stored size
  and mode (a truncated JPEG, a PNG failing its CRC, a 100 px image in a 224 px set, an 8-bit
  PNG in a depth slot) is a :class:`~mvdata.core.SampleError` in the decoder: logged with shard
  and key and counted. A broken tar (``tarfile``/``OSError``/``ValueError`` while webdataset
  expands it) ends that shard, logged with the shard's URL. Every shard reports at its end how
  many samples it yielded; fewer than ``sizes.json`` lists are counted as lost (a zero-filled tar
  yields none and raises nothing; a bad header loses the rest of its shard) and logged loudly,
  more is an error (``sizes.json`` is wrong). :attr:`WdsLoader.errors` counts every sample
  skipped or lost; when more than ``max_bad_fraction`` (default 0.05) of a rank's epoch, and more
  than one sample, is bad, the epoch stops with :class:`~mvdata.loaders.batch.LoaderDataError` naming the shards and
  counts: training on what is left would be training on padding.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import partial
from typing import IO, Any
from urllib.parse import urlparse

import fsspec
import numpy as np
import torch
import webdataset as wds
from PIL import Image
from webdataset.gopen import gopen, gopen_schemes
from webdataset.tariterators import group_by_keys, tar_file_expander

from mvdata.core import SampleError
from mvdata.loaders.base import LoaderBase, LoaderOptions
from mvdata.loaders.batch import (
    LazyMeta,
    LoaderDataError,
    MultiviewBatch,
    normalise_uint8,
    normals_from_uint8,
)
from mvdata.loaders.dataset import DatasetInfo, shard_order
from mvdata.shards.codecs import png_crc_problem
from mvdata.shards.reader import EndGuard

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


#: What webdataset raises while expanding a broken tar (a bad header, a cut-short or zero-filled
#: file, a duplicate member): the shard ends there and its missing samples are counted as lost.
TAR_ERRORS: tuple[type[Exception], ...] = (tarfile.TarError, OSError, EOFError, ValueError)

#: Key of the events the pipeline sends along with the rows (a skipped sample, a shard's end).
EVENT = "__mvdata_event__"


def expand_shards(
    src: Iterable[dict[str, Any]], keep: frozenset[str] | None = None
) -> Iterator[dict[str, Any]]:
    """webdataset stage: each shard URL -> its raw samples (webdataset's own open, expand and
    group stages, shard by shard), then an ``end`` event carrying how many samples the shard
    yielded and the tar error that cut it short. A data error of the tar (:data:`TAR_ERRORS`)
    is logged and ends the shard (the rest of a broken stream cannot be trusted); anything
    else propagates. ``keep`` (a :func:`~mvdata.loaders.subset.without_folds` view's keys):
    other samples are passed over before any decoding, and not counted."""
    for shard in src:
        url = shard["url"]
        broken: list[str] = []

        def on_error(exn: Exception, url: str = url, broken: list[str] = broken) -> bool:
            if not isinstance(exn, TAR_ERRORS):
                raise exn
            first = exn.args[0] if exn.args else ""
            broken.append(f"{type(exn).__name__}: {first}")
            log.warning("shard %s: broken tar: %s: %s", url, type(exn).__name__, first)
            return False  # ends the shard

        n = 0
        try:
            stream = EndGuard(gopen(url), url)
        except TAR_ERRORS as exc:
            on_error(exc)
        else:
            try:
                files = tar_file_expander([{"url": url, "stream": stream}], handler=on_error)
                for sample in group_by_keys(files, handler=on_error):
                    if keep is not None and sample.get("__key__") not in keep:
                        continue
                    n += 1
                    yield sample
            finally:
                stream.close()
        yield {EVENT: "end", "shard": url, "yielded": n, "errors": broken}


def decode_samples(src: Iterable[dict[str, Any]], decoder: _Decoder) -> Iterator[Any]:
    """webdataset stage: raw sample -> :data:`Row`; a :class:`SampleError` (bad member) becomes a
    ``bad`` event naming shard and key; events pass through; anything else propagates."""
    for sample in src:
        if EVENT in sample:
            yield sample
            continue
        try:
            yield decoder(sample)
        except SampleError as exc:
            yield {
                EVENT: "bad",
                "shard": sample.get("__url__", "?"),
                "key": sample.get("__key__", "?"),
                "reason": str(exc),
            }


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

    def _open(self, ext: str, data: bytes, modes: tuple[str, ...], what: str) -> Image.Image:
        """Decode one member, checked as DALI checks it: PNG chunk CRCs, the stored size (before
        decoding: a header declaring 60,000² pixels costs nothing), the mode; a failure is a
        :class:`SampleError` (a data error), naming the member."""
        try:
            if ext.endswith(".png"):
                why = png_crc_problem(data)
                if why:
                    raise ValueError(why)
            img: Image.Image = Image.open(io.BytesIO(data))
            if img.size != (self.src, self.src):
                raise ValueError(
                    f"image is {img.width}x{img.height}, the dataset's is {self.src}x{self.src}"
                )
            if img.mode not in modes:
                raise ValueError(f"mode {img.mode}, expected {what}")
            img.load()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise SampleError("decode", f"member {ext}: {type(exc).__name__}: {exc}") from None
        return img

    def _rgb(self, ext: str, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        img = self._open(ext, data, ("RGB",), "8-bit RGB")
        if p is not None:
            img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=p["box"])
        elif self.size != self.src:
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

    def _depth(self, ext: str, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        # 16-bit only, as DALI and verify: an 8-bit PNG in a depth slot holds no millimetres.
        img = self._open(ext, data, ("I;16", "I;16B", "I"), "16-bit grey")
        return self._nearest(img, p).astype(np.float32)

    def _normal(self, ext: str, data: bytes, p: dict[str, Any] | None) -> np.ndarray:
        return self._nearest(self._open(ext, data, ("RGB",), "8-bit RGB"), p)

    def _nearest(self, img: Image.Image, p: dict[str, Any] | None) -> np.ndarray:
        """Resize a decoded depth or normal PNG nearest-neighbour (stored values kept)."""
        if p is not None:
            img = img.resize((self.size, self.size), Image.Resampling.NEAREST, box=p["box"])
        elif self.size != self.src:
            img = img.resize((self.size, self.size), Image.Resampling.NEAREST)
        return np.asarray(img)

    def __call__(self, sample: dict[str, Any]) -> Row:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        wanted = ["json", *self.rgb, *self.depth, *self.normal]
        missing = [e for e in wanted if e not in sample]
        if missing:
            raise SampleError("missing", f"shard {url} key {key}: no member {missing[0]}")
        meta = (bytes(sample["json"]), f"shard {url} key {key}")
        params = self._params(key) if self.train else None
        try:
            imgs = [
                self._rgb(e, sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.rgb)
            ]
            deps = [
                self._depth(e, sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.depth)
            ]
            nrms = [
                self._normal(e, sample[e], params[i % self.v] if params else None)
                for i, e in enumerate(self.normal)
            ]
        except SampleError as exc:
            raise SampleError(exc.kind, f"shard {url} key {key}: {exc}") from None
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

    def __init__(
        self,
        info: DatasetInfo,
        opts: LoaderOptions,
        *,
        bufsize: int = 256,
        max_bad_fraction: float = 0.05,
    ) -> None:
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be within 0..1, got {max_bad_fraction}")
        super().__init__(info, opts)
        self.num_workers = opts.num_workers
        self.bufsize = bufsize
        #: Stop the epoch when more than this fraction of the rank's samples is bad or lost.
        self.max_bad_fraction = max_bad_fraction
        self._errors = 0
        # The most samples any rank can get: the ceil(shards/world) largest shards.
        per_rank = math.ceil(len(info.shards) / opts.world_size)
        most = sum(sorted(info.sizes.values(), reverse=True)[:per_rank])
        self.steps = math.ceil(most / opts.batch_size)

    @property
    def errors(self) -> int:
        """Samples skipped (a bad member) or lost (a broken tar) so far, every epoch."""
        return self._errors

    def _mine(self) -> list[str]:
        """This rank's shards in this epoch's order."""
        order = shard_order(
            self.info.shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle
        )
        return order[self.rank :: self.world_size]

    def _samples(self) -> Iterator[Row]:
        """This rank's rows of the epoch; ``bad`` and ``end`` events are counted here (in the
        main process, whatever worker sent them) and never reach a batch."""
        mine = self._mine()
        if not mine:
            return
        urls = {self.info.tar_path(s): s for s in mine}
        expected = sum(self.info.sizes[s] for s in mine)
        # One bad sample never stops an epoch (in a small one it is a large share, not a
        # systematic failure); past that, the fraction decides.
        limit = max(self.max_bad_fraction * expected, 1.0)
        bad: Counter[str] = Counter()  # shard -> samples skipped or lost this epoch
        ended: set[str] = set()

        def stop_if_too_many() -> None:
            total = sum(bad.values())
            if total > limit:
                worst = ", ".join(f"{s} ({n})" for s, n in bad.most_common(5))
                raise LoaderDataError(
                    f"{self.info.root}: {total} of the {expected} samples of rank {self.rank}'s "
                    f"epoch {self.epoch} are bad or lost, more than max_bad_fraction="
                    f"{self.max_bad_fraction:g}; shards: {worst}"
                    f"{' and more' if len(bad) > 5 else ''}. Run `mvdata verify {self.info.root}`."
                )

        for item in self._pipeline(list(urls)):
            if not isinstance(item, dict):
                yield item
                continue
            shard = urls.get(str(item["shard"]), str(item["shard"]))
            if item[EVENT] == "bad":
                log.warning("skipped bad sample: %s", item["reason"])
                bad[shard] += 1
                self._errors += 1
            else:  # the shard's end
                ended.add(shard)
                promised = self.info.sizes.get(shard, 0)
                lost = promised - int(item["yielded"])
                if lost < 0:
                    raise LoaderDataError(
                        f"{item['shard']}: yielded {item['yielded']} samples, sizes.json lists "
                        f"{promised}: sizes.json does not describe this shard"
                    )
                if lost:
                    why = "; ".join(item["errors"]) or "the tar ended early without an error"
                    log.warning(
                        "LOST %d of the %d samples of shard %s (%s): sizes.json promises them, "
                        "the tar did not yield them",
                        lost,
                        promised,
                        item["shard"],
                        why,
                    )
                    bad[shard] += lost
                    self._errors += lost
            stop_if_too_many()
        if set(mine) - ended:  # only when a worker ended without its events: never silently
            raise LoaderDataError(f"shards {sorted(set(mine) - ended)} did not report their end")
        if bad:
            log.warning(
                "rank %d epoch %d yielded %d of the %d samples sizes.json promises (%s)",
                self.rank,
                self.epoch,
                expected - sum(bad.values()),
                expected,
                ", ".join(f"{s}: {n} bad or lost" for s, n in sorted(bad.items())),
            )

    def _pipeline(self, urls: list[str]) -> Iterable[Any]:
        """The webdataset pipeline over ``urls`` in a DataLoader: rows and events."""
        stages: list[Any] = [
            # the shard order is already this epoch's permutation, and this rank's share
            wds.SimpleShardList(urls),
            wds.split_by_worker,
            partial(expand_shards, keep=self.info.keep),
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
        stages.append(partial(decode_samples, decoder=decoder))
        ds = wds.DataPipeline(*stages)
        workers = min(self.num_workers, len(urls))
        register_fsspec_scheme(self.info.root)
        return torch.utils.data.DataLoader(
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
