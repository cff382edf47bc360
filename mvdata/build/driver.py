"""``mvdata build``: plan -> shard work units -> worker processes -> commit -> finalize.

1. **Plan** (:func:`mvdata.build.plan.make_plan`): scan the source, assign subject-independent folds,
   shuffle all samples globally with the seed and cut them into shards. The plan is a pure
   function of (source files, settings), so every worker of a multi-machine build (and every
   resumed run) computes the same plan; the settings are kept in ``OUT/.mvdata/build.json`` so
   that a resumed build can refuse different settings.
2. **Shards** are the unit of work, retry and resume: a shard is done exactly when its
   ``stats.json`` exists (written last by :class:`mvdata.shards.writer.ShardWriter`). A worker process
   renders each sample of its shard (views x modalities x clip frames), encodes the images and
   writes the tar; an item that fails to load or render is recorded in the shard's parquet with
   its reason and skipped. Because a shard's bytes depend only on the plan, a shard rebuilt
   after a crash is byte-identical to one built without interruption.
3. **Finalize** (:func:`mvdata.build.finalize.finalize`) writes the root files once every shard is committed:
   ``manifest.parquet``, ``sizes.json``, ``dataset.json`` and the dataset card ``README.md``.

This module is the driver (plan, pool, progress, summary); :mod:`mvdata.build.worker` builds one
shard; :mod:`mvdata.build.finalize` writes the root files.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from mvdata.build.config import STATE_DIR, BuildConfig
from mvdata.build.finalize import finalize
from mvdata.build.lock import build_lock, is_lock_file
from mvdata.build.plan import Plan, make_plan
from mvdata.build.state import check_sources, read_state, state_path, write_state
from mvdata.build.worker import _init_worker, build_shard
from mvdata.core import Item, ReadError, differing_settings
from mvdata.shards.reader import filesystem, is_committed, read_stats
from mvdata.shards.writer import clean_temp_files
from mvdata.sources.inspect import convention_warnings, spot_check
from schemas.models import ShardStats


class BuildError(RuntimeError):
    """The build as a whole cannot go on (disk full, a worker killed): nothing half-written is
    left looking finished, and rerunning the same command resumes."""


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
    #: What the spot check of the reader's conventions found before rendering (empty: nothing,
    #: or not run: a resumed build, another worker, the synthetic source).
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_fraction(self) -> float:
        total = self.num_planned + len(self.scan_errors)
        return (self.num_failed + len(self.scan_errors)) / total if total else 0.0


def _env_int(env: dict[str, str] | os._Environ[str], name: str) -> int:
    """An integer environment variable, or a ``ValueError`` naming it."""
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def worker_from_env() -> tuple[int, int]:
    """(rank, count) of this build worker from torchrun or a Slurm array, else (0, 1); a
    ``ValueError`` naming the variable when one is not an integer or the rank is out of range."""
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        base = _env_int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        rank = _env_int(env, "SLURM_ARRAY_TASK_ID") - base
        count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
        names = "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN"
    elif "RANK" in env and "WORLD_SIZE" in env:
        rank, count = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
        names = "RANK"
    else:
        return 0, 1
    if count < 1 or not 0 <= rank < count:
        raise ValueError(f"{names} = {rank} is not within 0..{count - 1} (of {count} workers)")
    return rank, count


def _check_out(out: str, mode: str) -> None:
    """Refuse an output that is a file or a folder that is not an mvdata build (nothing is
    written into those), and an unknown ``mode``."""
    if mode not in ("resume", "overwrite"):
        raise ValueError(f"--mode must be resume or overwrite, got {mode!r}")
    fs, root = filesystem(out)
    if not fs.exists(root):
        return
    if not fs.isdir(root):
        raise FileExistsError(f"{out}: exists and is not a directory")
    if fs.exists(f"{root}/{STATE_DIR}/build.json"):
        return
    entries = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(root, detail=False)]
    # A folder holding only .mvdata/ without build.json: a build stopped before it wrote any.
    if any(e != STATE_DIR for e in entries):
        raise FileExistsError(f"{out}: not empty and not an mvdata build; choose another output")


def _clear_out(out: str) -> None:
    """``--mode overwrite``: remove everything in ``out`` but the build locks (held right now)."""
    fs, root = filesystem(out)
    for path in fs.ls(root, detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name != STATE_DIR:
            fs.rm(path, recursive=True)
    state = f"{root}/{STATE_DIR}"
    if fs.exists(state):
        for path in fs.ls(state, detail=False):
            if not is_lock_file(str(path).rstrip("/").rsplit("/", 1)[-1]):
                fs.rm(path, recursive=True)


def _prepare_out(out: str, cfg: BuildConfig, mode: str, plan: Plan) -> None:
    """Start or resume the build's state: a fresh ``build.json``, or the recorded one checked
    against these settings and these source files."""
    fs, root = filesystem(out)
    if mode == "overwrite" and fs.exists(root):
        _clear_out(out)
    try:
        state = read_state(out)
    except FileNotFoundError:
        write_state(out, cfg, plan)
        return
    if state.get("config_digest") != cfg.digest():
        raise ValueError(
            f"{out}: was built with other settings ({state_path(out)}; "
            f"{_setting_differences(state['config'], cfg)}); rerun with the same settings, or "
            "--mode overwrite to start again"
        )
    check_sources(out, state, plan, doing="resume")
    if "sources" not in state:  # an output from before fingerprints: record them from now on
        write_state(out, cfg, plan)


def _setting_differences(recorded: dict[str, Any], cfg: BuildConfig) -> str:
    """``"modalities: ['rgb', 'depth'] there, ['rgb', 'depth', 'normal'] now"`` for every
    setting that differs (defaults change between versions: the message must say which).
    ``recorded`` is ``build.json``'s ``config``, already a JSON dump."""
    now = cfg.model_dump(mode="json")
    diff = [
        f"{k}: {_short(recorded.get(k))} there, {_short(now.get(k))} now"
        for k in differing_settings(recorded, now)
    ]
    return "; ".join(diff) if diff else "the recorded settings hash differently"


def _short(value: Any, limit: int = 120) -> str:
    """A setting's repr cut to ``limit`` characters (subject -> fold lists can be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    notice: Callable[[str], None] | None = None,
) -> BuildSummary:
    """Build (or resume) the shards of ``cfg`` into ``out``; this worker takes the shards whose
    index is ``worker_rank`` modulo ``num_workers``. Finalizes when every shard is committed.

    Before a fresh build renders anything, worker 0 spot-checks the reader's conventions on a
    few frames (:func:`mvdata.sources.inspect.spot_check`: landmark order, file axes, texture
    v) and hands each warning to ``notice`` at once (and keeps it in the summary): a wrong
    guess shows in seconds. It warns and goes on; the files may be right and the check fooled.

    Holds the output's build lock meanwhile (:mod:`mvdata.build.lock`: a second build into a
    local output is refused), and refuses to resume or finalize when a source file changed
    since the build started (:mod:`mvdata.build.state`)."""
    if num_workers < 1:
        raise ValueError(f"--num-workers must be at least 1, got {num_workers}")
    if not 0 <= worker_rank < num_workers:
        raise ValueError(f"--worker-rank {worker_rank} is not within 0..{num_workers - 1}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    start = time.perf_counter()
    plan = make_plan(cfg)
    _check_out(out, mode)
    with build_lock(out, worker_rank, num_workers):
        summary = _build_locked(
            cfg,
            out,
            plan,
            mode,
            workers,
            worker_rank,
            num_workers,
            finalize_when_done,
            progress,
            notice,
        )
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _build_locked(
    cfg: BuildConfig,
    out: str,
    plan: Plan,
    mode: str,
    workers: int | None,
    worker_rank: int,
    num_workers: int,
    finalize_when_done: bool,
    progress: Callable[[int, int], None] | None,
    notice: Callable[[str], None] | None = None,
) -> BuildSummary:
    """:func:`build` once the lock is held."""
    _prepare_out(out, cfg, mode, plan)
    mine = [n for i, n in enumerate(plan.shard_names) if i % num_workers == worker_rank]
    todo = [n for n in mine if not is_committed(out, n)]
    clean_temp_files(out, todo)  # what a killed run of this worker left behind
    summary = BuildSummary(
        out=out,
        num_shards=len(plan.shard_names),
        shards_built=0,
        shards_skipped=len(mine) - len(todo),
        num_planned=0,
        num_written=0,
        num_failed=0,
        scan_errors=plan.scan_errors,
    )
    if todo and worker_rank == 0 and not summary.shards_skipped and cfg.source != "synthetic":
        # the synthetic source reads the project's own files: nothing of its to guess
        checked = spot_check([plan.items[k] for k in sorted(plan.items)], cfg.source)
        summary.warnings = convention_warnings(checked)
        if notice is not None:
            for line in summary.warnings:
                notice(line)
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
        with ProcessPoolExecutor(
            max_workers=n_proc,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(spare, os.getpid()),  # workers die with this process (kill -9 included)
        ) as pool:
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
