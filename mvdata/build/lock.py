"""One build at a time into one output: an ``fcntl.flock`` on ``OUT/.mvdata/lock``.

A single-machine build (``num_workers == 1``) holds the lock exclusively; each machine of a
multi-machine build holds it shared (they write disjoint shards) plus an exclusive lock on
``OUT/.mvdata/lock.rank{R}`` for its own part, so that a second run of the same rank (a resume
started while the first still runs) is refused, and so is a single-machine build while any
worker runs. The kernel drops a ``flock`` when its process dies (even by ``kill -9``), so a lock
never outlives its build and nothing needs cleaning up.

Local paths (and ``file://`` URLs) only: object stores (``s3://``, ``gs://``, ...) have no
locks, so nothing stops two builds into one remote output; run one build per output there. A
network filesystem honours ``flock`` where it is mounted with lock support (NFSv4, Lustre with
``flock``); elsewhere the lock is per machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fsspec.implementations.local import LocalFileSystem

from mvdata.build.config import STATE_DIR
from mvdata.shards.reader import filesystem


class BuildLockedError(FileExistsError):
    """Another build is writing into the same output."""


def _take(path: Path, mode: int, out: str) -> IO[str]:
    """Open ``path`` and ``flock`` it with ``mode`` without waiting; who holds it is named."""
    fh = open(path, "a+")  # noqa: SIM115 - held until the build ends (closed by the caller)
    try:
        fcntl.flock(fh, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = _live_holder(fh.read())
        fh.close()
        raise BuildLockedError(
            f"{out}: another mvdata build is writing into it ({path} is locked"
            f"{', by ' + holder if holder else ''}); wait for it to end or stop it, then rerun"
        ) from None
    if mode == fcntl.LOCK_EX:  # the only holder: say who, for the message above
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
    return fh


def _live_holder(text: str) -> str | None:
    """``"pid N on HOST"`` from a lock file when that process still runs on this host (a file
    keeps what its last exclusive holder wrote, also after that one is gone)."""
    parts = text.split()
    if len(parts) != 4 or parts[0] != "pid" or not parts[1].isdigit():
        return None
    if parts[3] != socket.gethostname():
        return text.strip()
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return text.strip()


@contextlib.contextmanager
def build_lock(out: str, worker_rank: int = 0, num_workers: int = 1) -> Iterator[None]:
    """Hold the output's build lock for the ``with`` block (see the module docstring); a
    :class:`BuildLockedError` naming the lock file when another build holds it."""
    fs, root = filesystem(out)
    if not isinstance(fs, LocalFileSystem):
        yield  # no locks on object stores (documented above)
        return
    state = Path(root) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    held: list[IO[str]] = []
    try:
        if num_workers == 1:
            held.append(_take(state / "lock", fcntl.LOCK_EX, out))
        else:
            held.append(_take(state / "lock", fcntl.LOCK_SH, out))
            held.append(_take(state / f"lock.rank{worker_rank}", fcntl.LOCK_EX, out))
        yield
    finally:
        for fh in reversed(held):
            fh.close()  # closing the file drops its flock


def is_lock_file(name: str) -> bool:
    """True for the lock files of :func:`build_lock` (kept when an output is overwritten)."""
    return name == "lock" or name.startswith("lock.rank")
