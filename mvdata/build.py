"""``mvdata build``: plan -> shard work units -> worker processes -> commit -> finalize.

1. **Plan** (:func:`mvdata.plan.make_plan`): scan the source, assign subject-independent folds,
   shuffle all samples globally with the seed and cut them into shards. The plan is a pure
   function of (source files, settings), so every worker of a multi-machine build (and every
   resumed run) computes the same plan; the settings are kept in ``OUT/.mvdata/build.json`` so
   that a resumed build can refuse different settings.
2. **Shards** are the unit of work, retry and resume: a shard is done exactly when its
   ``stats.json`` exists (written last by :class:`mvdata.shards.ShardWriter`). A worker process
   renders each sample of its shard (views x modalities x clip frames), encodes the images and
   writes the tar; an item that fails to load or render is recorded in the shard's parquet with
   its reason and skipped. Because a shard's bytes depend only on the plan, a shard rebuilt
   after a crash is byte-identical to one built without interruption.
3. **Finalize** (:func:`finalize`) writes the root files once every shard is committed:
   ``manifest.parquet``, ``sizes.json``, ``dataset.json`` and the dataset card ``README.md``.

GL contexts cannot survive a fork, so the pool uses the ``spawn`` start method and every worker
opens its own renderer (see :mod:`mvdata.render`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mvdata import __version__
from mvdata.card import dataset_card
from mvdata.clips import MotionReference, motion_clip, uniform_clip
from mvdata.mesh import Item, Mesh, MeshReadError, ReadError
from mvdata.plan import BuildConfig, Plan, make_plan
from mvdata.render import (
    DEFAULT_DEPTH_SCALE_MM,
    CameraRig,
    Renderer,
    apply_normalisation,
    normalise,
)
from mvdata.shards import (
    SampleMeta,
    ShardWriter,
    clean_temp_files,
    encode_jpeg,
    encode_png8,
    encode_png16,
    filesystem,
    is_committed,
    member_names,
    read_stats,
)
from mvdata.sources import load_frame
from schemas import SCHEMA_VERSION
from schemas.models import (
    DatasetMetadata,
    Labels,
    ManifestRow,
    Normalisation,
    SampleJson,
    ShardStats,
    SizesJson,
)
from schemas.tables import check_frame

STATE_DIR = ".mvdata"


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


class BuildError(RuntimeError):
    """The build as a whole cannot go on (disk full, a worker killed): nothing half-written is
    left looking finished, and rerunning the same command resumes."""


class SampleError(Exception):
    """A sample that cannot be made; ``kind`` is its error category in the shard's parquet."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _load_clip(item: Item, cfg: BuildConfig) -> tuple[list[int], list[Mesh]]:
    def load(t: int) -> Mesh:
        try:
            return load_frame(item, t)
        except MeshReadError as exc:
            raise SampleError(exc.kind, str(exc)) from None

    if item.kind == "static" or cfg.kind == "static":
        return [0], [load(0)]
    if cfg.clip_sampling == "uniform":
        frames = uniform_clip(item.num_frames, cfg.clip_frames)
        cache = {t: load(t) for t in sorted(set(frames))}
        return frames, [cache[t] for t in frames]
    # Stream the sequence for its motion energy (two frames in memory, not ~100 with their
    # textures), then load the chosen frames again.
    first = load(0)
    ref = MotionReference(first)
    energy = np.array([0.0] + [ref.motion(load(t), t) for t in range(1, item.num_frames)])
    frames = motion_clip(energy, cfg.clip_frames)
    chosen = {t: first if t == 0 else load(t) for t in sorted(set(frames))}
    return frames, [chosen[t] for t in frames]


@dataclass
class RenderedSample:
    """One sample rendered but not yet encoded: images per clip frame, and its json member."""

    key: str
    frames: list[dict[str, NDArray[Any]]]
    json: bytes


def render_sample(item: Item, row: dict[str, Any], cfg: BuildConfig, times: defaultdict[str, float]) -> RenderedSample:
    """Load and render one sample (every clip frame from every view) and build its json."""
    t0 = time.perf_counter()
    frames, meshes = _load_clip(item, cfg)
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
        times["render"] += time.perf_counter() - t_render
        norms.append(norm)
        if mesh.landmarks is not None:
            landmarks.append(np.round(apply_normalisation(mesh.landmarks, norm), 3).tolist())
            names = mesh.landmark_names
    all_lm = len(landmarks) == len(meshes)
    sample = SampleJson(
        key=item.key, dataset=item.meta.dataset, source=item.source, subject=item.meta.subject,
        sequence=item.meta.sequence, kind=item.kind, fold=int(row["fold"]), frames=frames,
        num_views=len(cfg.views), modalities=list(cfg.modalities), image_size=cfg.image_size,
        views=renderer.cameras(), normalisation=norms, landmarks=landmarks if all_lm else None,
        landmark_names=list(names) if all_lm else [], depth_scale_mm=renderer.depth_scale_mm,
        labels=Labels(expression=item.meta.expression, intensity=item.meta.intensity,
                      extra=dict(item.meta.extra)),
        source_paths=list(item.source_paths),
    )  # fmt: skip
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


def _init_worker(spare: bool) -> None:
    _SPARE_CORES["spare"] = spare


def build_shard(out: str, cfg: BuildConfig, name: str, rows: list[dict[str, Any]],
                items: dict[str, Item]) -> ShardStats:  # fmt: skip
    """Build one shard (in a worker process); returns its committed stats.

    Encoding runs on a helper thread while the next sample renders: PIL's encoders release the
    GIL, so the two overlap. Samples still reach the tar in plan order.
    """
    times: defaultdict[str, float] = defaultdict(float)
    expected = member_names(cfg.frames_per_sample, len(cfg.views), cfg.modalities)
    # In plan order: (key, meta, encoding future) for rendered samples, (key, meta, error) else.
    queue: deque[tuple[str, SampleMeta, Future[tuple[dict[str, bytes], float]] | SampleError]] = deque()
    # A helper thread only pays where a core is free for it: with one worker process per core
    # it would fight the renderer for the CPU (and the GIL) and slow both (measured).
    threads = 1 if _SPARE_CORES.get("spare", True) else 0
    with ShardWriter(out, name, member_names=expected, overwrite=True) as writer, \
            ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="encode") as pool:  # fmt: skip

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
                subject=row["subject"], sequence=row["sequence"], fold=row["fold"],
                expression=row["expression"], intensity=row["intensity"],
                num_frames=cfg.frames_per_sample,
            )  # fmt: skip
            try:
                rendered = render_sample(item, row, cfg, times)
            except SampleError as exc:
                queue.append((item.key, meta, exc))
            else:
                queue.append((item.key, meta, encode(rendered)))
            flush(keep=1)
        flush(keep=0)
        return writer.commit(seconds={k: round(v, 4) for k, v in sorted(times.items())})


# --------------------------------------------------------------------------- driver
@dataclass
class BuildSummary:
    out: str
    num_shards: int
    shards_built: int
    shards_skipped: int
    num_planned: int
    num_written: int
    num_failed: int
    errors: Counter[str] = field(default_factory=Counter)
    scan_errors: list[ReadError] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    finalized: bool = False

    @property
    def failed_fraction(self) -> float:
        total = self.num_planned + len(self.scan_errors)
        return (self.num_failed + len(self.scan_errors)) / total if total else 0.0


def worker_from_env() -> tuple[int, int]:
    """(rank, count) of this build worker from torchrun or a Slurm array, else (0, 1)."""
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        base = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(env["SLURM_ARRAY_TASK_ID"]) - base, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    return 0, 1


def _prepare_out(out: str, cfg: BuildConfig, mode: str) -> None:
    fs, root = filesystem(out)
    state = f"{root}/{STATE_DIR}/build.json"
    if mode not in ("resume", "overwrite"):
        raise ValueError(f"--mode must be resume or overwrite, got {mode!r}")
    if fs.exists(root) and not fs.isdir(root):
        raise FileExistsError(f"{out}: exists and is not a directory")
    ours = fs.exists(state)
    entries = fs.ls(root, detail=False) if fs.exists(root) else []
    if entries and not ours:
        raise FileExistsError(f"{out}: not empty and not an mvdata build; choose another output")
    if ours and mode == "overwrite":
        fs.rm(root, recursive=True)
        ours = False
    if ours:
        prev = json.loads(fs.cat_file(state))
        if prev.get("config_digest") != cfg.digest():
            raise ValueError(
                f"{out}: was built with other settings ({state}); rerun with the same settings, "
                "or --mode overwrite to start again"
            )
        return
    fs.makedirs(f"{root}/{STATE_DIR}", exist_ok=True)
    _atomic_write(out, f"{STATE_DIR}/build.json", json.dumps(
        {"config": asdict(cfg), "config_digest": cfg.digest(), "schema_version": SCHEMA_VERSION},
        indent=2, sort_keys=True).encode())  # fmt: skip


def _atomic_write(out: str, rel: str, data: bytes) -> None:
    fs, root = filesystem(out)
    final = f"{root}/{rel}"
    tmp = f"{final}.{os.getpid()}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, final)


def build(
    cfg: BuildConfig,
    out: str,
    *,
    mode: str = "resume",
    workers: int | None = None,
    worker_rank: int = 0,
    num_workers: int = 1,
    finalize_when_done: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BuildSummary:
    """Build (or resume) the shards of ``cfg`` into ``out``; this worker takes the shards whose
    index is ``worker_rank`` modulo ``num_workers``. Finalizes when every shard is committed."""
    cfg.validate()
    if not 0 <= worker_rank < num_workers:
        raise ValueError(f"worker rank {worker_rank} not in [0, {num_workers})")
    start = time.perf_counter()
    plan = make_plan(cfg)
    _prepare_out(out, cfg, mode)
    mine = [n for i, n in enumerate(plan.shard_names) if i % num_workers == worker_rank]
    todo = [n for n in mine if not is_committed(out, n)]
    clean_temp_files(out, todo)  # what a killed run of this worker left behind
    summary = BuildSummary(out=out, num_shards=len(plan.shard_names), shards_built=0,
                           shards_skipped=len(mine) - len(todo), num_planned=0, num_written=0,
                           num_failed=0, scan_errors=plan.scan_errors)  # fmt: skip
    by_shard = plan.manifest.partition_by("shard_name", as_dict=True, maintain_order=True)
    total = sum(len(by_shard[(n,)]) for n in todo)
    done = 0
    n_proc = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))

    def payload(name: str) -> tuple[list[dict[str, Any]], dict[str, Item]]:
        rows = by_shard[(name,)].to_dicts()
        return rows, {r["key"]: plan.items[r["key"]] for r in rows}

    if todo and n_proc == 1:
        for name in todo:
            try:
                build_shard(out, cfg, name, *payload(name))
            except OSError as exc:
                raise _shard_failed(out, name, exc) from exc
            done += len(by_shard[(name,)])
            summary.shards_built += 1
            if progress:
                progress(done, total)
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        # llvmpipe keeps its default raster threads (one per core) in every worker: limiting
        # them to a core's share rendered slower (168 vs 232 views/s, bench/bench_render.py).
        spare = (os.cpu_count() or 1) > n_proc
        with ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx, initializer=_init_worker,
                                 initargs=(spare,)) as pool:  # fmt: skip
            pending: dict[Future[ShardStats], str] = {}
            queue: Iterator[str] = iter(todo)
            # Keep at most two shards per worker in flight: bounded memory, steady progress.
            for name in queue:
                pending[pool.submit(build_shard, out, cfg, name, *payload(name))] = name
                if len(pending) >= 2 * n_proc:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    name = pending.pop(fut)
                    try:
                        fut.result()  # a worker crash is a build failure, not a skipped sample
                    except (OSError, BrokenProcessPool) as exc:
                        for other in pending:
                            other.cancel()
                        raise _shard_failed(out, name, exc) from exc
                    done += len(by_shard[(name,)])
                    summary.shards_built += 1
                    if progress:
                        progress(done, total)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[pool.submit(build_shard, out, cfg, nxt, *payload(nxt))] = nxt
    seconds: defaultdict[str, float] = defaultdict(float)
    for name in mine:
        st = read_stats(out, name)
        summary.num_planned += st.num_planned
        summary.num_written += st.num_written
        summary.num_failed += st.num_failed
        summary.errors.update(st.errors)
        for stage, sec in st.seconds.items():
            seconds[stage] += sec
    summary.errors.update(e.kind for e in plan.scan_errors)
    summary.seconds = dict(seconds)
    if finalize_when_done and all(is_committed(out, n) for n in plan.shard_names):
        finalize(out, plan)
        summary.finalized = True
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _shard_failed(out: str, name: str, exc: BaseException) -> BuildError:
    if isinstance(exc, BrokenProcessPool):
        why = "a worker process died (killed, or out of memory)"
    else:
        why = f"{getattr(exc, 'strerror', None) or exc}"
    return BuildError(
        f"{out}: building shard {name} failed: {why}. Committed shards are kept and this one was "
        "not committed; fix the cause and rerun the same command to resume."
    )


def finalize(out: str, plan: Plan | None = None) -> DatasetMetadata:
    """Write the root files once every shard is committed (``mvdata finalize``)."""
    fs, root = filesystem(out)
    state = f"{root}/{STATE_DIR}/build.json"
    if not fs.exists(state):
        raise FileNotFoundError(f"{out}: no {STATE_DIR}/build.json: not an mvdata build")
    if plan is None:
        raw = json.loads(fs.cat_file(state))["config"]
        raw["views"] = tuple(tuple(v) for v in raw["views"])
        raw["modalities"] = tuple(raw["modalities"])
        plan = make_plan(BuildConfig(**raw))
    cfg = plan.config
    missing = [n for n in plan.shard_names if not is_committed(out, n)]
    if missing:
        raise ValueError(f"{out}: {len(missing)} shard(s) not built yet: {', '.join(missing[:5])}")
    stats = {n: read_stats(out, n) for n in plan.shard_names}
    check_frame(ManifestRow, plan.manifest, where="manifest")
    buf = plan.manifest.sort("order")
    import io

    bio = io.BytesIO()
    buf.write_parquet(bio, statistics=False)
    _atomic_write(out, "manifest.parquet", bio.getvalue())
    sizes = SizesJson(shards={f"data/{n}.tar": s.num_written for n, s in stats.items()})
    _atomic_write(out, "sizes.json", (json.dumps(sizes.model_dump(), indent=2, sort_keys=True) + "\n").encode())
    sample_views = CameraRig(cfg.views).cameras()  # the rig the workers rendered with
    meta = DatasetMetadata(
        name=cfg.name or f"{plan.dataset}-multiview",
        source=cfg.source, dataset=plan.dataset, source_root=cfg.source_root,
        licence=plan.licence, publishable=_publishable(plan), seed=cfg.seed,
        num_folds=cfg.num_folds, split=cfg.split, views=sample_views,
        modalities=list(cfg.modalities), image_size=cfg.image_size,
        clip_frames=cfg.frames_per_sample, clip_sampling=cfg.clip_sampling,
        jpeg_quality=cfg.jpeg_quality, depth_scale_mm=DEFAULT_DEPTH_SCALE_MM,
        member_names=member_names(cfg.frames_per_sample, len(cfg.views), cfg.modalities),
        num_samples=sum(s.num_written for s in stats.values()),
        num_failed=sum(s.num_failed for s in stats.values()),
        num_shards=len(stats), samples_per_shard=cfg.samples_per_shard,
        generator_version=__version__,
    )  # fmt: skip
    _atomic_write(out, "dataset.json", (json.dumps(meta.model_dump(), indent=2, sort_keys=True) + "\n").encode())
    card = dataset_card(meta, sizes)
    _atomic_write(out, "README.md", card.encode())
    return meta


def _publishable(plan: Plan) -> bool:
    """Only data free of third-party terms may be published without the user's word: synthetic
    faces from the procedural model. Licensed datasets and SFM-derived faces (non-commercial
    terms) need the user's explicit consent at publish time."""
    return plan.config.source == "synthetic" and all(
        it.meta.extra.get("face_model") == "procedural" for it in plan.items.values()
    )

