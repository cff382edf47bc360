"""Parsers and writers of the raw mesh / landmark file formats (no dataset logic here).

Every parser raises :class:`mvdata.core.MeshReadError` naming the file and the problem, with a
short ``kind`` (``"empty"``, ``"truncated"``, ``"bad-magic"``, ``"wrong-size"``, ``"nan"``,
``"encoding"``, ``"parse"``). Every writer writes atomically (:func:`mvdata.io.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.core import MeshReadError

__all__ = ["fan_triangulate", "fan_triangulate_lists", "read_bytes"]


def read_bytes(path: Path) -> bytes:
    """The file's bytes; an empty file or an unreadable one raises ``MeshReadError``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise MeshReadError(str(path), "missing", "file not found") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise MeshReadError(str(path), "io", f"cannot read: {exc.strerror}") from None
    if not data:
        raise MeshReadError(str(path), "empty", "file is empty (0 bytes)")
    return data


def fan_triangulate(
    indices: NDArray[np.int64], path: str, what: str = "coordIndex"
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Triangles from a ``-1``-separated polygon index list (VRML style), fan-triangulated.

    Returns ``(triangles (F, 3), polygon_of_triangle (F,))``; the second array lets a caller
    triangulate a parallel index list (``texCoordIndex``) in exactly the same way.
    Polygons with fewer than three corners are dropped.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and idx[-1] != -1:
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
