"""Landmark text files: BU ``.bnd`` (83 rows) and Bosphorus ``.lm2`` / ``.lm3``.

Hand-written: these are small dataset-specific text layouts no library reads.

* ``.bnd``: ``index<TAB><TAB>x y z`` per line (index 0-based into the mesh); an empty trailing
  line is tolerated (some BU-4DFE files have one).
* ``.lm3``: ``# 3D Landmark File``, blank, ``N landmarks:``, then N pairs of lines: a label and
  ``x y z`` (mm). ``.lm2``: ``# 2D Landmark File``, blank, ``N landmarks``, blank, ``Labels:``,
  N labels, blank, ``2D Image coordinates:``, N lines ``x y`` (pixels). CRLF line ends and
  ``%g`` numbers; N varies per scan (occlusion, pose).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.core import MeshReadError
from mvdata.formats import read_bytes
from mvdata.io import atomic_write

__all__ = [
    "Landmarks",
    "read_bnd",
    "read_lm2",
    "read_lm3",
    "write_bnd",
    "write_lm2",
    "write_lm3",
]

_RE_COUNT = re.compile(r"^(\d+)\s+landmarks:?\s*$", re.I)


@dataclass
class Landmarks:
    """Landmark rows: ``points (L, D)`` float64, ``labels`` (names) and ``indices`` (or None)."""

    points: NDArray[np.float64]
    labels: tuple[str, ...]
    indices: NDArray[np.int64] | None = None


def _text(path: Path | str) -> tuple[str, str]:
    p = str(path)
    data = read_bytes(Path(path))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:64]:
        raise MeshReadError(p, "encoding", "file is UTF-16 or binary; expected ASCII text")
    try:
        return data.decode("ascii"), p
    except UnicodeDecodeError as exc:
        raise MeshReadError(p, "encoding", f"not ASCII text at byte {exc.start}") from None


def _floats(fields: list[str], n: int, path: str, lineno: int) -> list[float]:
    if len(fields) != n:
        raise MeshReadError(path, "parse", f"line {lineno}: expected {n} numbers, got {fields!r}")
    try:
        vals = [float(f) for f in fields]
    except ValueError:
        raise MeshReadError(path, "parse", f"line {lineno}: not a number in {fields!r}") from None
    if not all(np.isfinite(vals)):
        raise MeshReadError(path, "nan", f"line {lineno}: NaN or inf")
    return vals


#: Rows of a BU-3DFE / BU-4DFE ``.bnd`` file (raw-formats.md): 83 landmarks.
BND_ROWS = 83
#: Largest vertex index a ``.bnd`` row may name (meshes index vertices with int32).
_MAX_INDEX = 2**31 - 1


def read_bnd(path: Path | str) -> Landmarks:
    """Read a BU ``.bnd`` file: :data:`BND_ROWS` rows ``index x y z``; ``labels`` are ``bnd00``
    .. ``bnd82``. A file with fewer rows, or cut inside its last row (no final newline), is
    ``"truncated"``; an index outside ``0 .. 2^31 - 1`` is a ``"parse"`` error quoting it."""
    text, p = _text(path)
    idx: list[int] = []
    pts: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue  # tolerated: the empty 84th line of some BU-4DFE files
        if not fields[0].isdigit():
            raise MeshReadError(
                p, "parse", f"line {lineno}: index {fields[0]!r} is not a vertex index"
            )
        if len(fields[0]) > 10 or int(fields[0]) > _MAX_INDEX:
            raise MeshReadError(p, "parse", f"line {lineno}: index {fields[0]} is out of range")
        pts.append(_floats(fields[1:], 3, p, lineno))
        idx.append(int(fields[0]))
    if not pts:
        raise MeshReadError(p, "empty", "no landmark rows")
    if len(pts) < BND_ROWS:
        raise MeshReadError(p, "truncated", f"{len(pts)} landmark rows, a .bnd has {BND_ROWS}")
    if len(pts) > BND_ROWS:
        # two files run together, or another landmark set: which 83 rows are meant is unknown
        msg = f"{len(pts)} landmark rows, a .bnd has {BND_ROWS}"
        raise MeshReadError(p, "wrong-size", msg)
    if not text.endswith(("\n", "\r")):
        raise MeshReadError(p, "truncated", "the last row is cut short (no final newline)")
    labels = tuple(f"bnd{i:02d}" for i in range(len(pts)))
    return Landmarks(np.asarray(pts, np.float64), labels, np.asarray(idx, np.int64))


def write_bnd(
    path: Path | str,
    points: NDArray[np.floating],
    indices: NDArray[np.integer],
    trailing_empty_line: bool = False,
) -> None:
    """Write a ``.bnd`` file (``index<TAB><TAB>x y z``, LF line ends)."""
    lines = [
        f"{int(i)}\t\t{x:.6f} {y:.6f} {z:.6f}"
        for i, (x, y, z) in zip(indices, np.asarray(points, np.float64), strict=True)
    ]
    text = "\n".join(lines) + "\n" + ("\n" if trailing_empty_line else "")
    atomic_write(Path(path), text.encode("ascii"))


def _lines(text: str) -> list[str]:
    # CRLF (or LF) line ends; keep blank lines out of the way, the layout is fixed by labels
    return [ln.strip() for ln in text.splitlines()]


def _count(lines: list[str], path: str, start: int) -> tuple[int, int]:
    for i in range(start, len(lines)):
        if not lines[i]:
            continue
        m = _RE_COUNT.match(lines[i])
        if m is None:
            msg = f"line {i + 1}: expected 'N landmarks', got {lines[i]!r}"
            raise MeshReadError(path, "parse", msg)
        return int(m.group(1)), i + 1
    raise MeshReadError(path, "truncated", "no 'N landmarks' line")


def read_lm3(path: Path | str) -> Landmarks:
    """Read a Bosphorus ``.lm3`` file (labels and x y z in mm)."""
    text, p = _text(path)
    lines = _lines(text)
    if not lines or not lines[0].startswith("#") or "3D" not in lines[0]:
        raise MeshReadError(p, "bad-magic", "first line is not '# 3D Landmark File'")
    n, i = _count(lines, p, 1)
    body = [(k + 1, ln) for k, ln in enumerate(lines[i:], i) if ln]  # (line number, text)
    if len(body) < 2 * n:
        raise MeshReadError(p, "truncated", f"{n} landmarks announced, {len(body) // 2} present")
    if len(body) > 2 * n:
        raise MeshReadError(
            p, "wrong-size", f"{n} landmarks announced, {len(body)} label and point lines follow"
        )
    labels = tuple(ln for _, ln in body[0 : 2 * n : 2])
    pts = [_floats(ln.split(), 3, p, lineno) for lineno, ln in body[1 : 2 * n : 2]]
    return Landmarks(np.asarray(pts, np.float64).reshape(-1, 3), labels)


def read_lm2(path: Path | str) -> Landmarks:
    """Read a Bosphorus ``.lm2`` file (labels and x y in image pixels)."""
    text, p = _text(path)
    lines = _lines(text)
    if not lines or not lines[0].startswith("#") or "2D" not in lines[0]:
        raise MeshReadError(p, "bad-magic", "first line is not '# 2D Landmark File'")
    n, i = _count(lines, p, 1)
    try:
        li = lines.index("Labels:", i)
        ci = next(k for k in range(li, len(lines)) if lines[k].lower().startswith("2d image"))
    except (ValueError, StopIteration):
        msg = "missing 'Labels:' or '2D Image coordinates:'"
        raise MeshReadError(p, "truncated", msg) from None
    labels = tuple(ln for ln in lines[li + 1 : ci] if ln)
    rows = [(k + 1, ln) for k, ln in enumerate(lines[ci + 1 :], ci + 1) if ln]
    if len(labels) != n or len(rows) != n:
        kind = "truncated" if len(labels) < n or len(rows) < n else "wrong-size"
        msg = f"{n} landmarks announced, {len(labels)} labels and {len(rows)} rows"
        raise MeshReadError(p, kind, msg)
    pts = [_floats(ln.split(), 2, p, lineno) for lineno, ln in rows]
    return Landmarks(np.asarray(pts, np.float64).reshape(-1, 2), labels)


def write_lm3(path: Path | str, points: NDArray[np.floating], labels: tuple[str, ...]) -> None:
    """Write a ``.lm3`` file (CRLF, ``%g`` numbers)."""
    out = ["# 3D Landmark File", "", f"{len(labels)} landmarks:"]
    for lab, (x, y, z) in zip(labels, np.asarray(points, np.float64), strict=True):
        out += [lab, f"{x:g} {y:g} {z:g}"]
    atomic_write(Path(path), ("\r\n".join(out) + "\r\n").encode("ascii"))


def write_lm2(path: Path | str, points: NDArray[np.floating], labels: tuple[str, ...]) -> None:
    """Write a ``.lm2`` file (CRLF, ``%g`` numbers)."""
    out = ["# 2D Landmark File", "", f"{len(labels)} landmarks", "", "Labels:", *labels, ""]
    out.append("2D Image coordinates:")
    out += [f"{x:g} {y:g}" for x, y in np.asarray(points, np.float64)]
    atomic_write(Path(path), ("\r\n".join(out) + "\r\n").encode("ascii"))
