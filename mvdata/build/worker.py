"""The worker side of ``mvdata build``: load an item's clip, render every view of every clip
frame, encode the images and write one shard (in a worker process).

GL contexts cannot survive a fork, so the driver's pool uses the ``spawn`` start method and every
worker opens its own renderer (see :mod:`mvdata.render`). A worker process dies with the driver
(:func:`_die_with_parent`): a driver killed with ``kill -9`` must not leave workers committing
shards while a resumed build writes the same ones.

A sample whose views are (nearly) empty is a failure of kind ``blank-render``
(:func:`blank_views`), not a written sample: one outlier landmark can push the face out of every
view, and a black view teaches a model nothing while it counts as a positive pair.

A reader that fails on one file with anything but its own ``MeshReadError`` (a case its checks
did not foresee) fails that sample with kind ``reader-bug``, naming the file and the exception,
and the build goes on: one odd file of a 2 TB dataset must not end the build, and the count and
the message say plainly that a reader needs mending (the traceback goes to stderr).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mvdata.build.clips import MotionReference, motion_clip, uniform_clip
from mvdata.build.config import BuildConfig
from mvdata.core import Item, Mesh, MeshReadError, SampleError
from mvdata.render.gl import Renderer
from mvdata.render.normalise import apply_normalisation, normalise
from mvdata.shards.codecs import encode_jpeg, encode_png8, encode_png16
from mvdata.shards.names import member_names
from mvdata.shards.writer import SampleMeta, ShardWriter
from mvdata.sources.registry import load_frame
from schemas.models import Labels, Normalisation, SampleJson, ShardStats

# --------------------------------------------------------------------------- worker side
_RENDERER: Any = None  # one per worker process (GL contexts are per process)


def _renderer(cfg: BuildConfig) -> Any:
    global _RENDERER
    key = (cfg.image_size, cfg.views, cfg.modalities)
    if _RENDERER is None or _RENDERER[0] != key:
        if _RENDERER is not None:
            _RENDERER[1].close()
        _RENDERER = (key, Renderer(cfg.image_size, cfg.views, cfg.modalities))
    return _RENDERER[1]


def _load_clip(item: Item, cfg: BuildConfig) -> tuple[list[int], list[Mesh], Mesh | None]:
    """The clip's source frame indices, their meshes, and (sequences only) the sequence's first
    frame: the label-free reference the prior measures a clip's expression from, which a clip
    cut around the peak of motion does not hold."""

    def load(t: int) -> Mesh:
        try:
            return load_frame(item, t)
        except MeshReadError as exc:
            raise SampleError(exc.kind, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - one file's reader bug is one failed sample
            rel = item.frame_paths[t][0] if t < len(item.frame_paths) else item.key
            where = os.path.join(item.root, rel)
            traceback.print_exc(file=sys.stderr)
            msg = (
                f"{where}: the reader failed unexpectedly ({type(exc).__name__}: {exc}); "
                "the sample is skipped: please report this file's format"
            )
            raise SampleError("reader-bug", msg) from exc

    if item.kind == "static" or cfg.kind == "static":
        return [0], [load(0)], None
    if cfg.clip_sampling == "uniform":
        frames = uniform_clip(item.num_frames, cfg.clip_frames)
        cache = {t: load(t) for t in sorted({0, *frames})}
        return frames, [cache[t] for t in frames], cache[0]
    # Stream the sequence for its motion energy (two frames in memory, not ~100 with their
    # textures), then load the chosen frames again.
    first = load(0)
    ref = MotionReference(first)
    energy = np.array([0.0] + [ref.motion(load(t), t) for t in range(1, item.num_frames)])
    frames = motion_clip(energy, cfg.clip_frames)
    chosen = {t: first if t == 0 else load(t) for t in sorted(set(frames))}
    return frames, [chosen[t] for t in frames], first


#: Below this share of foreground pixels (1 %) a view counts as blank. A face fills a third or
#: more of a view normalised from its landmarks, even in profile; 1 % is a few stray triangles.
MIN_FOREGROUND = 0.01


def blank_views(images: dict[str, NDArray[Any]]) -> list[int]:
    """Indices of the views (of one clip frame) whose foreground covers less than
    :data:`MIN_FOREGROUND` of the image. Foreground: depth > 0 (the renderer's background is
    0), else a non-zero normal, else a non-black RGB pixel."""
    fg: NDArray[Any]
    if "depth" in images:
        fg = np.asarray(images["depth"] > 0)
    elif "normal" in images:
        fg = np.asarray(images["normal"].any(axis=-1))
    else:
        fg = np.asarray(images["rgb"].any(axis=-1))
    share = fg.reshape(fg.shape[0], -1).mean(axis=1)
    return [int(v) for v in np.flatnonzero(share < MIN_FOREGROUND)]


@dataclass
class RenderedSample:
    """One sample rendered but not yet encoded: images per clip frame, and its json member."""

    key: str
    frames: list[dict[str, NDArray[Any]]]
    json: bytes


def render_sample(
    item: Item, row: dict[str, Any], cfg: BuildConfig, times: defaultdict[str, float]
) -> RenderedSample:
    """Load and render one sample (every clip frame from every view) and build its json."""
    t0 = time.perf_counter()
    frames, meshes, first = _load_clip(item, cfg)
    times["read"] += time.perf_counter() - t0
    renderer = _renderer(cfg)
    rendered: list[dict[str, NDArray[Any]]] = []
    norms: list[Normalisation] = []
    landmarks: list[list[list[float]]] = []
    names: tuple[str, ...] = ()
    clip_norm: Normalisation | None = None
    for t, mesh in enumerate(meshes):
        t_render = time.perf_counter()
        try:
            # One normalisation per clip (from its first frame): per-frame landmark noise would
            # otherwise shake the head between frames.
            norm = clip_norm = clip_norm or normalise(mesh)
            rendered.append(renderer.render(mesh, norm))
        except (ValueError, RuntimeError) as exc:
            raise SampleError("render", f"{item.frame_paths[frames[t]][0]}: {exc}") from None
        # Any blank view fails the sample: a multiview positive pair with an empty view is
        # noise, and "every view" would let a face half out of the rig through.
        blank = blank_views(rendered[-1])
        if blank:
            raise SampleError(
                "blank-render",
                f"{item.frame_paths[frames[t]][0]}: view(s) {', '.join(map(str, blank))} of clip "
                f"frame {t} show less than {MIN_FOREGROUND:.0%} foreground (the face is outside "
                "the views: an outlier landmark or vertex?)",
            )
        times["render"] += time.perf_counter() - t_render
        norms.append(norm)
        if mesh.landmarks is not None:
            landmarks.append(np.round(apply_normalisation(mesh.landmarks, norm), 3).tolist())
            names = mesh.landmark_names
    all_lm = len(landmarks) == len(meshes)
    # A sequence carries its first frame's landmarks (in the clip's normalisation) whatever
    # frames the clip holds: the prior's "sequence-first-frame" reference (mvmodel.prior). A
    # reference with other landmark names than the clip's is useless and left out.
    ref_lm: list[list[float]] | None = None
    if (
        first is not None
        and all_lm
        and first.landmarks is not None
        and clip_norm is not None
        and first.landmark_names == names
    ):
        ref_lm = np.round(apply_normalisation(first.landmarks, clip_norm), 3).tolist()
    sample = SampleJson(
        key=item.key,
        dataset=item.meta.dataset,
        source=item.source,
        subject=item.meta.subject,
        sequence=item.meta.sequence,
        kind=item.kind,
        fold=int(row["fold"]),
        frames=frames,
        num_views=len(cfg.views),
        modalities=list(cfg.modalities),
        image_size=cfg.image_size,
        views=renderer.cameras(),
        normalisation=norms,
        landmarks=landmarks if all_lm else None,
        landmark_names=list(names) if all_lm else [],
        reference_frame=0 if ref_lm is not None else None,
        reference_landmarks=ref_lm,
        depth_scale_mm=renderer.depth_scale_mm,
        labels=Labels(
            expression=item.meta.expression,
            intensity=item.meta.intensity,
            extra=dict(item.meta.extra),
        ),
        source_paths=list(item.source_paths),
    )
    return RenderedSample(item.key, rendered, sample.model_dump_json().encode())


def encode_sample(sample: RenderedSample, cfg: BuildConfig) -> tuple[dict[str, bytes], float]:
    """The members of a rendered sample (extension -> bytes) and the seconds spent encoding."""
    t0 = time.perf_counter()
    members: dict[str, bytes] = {"json": sample.json}
    for t, images in enumerate(sample.frames):
        for v in range(len(cfg.views)):
            stem = f"t{t:02d}.v{v:02d}"
            if "rgb" in images:
                members[f"{stem}.rgb.jpg"] = encode_jpeg(images["rgb"][v], cfg.jpeg_quality)
            if "depth" in images:
                members[f"{stem}.depth.png"] = encode_png16(images["depth"][v])
            if "normal" in images:
                members[f"{stem}.normal.png"] = encode_png8(images["normal"][v])
    return members, time.perf_counter() - t0


_SPARE_CORES: dict[str, bool] = {}  # set in pool workers: is there a core beyond one per worker?

#: ``prctl`` option (linux/prctl.h): the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (the build driver) does, however it ends.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, the kernel's own mechanism (no polling). It
    fires when the thread that started this process exits; the driver starts its pool from the
    thread that runs the whole build. Elsewhere, or should ``prctl`` fail: a daemon thread that
    checks the parent once a second. Either way, a parent that died before this ran is caught
    by the ``getppid`` check (the orphan has been handed to another process)."""
    armed = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(spare: bool, parent_pid: int | None = None) -> None:
    """Pool initializer: remember whether a core is spare, and die with ``parent_pid``."""
    _SPARE_CORES["spare"] = spare
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def build_shard(
    out: str, cfg: BuildConfig, name: str, rows: list[dict[str, Any]], items: dict[str, Item]
) -> ShardStats:
    """Build one shard (in a worker process); returns its committed stats.

    Encoding runs on a helper thread while the next sample renders: PIL's encoders release the
    GIL, so the two overlap. Samples still reach the tar in plan order.
    """
    times: defaultdict[str, float] = defaultdict(float)
    expected = member_names(cfg.frames_per_sample, len(cfg.views), cfg.modalities)
    # In plan order: (key, meta, encoding future) for rendered samples, (key, meta, error) else.
    queue: deque[tuple[str, SampleMeta, Future[tuple[dict[str, bytes], float]] | SampleError]] = (
        deque()
    )
    # A helper thread only pays where a core is free for it: with one worker process per core
    # it would fight the renderer for the CPU (and the GIL) and slow both (measured).
    threads = 1 if _SPARE_CORES.get("spare", True) else 0
    with (
        ShardWriter(out, name, member_names=expected, overwrite=True) as writer,
        ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="encode") as pool,
    ):

        def encode(rendered: RenderedSample) -> Future[tuple[dict[str, bytes], float]]:
            if threads:
                return pool.submit(encode_sample, rendered, cfg)
            done: Future[tuple[dict[str, bytes], float]] = Future()
            done.set_result(encode_sample(rendered, cfg))
            return done

        def flush(keep: int) -> None:
            while len(queue) > keep:
                key, meta, job = queue.popleft()
                if isinstance(job, SampleError):
                    writer.add_failed(key, job.kind, str(job), meta)
                    continue
                members, seconds = job.result()
                times["encode"] += seconds
                writer.add_sample(key, members, meta)

        for row in rows:
            item = items[row["key"]]
            meta = SampleMeta(
                subject=row["subject"],
                sequence=row["sequence"],
                fold=row["fold"],
                expression=row["expression"],
                intensity=row["intensity"],
                num_frames=cfg.frames_per_sample,
            )
            try:
                rendered = render_sample(item, row, cfg, times)
            except SampleError as exc:
                queue.append((item.key, meta, exc))
            else:
                queue.append((item.key, meta, encode(rendered)))
            flush(keep=1)
        flush(keep=0)
        return writer.commit(seconds={k: round(v, 4) for k, v in sorted(times.items())})
