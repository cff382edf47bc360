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

import json
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
from mvdata.build.plan import make_plan
from mvdata.build.worker import _init_worker, build_shard
from mvdata.core import Item, ReadError
from mvdata.io import atomic_write
from mvdata.shards.reader import filesystem, is_committed, read_stats
from mvdata.shards.writer import clean_temp_files
from schemas import SCHEMA_VERSION
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
    state_doc = {
        "config": cfg.model_dump(),
        "config_digest": cfg.digest(),
        "schema_version": SCHEMA_VERSION,
    }
    atomic_write(
        f"{out.rstrip('/')}/{STATE_DIR}/build.json",
        json.dumps(state_doc, indent=2, sort_keys=True).encode(),
    )


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
    if not 0 <= worker_rank < num_workers:
        raise ValueError(f"worker rank {worker_rank} not in [0, {num_workers})")
    start = time.perf_counter()
    plan = make_plan(cfg)
    _prepare_out(out, cfg, mode)
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
            max_workers=n_proc, mp_context=ctx, initializer=_init_worker, initargs=(spare,)
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
