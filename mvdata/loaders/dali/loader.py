"""NVIDIA DALI loader: ``fn.readers.webdataset`` over the shards' ``.idx`` files.

One pipeline per rank (``shard_id=rank, num_shards=world_size``; DALI splits the samples into
contiguous ranges by the index). JPEGs decode with ``device="mixed"`` on a GPU (``device_id`` set;
``hw_decoder_load`` exposed) and on the CPU when ``device_id is None`` — the same graph otherwise,
so the CPU path the tests run is the GPU path minus the device. Depth PNGs (16-bit grey) always
decode on the CPU (nvImageCodec has no GPU PNG decoder) with ``dtype=UINT16``, which keeps the
stored values exactly, and are resized nearest-neighbour so that background (0) never blends into
the face.

Design decisions:

* **Hardware JPEG decoder.** ``hw_decoder_load`` (the share of JPEGs sent to the GPU's hardware
  decoder, where it has one) defaults to 0, not DALI's 0.65: measured on an H200 with 224-px
  views, nvJPEG on the CUDA cores alone ran 39.4k images/s against 23.9k for the hardware
  decoder (docs/gotchas.md). ``bench_loaders.py --gpu`` measures both shares on the GPU at hand.

* **Keys and meta.** The ``json`` member has a variable length, which the torch iterator cannot
  take as a ragged batch, so it is padded with zeros (``fn.pad``) and parsed on the host; the key
  comes from the json member's ``source_info`` (``{tar}:{offset}:{key}.json``), padded the same way.
* **Padding.** ``pad_last_batch=True`` repeats a rank's last sample so every rank runs the same
  number of iterations; rows at positions past the rank's share (``epoch_size`` split the way
  DALI does: ``[n*r//w, n*(r+1)//w)``) are marked ``valid=False``. Should DALI end before
  ``len(loader)`` steps (samples skipped for missing members), all-padding batches fill the rest.
* **Shuffle.** Training rebuilds the pipeline each epoch with the shard list permuted by
  :func:`mvdata.loaders.dataset.shard_order` (``seed``, ``epoch``), plus DALI's buffer shuffle with a seed
  from ``(seed, epoch, rank)``. Not ``shuffle_after_epoch``: its order depends on how many epochs
  the reader has run, so a loader built for epoch ``e`` could not reproduce it without history.
* **Checkpoint.** Pipelines are built with ``enable_checkpointing=True``; :meth:`state_dict` holds
  the iterator's checkpoint (``DALIGenericIterator.checkpoints()``, which accounts for prefetched
  batches) with the epoch and step, and a loader restored from it continues with the next unseen
  batch.
* **Bad input.** A sample missing a member: ``on_missing="skip"`` (default) drops it
  (``missing_component_behavior="skip"``), after it was logged with shard and key from the index
  and counted in :attr:`DaliLoader.skipped`; ``"error"`` refuses to start. A corrupt member makes
  DALI stop the pipeline; the loader then decodes the members of its share that DALI may have
  read ahead to find the culprits, checking what DALI checks (:func:`member_problem`: PNG CRCs,
  the stored size, mode and bit depth, a whole decode with truncated images refused; a member
  must lie inside its tar). Only DALI errors that are data errors (:func:`is_data_error`: a
  decoder failure, a member of the wrong size or channel count, an index entry outside its tar)
  lead there; any other error (out of memory, a bug) is raised at once. ``on_corrupt="skip"``
  (default): each culprit is logged with shard, key and member, counted in
  :attr:`DaliLoader.errors`, and quarantined (:mod:`mvdata.loaders.dali.quarantine`: its members
  are pointed at decodable stand-ins in a private copy of the index and its row is marked
  ``valid=False``), and the pipeline is rebuilt from the checkpoint of the last batch handed out,
  so the epoch goes on with the next unseen batch and the same number of steps. When no culprit
  can be pinned the loader raises :class:`mvdata.loaders.batch.LoaderDataError` naming the
  shards and the reading window. ``"error"`` raises at once, naming the step, window, shards and
  DALI's reason, without decoding anything — never a hang. At start, every index is checked
  (it parses, lists as many samples as ``sizes.json``, every entry lies inside its tar): entries
  outside a cut-short tar are masked up front (``"skip"``) or refused (``"error"``).
* **Meta.** The ``json`` members are parsed when ``batch.meta[i]`` is read
  (:class:`~mvdata.loaders.batch.LazyMeta`), not per batch on the loader's thread.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from mvdata.loaders.base import LoaderBase
from mvdata.loaders.batch import LazyMeta, LoaderDataError, MultiviewBatch, normals_from_uint8
from mvdata.loaders.dali.graph import OnMissing, build_pipeline
from mvdata.loaders.dali.quarantine import BadMember, Quarantine, member_problem
from mvdata.loaders.dataset import DatasetInfo, shard_order, steps_per_epoch
from mvdata.loaders.options import LoaderOptions
from mvdata.shards.index import outside_tar, read_index

log = logging.getLogger(__name__)


OnCorrupt = Literal["skip", "error"]

# The shapes of DALI errors that mean "this data is bad" (DALI 2.4): a decoder that gave up on a
# member, a decoded member of another size or channel count than the dataset's (the reshape of
# graph._stored_shape, or the views' stack), an index entry past the end of its tar.
_DATA_ERROR_SHAPES = tuple(
    re.compile(p, re.S)
    for p in (
        r"operator `nvidia\.dali\.fn\.decoders\.image`.*(nvImageCodec failure|Failed to decode)",
        r"operator `nvidia\.dali\.fn\.reshape`.*must occupy the same size in bytes",
        r"operator `nvidia\.dali\.fn\.stack`.*tensors being stacked are of equal shape",
        r"Malformed index file at .* outside of the archive file",
    )
)
# Whatever the operator, these are the machine's trouble, not the data's.
_NOT_DATA = re.compile(r"out of memory|bad_alloc|cudaError|CUDA error|can't allocate", re.I)


def is_data_error(exc: BaseException) -> bool:
    """True when a DALI error says a member is bad (see ``_DATA_ERROR_SHAPES``): only those
    send the loader looking for culprits; anything else (out of memory, a bug) is raised as is.
    """
    text = str(exc)
    if not isinstance(exc, RuntimeError) or _NOT_DATA.search(text):
        return False
    return any(p.search(text) for p in _DATA_ERROR_SHAPES)


def dali_reason(exc: BaseException) -> str:
    """The part of a DALI error that says what went wrong, on one line (DALI repeats the
    pipeline definition's traceback and 'pipeline no longer valid' around it)."""
    text = str(exc)
    if "encountered:" in text:
        text = text.split("encountered:", 1)[1]
    text = text.split("Current pipeline object is no longer valid", 1)[0]
    return " ".join(text.split())[:500]


def _log_masked(found: list[BadMember]) -> None:
    """One warning a masked sample: shard, key, its first bad member and how many it has."""
    by_sample: dict[tuple[str, str], list[BadMember]] = {}
    for b in found:
        by_sample.setdefault((b.shard, b.key), []).append(b)
    for members in by_sample.values():
        more = f" (+{len(members) - 1} more members)" if len(members) > 1 else ""
        log.warning("%s%s: sample masked (policy on_corrupt=skip)", members[0], more)


def _check_tar_start(tar: str) -> None:
    """A ``ValueError`` naming ``tar`` unless its first 512 bytes are a valid tar header: a
    zero-filled or foreign file is refused at start (DALI reads members by the index's offsets
    and would otherwise fail only on its first batch, with no member of the shard to stand in)."""
    with open(tar, "rb") as f:
        block = f.read(tarfile.BLOCKSIZE)
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError as exc:
        what = "zero-filled" if not block.strip(b"\0") else str(exc)
        raise ValueError(f"{tar}: not a tar archive (first header block: {what})") from None


@dataclass
class IndexScan:
    """What the loader learns from every index at start (:func:`scan_index`)."""

    #: ``(shard, key)`` of samples missing a member (DALI's reader skips them).
    missing: list[tuple[str, str]] = field(default_factory=list)
    #: Members whose entry points outside their tar (a tar cut short).
    outside: list[BadMember] = field(default_factory=list)
    #: Samples per shard that DALI reads (those with every member).
    readable: dict[str, int] = field(default_factory=dict)


def scan_index(info: DatasetInfo, shards: list[str], exts: list[str]) -> IndexScan:
    """Read every index once: samples missing one of ``exts``, entries outside their tar, and a
    ``ValueError`` naming the files when an index does not parse or disagrees with
    ``sizes.json``."""
    scan = IndexScan()
    want = set(exts)
    for shard in shards:
        idx, tar = info.idx_path(shard), info.tar_path(shard)
        with open(idx, "rb") as f:
            samples = read_index(f.read(), where=idx)
        if len(samples) != info.sizes[shard]:
            raise ValueError(
                f"{idx} lists {len(samples)} samples, sizes.json {info.sizes[shard]}: the index "
                "does not belong to this build (run `mvdata verify`)"
            )
        if samples:
            _check_tar_start(tar)
        for line, ext, name in outside_tar(samples, os.path.getsize(tar)):
            key = name.split(".", 1)[0]
            scan.outside.append(
                BadMember(shard, line, key, ext, f"lies outside {tar} (cut short?)")
            )
        readable = 0
        for comps in samples:
            if want <= {c[0] for c in comps}:
                readable += 1
            else:
                key = comps[0][3].split(".", 1)[0] if comps else "?"
                scan.missing.append((shard, key))
        scan.readable[shard] = readable
    return scan


class DaliLoader(LoaderBase):
    """One rank's DALI loader; iterate for one epoch of :class:`MultiviewBatch`."""

    backend = "dali"

    def __init__(
        self,
        info: DatasetInfo,
        opts: LoaderOptions,
        *,
        device_id: int | None = None,
        on_missing: OnMissing = "skip",
        on_corrupt: OnCorrupt = "skip",
        hw_decoder_load: float = 0.0,
        initial_fill: int = 256,
    ) -> None:
        if on_missing not in ("skip", "error"):
            raise ValueError(f"on_missing must be 'skip' or 'error', got {on_missing!r}")
        if on_corrupt not in ("skip", "error"):
            raise ValueError(f"on_corrupt must be 'skip' or 'error', got {on_corrupt!r}")
        super().__init__(info, opts)
        self.device_id = device_id
        self.num_threads = max(1, opts.num_workers)
        self.on_missing: OnMissing = on_missing
        self.on_corrupt: OnCorrupt = on_corrupt
        self.prefetch_queue_depth = 2
        #: Samples masked for undecodable members (this rank's share).
        self.quarantine = Quarantine(info)
        self.hw_decoder_load = hw_decoder_load
        self.initial_fill = initial_fill
        self.steps = steps_per_epoch(info.total, opts.world_size, opts.batch_size)
        self._checkpoint: str | None = None
        self._iter: DALIGenericIterator | None = None
        scan = scan_index(info, info.shards, ["json", *self.image_exts()])
        for shard, key in scan.missing:
            log.warning(
                "shard %s sample %s: a member is missing (policy %s)", shard, key, on_missing
            )
        if scan.missing and on_missing == "error":
            shard, key = scan.missing[0]
            raise LoaderDataError(
                f"{len(scan.missing)} samples miss members, first: shard {shard} key {key}"
            )
        if scan.outside:
            first = scan.outside[0]
            if on_corrupt == "error":
                raise LoaderDataError(
                    f"{len(scan.outside)} members lie outside their tar, first: {first}"
                )
            try:
                self.quarantine.add(scan.outside)
            except ValueError as err:
                raise LoaderDataError(f"{first}; cannot skip: {err}") from None
            _log_masked(scan.outside)
        #: Samples left out for missing members (over all ranks' data).
        self.skipped = len(scan.missing)
        self._readable = scan.readable

    @property
    def errors(self) -> int:
        """Samples this loader masked so far: found undecodable in its share, or (at start) with
        a member outside its tar."""
        return len(self.quarantine)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration."""
        super().set_epoch(epoch)
        self._checkpoint = None

    def _raw_checkpoint(self) -> bytes:
        """DALI's checkpoint of the last batch handed out (it accounts for prefetched ones)."""
        assert self._iter is not None
        raw = self._iter.checkpoints()[0]
        return raw if isinstance(raw, bytes) else raw.encode()

    def state_dict(self) -> dict[str, Any]:
        """Epoch, step, DALI reader checkpoint and quarantine: restoring continues with the next
        batch and does not decode the quarantined samples again."""
        cp = self._checkpoint
        if self._iter is not None and 0 < self.step < self.steps:
            # DALI's checkpoint is bytes; base64 keeps the state JSON-serialisable.
            cp = base64.b64encode(self._raw_checkpoint()).decode("ascii")
        return {**super().state_dict(), "dali": cp, "quarantine": self.quarantine.entries()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of a loader with the same data and settings."""
        super().load_state_dict(state)
        self._checkpoint = state.get("dali") if self.step > 0 else None
        if state.get("quarantine"):
            self.quarantine.restore(state["quarantine"])

    def _pipeline(self, shards: list[str], checkpoint: bytes | None) -> Any:
        return build_pipeline(
            self.info,
            shards,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            device_id=self.device_id,
            num_threads=self.num_threads,
            size=self.size,
            train=self.train,
            shuffle=self.shuffle,
            seed=(self.seed * 1_000_003 + self.epoch * 1009 + self.rank) % (2**31),
            with_depth=self.with_depth,
            with_normals=self.with_normals,
            on_missing=self.on_missing,
            hw_decoder_load=self.hw_decoder_load,
            initial_fill=self.initial_fill,
            max_zoom=self.max_zoom,
            jitter=self.jitter,
            prefetch_queue_depth=self.prefetch_queue_depth,
            checkpoint=checkpoint,
            index_paths=[self.quarantine.idx_path(s) for s in shards],
        )

    def _iterator(self, shards: list[str], checkpoint: bytes | None) -> tuple[Any, Any]:
        """A fresh pipeline (restored from ``checkpoint``) and DALI iterator over ``shards``."""
        pipe = self._pipeline(shards, checkpoint)
        outputs = ["json", "source", "images"]
        outputs += ["depth"] * self.with_depth + ["normals"] * self.with_normals
        self._iter = DALIGenericIterator(
            [pipe],
            outputs,
            reader_name="Reader",
            last_batch_policy=LastBatchPolicy.FILL,
            auto_reset=False,
            prepare_first_batch=False,  # so a bad first batch fails inside next(), diagnosed below
        )
        return pipe, iter(self._iter)

    def __iter__(self) -> Iterator[MultiviewBatch]:
        if self.step > 0 and self._checkpoint is None and self._iter is not None:
            # An iteration left mid-epoch: continue where it stopped, not from the epoch start.
            self._checkpoint = self.state_dict()["dali"]
        shards = shard_order(
            self.info.shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle
        )
        cp = base64.b64decode(self._checkpoint) if self._checkpoint and self.step > 0 else None
        pipe, gen = self._iterator(shards, cp)
        meta = pipe.reader_meta("Reader")
        n, w, r = int(meta["epoch_size"]), self.world_size, self.rank
        share = n * (r + 1) // w - n * r // w
        last: MultiviewBatch | None = None
        while self.step < self.steps:
            try:
                out = next(gen)[0]
            except StopIteration:
                out = None
            except RuntimeError as exc:
                if not is_data_error(exc):
                    # The machine's trouble or a bug: nothing to look for in the data. Raised
                    # as it is, with a note of where DALI was reading.
                    exc.add_note(self._window(shards, n)[0])
                    raise
                restart = self._quarantine_after(shards, n, exc)
                del pipe, gen  # the failed pipeline is dead; free its threads before the next
                pipe, gen = self._iterator(shards, restart)
                continue
            if out is None:
                if last is None:
                    raise LoaderDataError(f"rank {r} got no sample at all from {self.info.root}")
                batch = last.as_padding()
            else:
                batch = self._batch(out, self.step * self.batch_size, share)
            last = batch
            self.step += 1
            yield batch
        self._iter = None
        self.epoch, self.step, self._checkpoint = self.epoch + 1, 0, None

    def _batch(self, out: dict[str, torch.Tensor], start: int, share: int) -> MultiviewBatch:
        b = out["images"].shape[0]
        t, v = self.info.frames, self.info.num_views
        images = out["images"].reshape(b, t, v, 3, self.size, self.size)
        depth = None
        if self.with_depth:
            depth = out["depth"].reshape(b, t, v, 1, self.size, self.size)
            depth = depth * self.info.meta.depth_scale_mm
        normals = None
        if self.with_normals:
            normals = normals_from_uint8(out["normals"].reshape(b, t, v, 3, self.size, self.size))
        valid = torch.tensor([start + i < share for i in range(b)], dtype=torch.bool)
        js, src = out["json"].cpu().numpy(), out["source"].cpu().numpy()
        keys: list[str] = []
        raw: list[np.ndarray | None] = []
        where: list[str] = []
        for i in range(b):
            key, shard = "", ""
            if valid[i]:
                tar, _, name = bytes(src[i]).rstrip(b"\0").decode().rpartition(":")
                shard = os.path.basename(tar.rpartition(":")[0]).removesuffix(".tar")
                key = name.split(".", 1)[0]
                if (shard, key) in self.quarantine.keys:
                    key = ""
                valid[i] = bool(key)
            keys.append(key)
            raw.append(js[i] if key else None)
            where.append(f"shard {shard} key {key}")
        return MultiviewBatch(
            images=images,
            depth=depth,
            keys=keys,
            valid=valid,
            meta=LazyMeta(raw, where),
            views=[c.index for c in self.info.meta.views],
            frames=t,
            normals=normals,
        )

    def _share_bounds(self, epoch_size: int, start: int, stop: int | None) -> tuple[int, int]:
        """Epoch positions ``[lo, hi)`` of this rank's share positions ``[start, stop)``."""
        share_lo = epoch_size * self.rank // self.world_size
        share_hi = epoch_size * (self.rank + 1) // self.world_size
        hi = share_hi if stop is None else min(share_hi, share_lo + stop)
        return share_lo + start, hi

    def _window_shards(self, shards: list[str], lo: int, hi: int) -> list[str]:
        """The shards (in reading order) that hold epoch positions ``[lo, hi)``."""
        out, pos = [], 0
        for shard in shards:
            n = self._readable.get(shard, 0)
            if pos < hi and lo < pos + n:
                out.append(shard)
            pos += n
        return out

    def _scan(
        self, shards: list[str], epoch_size: int, start: int = 0, stop: int | None = None
    ) -> list[BadMember]:
        """Members of this rank's share that DALI would refuse (:func:`member_problem`, and
        entries outside their tar), quarantined ones left out.

        Only the share's reading positions ``[start, stop)`` are read (``None``: to its end),
        so that a failure late in a long epoch costs a few batches of decoding, not the epoch."""
        lo, hi = self._share_bounds(epoch_size, start, stop)
        want = set(self.image_exts())
        size = self.info.meta.image_size
        found: list[BadMember] = []
        pos = 0
        for shard in shards:
            if pos >= hi:
                break
            if pos + self._readable.get(shard, 0) <= lo:
                pos += self._readable.get(shard, 0)
                continue
            idx, path = self.info.idx_path(shard), self.info.tar_path(shard)
            with open(idx, "rb") as f:
                samples = read_index(f.read(), where=idx)
            masked = self.quarantine.members.get(shard, {})
            tar_size = os.path.getsize(path)
            with open(path, "rb") as tar:
                for line, comps in enumerate(samples):
                    if not want | {"json"} <= {c[0] for c in comps}:
                        continue  # skipped by the reader, not counted in its positions
                    if lo <= pos < hi and line not in masked:
                        for ext, off, n, name in comps:
                            if ext not in want and ext != "json":
                                continue
                            if off < 512 or off + n > tar_size:
                                why: str | None = f"lies outside {path} (cut short?)"
                            else:
                                tar.seek(off)
                                why = member_problem(ext, tar.read(n), size)
                            if why is not None:
                                key = name.split(".", 1)[0]
                                found.append(BadMember(shard, line, key, ext, why))
                    pos += 1
        return found

    def _window(self, shards: list[str], epoch_size: int) -> tuple[str, int, int]:
        """Where DALI was reading when it stopped, in words, and the share positions
        ``[behind, ahead)`` that may hold the culprit: the failed batch was read after the ones
        handed out and no further ahead than the batches in flight plus the shuffle buffer
        (a shuffled sample may sit in the buffer for long: :meth:`_quarantine_after` falls back
        to all that was read). Nothing past ``ahead`` has been read yet."""
        fill = self.initial_fill if self.shuffle else 0
        behind = max(0, self.step * self.batch_size - 2 * fill)
        ahead = (self.step + self.prefetch_queue_depth + 3) * self.batch_size + fill
        lo, hi = self._share_bounds(epoch_size, behind, ahead)
        text = (
            f"DALI stopped reading {self.info.root} at step {self.step} of epoch {self.epoch} "
            f"(rank {self.rank}; reading positions {lo}..{hi - 1}, in shard(s) "
            f"{', '.join(self._window_shards(shards, lo, hi)) or '?'})"
        )
        return text, behind, ahead

    def _quarantine_after(self, shards: list[str], epoch_size: int, exc: RuntimeError) -> bytes:
        """DALI stopped on a data error: find the culprits, quarantine them and return the
        checkpoint to restart from; raise :class:`LoaderDataError` when the policy is
        ``"error"`` (without reading anything) or none is found."""
        window, behind, ahead = self._window(shards, epoch_size)
        reason = f"DALI: {dali_reason(exc)}"
        if self.on_corrupt == "error":
            raise LoaderDataError(
                f"{window}: {reason}. on_corrupt='skip' finds and masks the culprit; "
                f"`mvdata verify {self.info.root}` lists every bad member"
            ) from exc
        found = self._scan(shards, epoch_size, behind, ahead)
        if not found and behind > 0:
            found = self._scan(shards, epoch_size, 0, ahead)
        if not found:
            raise LoaderDataError(
                f"{window}: no member there fails the checks DALI makes (decode, size, mode, "
                f"PNG CRC, inside the tar), so nothing can be masked. {reason}"
            ) from exc
        message = f"{window}: {'; '.join(str(b) for b in found[:10])}. {reason}"
        restart = self._raw_checkpoint()
        try:
            self.quarantine.add(found)
        except ValueError as err:
            raise LoaderDataError(f"{message}; cannot skip: {err}") from exc
        _log_masked(found)
        return restart
