"""Parsers and writers of the raw mesh / landmark file formats (no dataset logic here).

Every parser raises :class:`mvdata.core.MeshReadError` naming the file and the problem, with a
short ``kind`` (``"empty"`` (also zero-filled), ``"truncated"``, ``"bad-magic"``,
``"wrong-size"``, ``"nan"`` (also values beyond float32), ``"encoding"``, ``"parse"``,
``"missing"`` (also a dangling symlink), ``"io"`` (a directory, FIFO or symlink loop in place of
the file)), and no other exception; declared counts and sizes are checked against the file
before anything is allocated from them. Every writer writes atomically
(:func:`mvdata.io.atomic_write`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.core import MeshReadError

__all__ = [
    "as_float32",
    "check_indices",
    "fan_triangulate",
    "fan_triangulate_lists",
    "file_problem",
    "read_bytes",
    "refuse_zero_filled",
    "zero_filled",
]


def file_problem(path: Path) -> tuple[str, str] | None:
    """``(kind, message)`` when ``path`` cannot be read as a regular file, else None.

    Checked with ``os.stat`` before opening, so that a FIFO or a device in place of a file is
    refused instead of blocking the reader forever, and a dangling symlink or a symlink loop is
    called what it is (not "file not found" or "empty")."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "io", "symlink loop: the link leads back to itself"
        if exc.errno == errno.ENOENT:
            if p.is_symlink():
                return "missing", f"dangling symlink: its target {os.readlink(p)!r} does not exist"
            return "missing", "file not found"
        return "io", f"cannot read: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return "io", "a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "io", "not a regular file (a FIFO, socket or device): refused, reading could block"
    return None


def zero_filled(data: bytes) -> bool:
    """True when ``data`` is non-empty and holds only zero bytes (a file whose blocks were
    allocated but never written, e.g. after a crash); cheap unless the first byte is zero."""
    return bool(data) and data[0] == 0 and data.count(0) == len(data)


def refuse_zero_filled(data: bytes, path: str) -> None:
    """``MeshReadError`` ("empty") for a zero-filled file, named as such (not "UTF-16" or
    "not a PLY file", which a parser would otherwise conclude from its first bytes)."""
    if zero_filled(data):
        msg = f"file holds only zero bytes ({len(data)}): zero-filled, its content never written"
        raise MeshReadError(path, "empty", msg)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; an empty, zero-filled or unreadable file (missing, a directory, a
    FIFO, a dangling symlink, a symlink loop) raises ``MeshReadError`` naming it."""
    problem = file_problem(Path(path))
    if problem is not None:
        raise MeshReadError(str(path), *problem)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MeshReadError(str(path), "io", f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise MeshReadError(str(path), "empty", "file is empty (0 bytes)")
    refuse_zero_filled(data, str(path))
    return data


def as_float32(values: NDArray[np.generic]) -> NDArray[np.float32] | None:
    """``values`` as float32 (what :class:`mvdata.core.Mesh` keeps), or None when any is NaN or
    inf *after* the cast: a finite float64 such as 1e300 overflows to inf in float32, so the
    check must look at the cast values."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(values, dtype=np.float32)
    return out if np.isfinite(out).all() else None


def check_indices(
    idx: NDArray[np.integer],
    count: int,
    path: str,
    what: str,
    tokens: str | None = None,
    separators: bool = True,
    noun: str = "index",
) -> None:
    """Raise ``MeshReadError`` unless every entry of the index array ``idx`` is in
    ``0 .. count-1`` (or ``-1``, a polygon separator, with ``separators``). Done on the values
    as parsed (int64, or the file's own integer type), *before* any narrowing cast: an index of
    2**32 would wrap to 0 in int32. ``tokens`` is the text the indices were parsed from: the
    bad index is then quoted as written (numpy saturates an index too large for int64 at
    2**63-1, which would misreport it); ``#`` comments in it are skipped."""
    low = -1 if separators else 0
    if idx.size == 0 or (idx.min() >= low and idx.max() < count):
        return  # min and max: cheaper than the masks below, which only an error needs
    bad = (idx < low) | (idx >= count)
    shown = str(int(idx.ravel()[int(np.argmax(bad.ravel()))]))
    if tokens is not None:
        if "#" in tokens:  # VRML comments: their numbers are not indices
            tokens = re.sub(r"#[^\n]*", " ", tokens)
        for tok in tokens.replace(",", " ").split():
            try:
                v = int(tok)
            except ValueError:
                continue
            if v < low or v >= count:
                shown = tok
                break
    what_range = f"only {count} exist (0..{count - 1})" if count else "none exist"
    raise MeshReadError(path, "parse", f"{what} refers to {noun} {shown[:40]}; {what_range}")


def fan_triangulate(
    indices: NDArray[np.int64], path: str, what: str = "coordIndex"
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Triangles from a ``-1``-separated polygon index list (VRML style), fan-triangulated.

    Returns ``(triangles (F, 3), polygon_of_triangle (F,))``; the second array lets a caller
    triangulate a parallel index list (``texCoordIndex``) in exactly the same way.
    Polygons with fewer than three corners are dropped.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return np.zeros((0, 3), dtype=np.int32), np.zeros(0, dtype=np.int64)
    if idx[-1] != -1:
        idx = np.append(idx, -1)
    ends = np.flatnonzero(idx == -1)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    if (idx < -1).any():
        raise MeshReadError(path, "parse", f"{what} holds a negative index other than -1")
    ntri = np.maximum(lengths - 2, 0)
    total = int(ntri.sum())
    poly = np.repeat(np.arange(len(starts)), ntri)
    # position of each triangle inside its polygon's fan: 0 .. k-3
    offs = np.arange(total) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    s = starts[poly]
    tris = np.stack([idx[s], idx[s + offs + 1], idx[s + offs + 2]], axis=1)
    return tris.astype(np.int32), poly


def fan_triangulate_lists(
    lists: list[NDArray[np.int64]] | NDArray[np.object_],
) -> NDArray[np.int32]:
    """Triangles from a list of polygons (PLY / OBJ style), fan-triangulated."""
    if len(lists) == 0:
        return np.zeros((0, 3), dtype=np.int32)
    lengths = np.fromiter((len(p) for p in lists), dtype=np.int64, count=len(lists))
    if (lengths == 3).all():
        return np.asarray(np.stack(list(lists)), dtype=np.int32).reshape(-1, 3)
    flat = np.concatenate([np.append(np.asarray(p, dtype=np.int64), -1) for p in lists])
    tris, _ = fan_triangulate(flat, "<lists>")
    return tris
