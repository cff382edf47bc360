"""PLY reader and writer (CoMA sequences, mesh folders), through the ``plyfile`` library.

ASCII and binary PLY both read. Vertex positions ``x y z``; optional colours
``red green blue`` (uint8, or float in [0, 1]); optional per-vertex texture coordinates ``s t``
or ``texture_u texture_v`` (or ``u v``), else per face corner (MeshLab's face property
``list uchar float texcoord``: u v for each corner); faces ``vertex_indices`` / ``vertex_index``
lists of any length (fan-triangulated). A ``comment TextureFile NAME`` header line (MeshLab's
convention) names the texture image. Vertex order is kept exactly.

Declared sizes are checked before anything is allocated: the header is read here first (a few
lines of text), and a file whose body cannot hold what the header declares is refused at once
(binary: bytes needed vs bytes present; ASCII: rows declared vs lines present), so that a
100 KB file claiming 10^12 vertices costs nothing. Only then does plyfile (or a numpy fast path)
read the body. A body longer than declared (a count off by one) is an error too, as is a face
index outside the vertex list (checked on the values as stored, before any narrowing cast).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from plyfile import PlyData, PlyElement, PlyParseError

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import (
    as_float32,
    check_indices,
    fan_triangulate_lists,
    read_bytes,
    refuse_zero_filled,
)
from mvdata.io import atomic_write

__all__ = ["PlyMesh", "parse_ply", "ply_bytes", "read_ply", "write_ply"]

_UV_NAMES = (("s", "t"), ("texture_u", "texture_v"), ("u", "v"))

# Bytes of each PLY scalar type, under every name plyfile accepts.
_SIZES = {
    **dict.fromkeys(("int8", "char", "uint8", "uchar", "i1", "u1", "b1"), 1),
    **dict.fromkeys(("int16", "short", "uint16", "ushort", "i2", "u2"), 2),
    **dict.fromkeys(("int32", "int", "uint32", "uint", "float32", "float", "i4", "u4", "f4"), 4),
    **dict.fromkeys(("float64", "double", "f8"), 8),
}
_HEADER_MAX = 65536


@dataclass
class PlyMesh:
    """A parsed PLY mesh and the texture file its header comment names (or None)."""

    mesh: Mesh
    texture_file: str | None


@dataclass
class _Element:
    """One ``element`` of a PLY header: its row count and properties in order; ``lists`` maps
    a list property's name to its count type."""

    name: str
    count: int
    props: list[tuple[str, str]] = field(default_factory=list)  # (name, scalar or item type)
    lists: dict[str, str] = field(default_factory=dict)

    def min_row_bytes(self) -> int:
        """Bytes a binary row takes at least (lists counted as empty)."""
        return sum(_SIZES[self.lists.get(n, t)] for n, t in self.props)


@dataclass
class _Header:
    fmt: str  # "ascii", "binary_little_endian" or "binary_big_endian"
    elements: list[_Element]
    comments: list[str]
    body: int  # offset of the first byte after the header

    def describe(self) -> str:
        return ", ".join(f"element {e.name} {e.count}" for e in self.elements)


def _check_start(data: bytes, path: str) -> None:
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    refuse_zero_filled(data, path)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise MeshReadError(path, "encoding", "file is UTF-16 encoded; a PLY header is ASCII")
    if not data.startswith(b"ply"):
        raise MeshReadError(path, "bad-magic", "not a PLY file (does not start with 'ply')")
    if b"end_header" not in data[:_HEADER_MAX]:
        raise MeshReadError(path, "truncated", "PLY header has no 'end_header'")


def _read_header(data: bytes, path: str) -> _Header:
    """The header, read here (not by plyfile) so that sizes can be checked before plyfile
    allocates arrays from the declared counts. Raises ``MeshReadError`` on anything malformed."""
    end = data.find(b"end_header")
    nl = data.find(b"\n", end)
    body = len(data) if nl < 0 else nl + 1
    try:
        lines = data[:end].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError as exc:
        raise MeshReadError(path, "parse", f"PLY header is not ASCII (byte {exc.start})") from None
    fmt = ""
    elements: list[_Element] = []
    comments: list[str] = []
    for no, ln in enumerate(lines, 2):
        t = ln.split()
        if not t or t[0] == "obj_info":
            continue
        bad = f"PLY header line {no} is malformed: {ln.strip()[:60]!r}"
        if t[0] == "comment":
            comments.append(ln.strip()[8:].strip())
        elif t[0] == "format" and len(t) == 3:
            if t[2] != "1.0":
                raise MeshReadError(path, "parse", f"{bad}: PLY version {t[2][:20]!r} unknown")
            fmt = t[1]
        elif t[0] == "element" and len(t) == 3:
            if not t[2].isdigit():
                raise MeshReadError(path, "parse", f"{bad}: the count is not an integer")
            elements.append(_Element(t[1], int(t[2])))
        elif t[0] == "property" and elements and len(t) >= 3:
            if t[-1] in (name for name, _ in elements[-1].props):
                # numpy and plyfile cannot hold two columns of one name: which one is meant?
                msg = f"{bad}: element {elements[-1].name!r} already has property {t[-1]!r}"
                raise MeshReadError(path, "parse", msg)
            if t[1] == "list" and len(t) == 5 and t[2] in _SIZES and t[3] in _SIZES:
                elements[-1].props.append((t[4], t[3]))
                elements[-1].lists[t[4]] = t[2]
            elif len(t) == 3 and t[1] in _SIZES:
                elements[-1].props.append((t[2], t[1]))
            else:
                raise MeshReadError(path, "parse", f"{bad}: unknown property type")
        else:
            raise MeshReadError(path, "parse", bad)
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshReadError(path, "parse", f"PLY format {fmt!r} unknown (ascii or binary_*)")
    for e in elements:
        if e.count and not e.props:
            raise MeshReadError(path, "parse", f"PLY element {e.name!r} has no properties")
    return _Header(fmt, elements, comments, body)


def _check_binary_size(h: _Header, data: bytes, path: str) -> None:
    """Refuse a binary body too short for the declared rows, before anything is allocated;
    and, where every row has a fixed size, a body longer than declared."""
    have = len(data) - h.body
    need = sum(e.count * e.min_row_bytes() for e in h.elements)
    if need > have:
        msg = (
            f"header declares {h.describe()}: at least {need} bytes of data, the file has "
            f"{have} after the header (truncated, or a count is wrong)"
        )
        raise MeshReadError(path, "truncated", msg)
    if not any(e.lists for e in h.elements):
        _check_tail(data, h.body + need, h, path)


def _check_tail(data: bytes, end: int, h: _Header, path: str) -> None:
    """Bytes after the last declared row (other than whitespace) mean a count is off."""
    rest = data[end:]
    if rest.strip():
        msg = f"{len(rest)} bytes after the {h.describe()} the header declares: a count is off"
        raise MeshReadError(path, "wrong-size", msg)


def _ascii_rows(h: _Header, data: bytes, path: str) -> list[bytes]:
    """The non-blank body lines of an ASCII file (one row each), their number checked against
    the declared rows: a cheap line count first, so a huge declared count costs nothing."""
    rows = sum(e.count for e in h.elements)
    body = data[h.body :]
    if rows and not body[-256:].rstrip(b" \t").endswith((b"\n", b"\r")):
        # the last row may be cut mid-number ("3 1 2 1" of "3 1 2 17"): not to be trusted
        msg = "ASCII body ends without a newline inside its last row: cut off (truncated)?"
        raise MeshReadError(path, "truncated", msg)
    if body.count(b"\n") + 1 < rows:
        msg = f"header declares {h.describe()} ({rows} rows), the body has fewer lines"
        raise MeshReadError(path, "truncated", msg)
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    if len(lines) != rows:
        kind = "truncated" if len(lines) < rows else "wrong-size"
        msg = f"header declares {h.describe()} ({rows} rows), the body has {len(lines)} lines"
        raise MeshReadError(path, kind, msg)
    return lines


def parse_ply(data: bytes, path: str = "<bytes>", file: Path | None = None) -> PlyMesh:
    """Parse PLY bytes into a :class:`Mesh` (``file``: where they came from, for the binary
    fast path's memory map)."""
    _check_start(data, path)
    h = _read_header(data, path)
    if h.fmt == "ascii":
        quick = _fast_ascii_triangles(h, _ascii_rows(h, data, path), path)
        if quick is not None:
            return quick
    else:
        _check_binary_size(h, data, path)
        if file is not None:
            fast = _fast_binary_triangles(file, data, h)
            if fast is not None:
                return _mesh_from(fast, path)
    stream = io.BytesIO(data)
    try:
        # plyfile warns on empty ASCII lines, numpy on a value beyond float32 (checked below)
        with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", UserWarning)
            ply = PlyData.read(stream)
    except PlyParseError as exc:
        msg = str(exc)
        kind = "truncated" if ("early end" in msg or "end-of-file" in msg) else "parse"
        raise MeshReadError(path, kind, f"PLY: {msg}") from None
    except (ValueError, OverflowError, UnicodeDecodeError, IndexError) as exc:
        raise MeshReadError(path, "parse", f"PLY: {exc}") from None
    if not ply.text:
        _check_tail(data, stream.tell(), h, path)
    return _mesh_from(ply, path)


def _column(vd: np.ndarray, name: str, path: str) -> np.ndarray:
    """A scalar numeric vertex property (a list property in its place is an error)."""
    col = vd[name]
    if col.dtype.kind not in "iuf":
        raise MeshReadError(path, "parse", f"PLY vertex property {name!r} is not a number")
    return np.asarray(col)


def _face_array(flist: np.ndarray, nv: int, path: str) -> NDArray[np.int32]:
    """Triangles from the face lists, range-checked on the stored values before the cast to
    int32; a face with fewer than three corners is an error (never dropped silently)."""
    if flist.dtype != object and flist.ndim == 2 and flist.shape[1] == 3:
        # triangles as an (F, 3) array (the fast paths)
        kind, size = flist.dtype.kind, flist.dtype.itemsize
        if kind not in "iu":
            raise MeshReadError(path, "parse", "PLY face indices are not integers")
        # a copy (not the memmap), in a type that holds every stored value: int32 unless the
        # file's type is uint32 (or wider), so the range is checked before any narrowing
        wide = size > 4 or (kind == "u" and size == 4)
        if wide:
            wide_idx = np.array(flist, dtype=np.int64)
            check_indices(wide_idx, nv, path, "face", separators=False, noun="vertex")
            return np.array(flist, dtype=np.int32)
        faces = np.array(flist, dtype=np.int32)
        check_indices(faces, nv, path, "face", separators=False, noun="vertex")
        return faces
    if flist.dtype != object and flist.ndim != 2:
        # a scalar property (``property int vertex_indices``): not a polygon list
        raise MeshReadError(path, "parse", "PLY face vertex_indices is not a list property")
    lists = list(flist)
    if any(len(f) < 3 for f in lists):
        raise MeshReadError(path, "parse", "a PLY face has fewer than 3 corners")
    flat = np.concatenate([np.asarray(f) for f in lists]) if lists else np.zeros(0, np.int64)
    if flat.size and flat.dtype.kind not in "iu":
        raise MeshReadError(path, "parse", "PLY face indices are not integers")
    # PLY has no 64-bit integer type: int64 holds every stored value
    check_indices(flat.astype(np.int64), nv, path, "face", separators=False, noun="vertex")
    return fan_triangulate_lists(lists)


def _mesh_from(ply: PlyData, path: str) -> PlyMesh:
    names = [e.name for e in ply.elements]
    if "vertex" not in names:
        raise MeshReadError(path, "parse", "PLY has no 'vertex' element")
    vd = ply["vertex"].data
    props = set(vd.dtype.names or ())
    if not {"x", "y", "z"} <= props:
        raise MeshReadError(path, "parse", "PLY vertex element lacks x, y or z")
    if len(vd) == 0:
        raise MeshReadError(path, "empty", "PLY has no vertices")
    verts = as_float32(np.stack([_column(vd, c, path) for c in "xyz"], 1))
    if verts is None:
        msg = "vertex positions hold NaN or inf (or values beyond float32)"
        raise MeshReadError(path, "nan", msg)
    if "face" not in names or len(ply["face"].data) == 0:
        raise MeshReadError(path, "empty", "PLY has no faces")
    fd = ply["face"].data
    fnames = fd.dtype.names or ()
    fprop = next((n for n in ("vertex_indices", "vertex_index") if n in fnames), None)
    if fprop is None:
        raise MeshReadError(path, "parse", "PLY face element lacks vertex_indices")
    faces = _face_array(fd[fprop], len(verts), path)
    corner_uvs = _corner_uvs(fd, fprop, path) if "texcoord" in fnames else None
    colors = None
    if {"red", "green", "blue"} <= props:
        c = np.stack([_column(vd, n, path) for n in ("red", "green", "blue")], 1)
        if np.issubdtype(c.dtype, np.floating):
            if not np.isfinite(c).all():
                raise MeshReadError(path, "nan", "vertex colours hold NaN or inf")
            c = np.rint(np.clip(c, 0.0, 1.0) * 255.0)
        colors = np.clip(c, 0, 255).astype(np.uint8)
    uvs = None
    for un, vn in _UV_NAMES:
        if {un, vn} <= props:
            uvs = as_float32(np.stack([_column(vd, un, path), _column(vd, vn, path)], 1))
            if uvs is None:
                raise MeshReadError(path, "nan", "texture coordinates hold NaN or inf")
            break
    uv_faces = None
    if uvs is None and corner_uvs is not None:
        uvs, uv_faces = corner_uvs
    tex = None
    for c in ply.comments:
        parts = c.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "texturefile":
            tex = parts[1].strip()
    mesh = Mesh(verts, faces, vertex_colors=colors, uvs=uvs, uv_faces=uv_faces)
    return PlyMesh(mesh, tex)


def _corner_uvs(
    fd: np.ndarray, fprop: str, path: str
) -> tuple[NDArray[np.float32], NDArray[np.int32]] | None:
    """Per-corner texture coordinates of MeshLab's face property ``list uchar float texcoord``
    (``u v`` for each corner of the face, in the face's corner order): the UVs, one row per
    corner, and their triangles, fan-triangulated exactly like the faces' corners. None where
    every face's list is empty (no texture)."""
    sizes = [len(p) for p in fd[fprop]]
    rows = [np.asarray(t, dtype=np.float64).reshape(-1) for t in fd["texcoord"]]
    if all(r.size == 0 for r in rows):
        return None
    if any(r.size != 2 * n for r, n in zip(rows, sizes, strict=True)):
        msg = "PLY face texcoord does not hold one u v pair per corner"
        raise MeshReadError(path, "parse", msg)
    uvs = as_float32(np.concatenate(rows).reshape(-1, 2)) if rows else None
    if uvs is None:
        raise MeshReadError(path, "nan", "face texture coordinates hold NaN or inf")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    corners = [np.arange(s, s + n, dtype=np.int64) for s, n in zip(starts, sizes, strict=True)]
    return uvs, fan_triangulate_lists(corners)


def _fast_binary_triangles(path: Path, data: bytes, h: _Header) -> PlyData | None:
    """plyfile reads list properties (faces) row by row in Python (~0.13 s for a 5k-vertex
    mesh); with ``known_list_len`` and a memory map it reads them at numpy speed (~1 ms) but
    *assumes* every face is a triangle. This checks that assumption against the bytes: vertex
    then face, face last, ending exactly at the end of the file, every count byte 3. Anything
    else returns None and the caller takes plyfile's general path. (The declared sizes were
    checked against the file before this runs.)"""
    if [e.name for e in h.elements] != ["vertex", "face"] or len(h.elements[1].props) != 1:
        return None
    try:
        ply = PlyData.read(
            str(path), known_list_len={"face": {"vertex_indices": 3, "vertex_index": 3}}
        )
    except (PlyParseError, ValueError, OSError, IndexError, TypeError):
        return None
    if ply.text or [e.name for e in ply.elements] != ["vertex", "face"]:
        return None
    vd, fd = ply["vertex"].data, ply["face"].data
    names: list[str] = list(fd.dtype.names or [])
    if len(names) != 1:
        return None
    offset = fd.dtype.itemsize - fd.dtype[names[0]].itemsize  # the count field comes first
    if offset not in (1, 2, 4):
        return None
    fstart = h.body + len(vd) * vd.dtype.itemsize
    if fstart + len(fd) * fd.dtype.itemsize != len(data):
        return None
    order = "<" if ply.byte_order == "<" else ">"
    counts = np.ndarray(
        (len(fd),), np.dtype(f"{order}u{offset}"), data, fstart, (fd.dtype.itemsize,)
    )
    if not (counts == 3).all():
        return None
    return ply


def read_ply(path: Path | str) -> PlyMesh:
    """Read a ``.ply`` file (see :func:`parse_ply`); binary triangle meshes take a fast path."""
    return parse_ply(read_bytes(Path(path)), str(path), Path(path))


def _fast_ascii_triangles(h: _Header, body: list[bytes], path: str) -> PlyMesh | None:
    """ASCII PLY with a ``vertex`` element of scalar properties then a triangle ``face``
    element, parsed with ``np.fromstring`` (plyfile's ASCII path runs ``loadtxt`` per row,
    ~0.2 s for a 5k-vertex mesh). ``body`` is the non-blank lines, as many as the header
    declares rows. Anything unusual returns None (plyfile's general path)."""
    if [e.name for e in h.elements] != ["vertex", "face"]:
        return None
    ve, fe = h.elements
    if ve.lists or len(fe.props) != 1 or not fe.lists:
        return None
    props = [name for name, _ in ve.props]
    nv, nf = ve.count, fe.count
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            vals = np.fromstring(b" ".join(body[:nv]).decode("ascii"), sep=" ")
            fvals = np.fromstring(b" ".join(body[nv:]).decode("ascii"), dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning, UnicodeDecodeError):
            return None
    if vals.size != nv * len(props) or fvals.size != nf * 4 or not (fvals[::4] == 3).all():
        return None
    vt = vals.reshape(nv, len(props))
    colour_cols = [props.index(c) for c in ("red", "green", "blue") if c in props]
    int_colours = len(colour_cols) == 3 and all(
        ve.props[i][1] not in ("float", "float32", "double", "f4", "f8") for i in colour_cols
    )
    if int_colours:
        cv = vt[:, colour_cols]
        if not (np.isfinite(cv).all() and (cv >= 0).all() and (cv <= 255).all()):
            return None  # plyfile gives the precise error
    fidx = fvals.reshape(nf, 4)[:, 1:]
    if fidx.size and (fidx.min() < 0 or fidx.max() >= nv):  # checked before the int32 cast
        bad = (fidx < 0) | (fidx >= nv)
        row = body[nv + int(np.argmax(bad.any(axis=1)))].decode("ascii")
        tokens = " ".join(row.split()[1:])
        check_indices(fidx, nv, path, "face", tokens, separators=False, noun="vertex")
    arr = np.empty(nv, dtype=[(p, "f8") for p in props])
    for i, p in enumerate(props):
        arr[p] = vt[:, i]
    faces = np.empty(nf, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = fidx
    ply = PlyData(
        [PlyElement.describe(arr, "vertex"), PlyElement.describe(faces, "face")],
        comments=h.comments,
    )
    # colours were parsed as floats from integer text: give them back their integer type
    mesh = _mesh_from(ply, path)
    if mesh.mesh.vertex_colors is not None and int_colours:
        mesh.mesh.vertex_colors = vt[:, colour_cols].astype(np.uint8)
    return mesh


def ply_bytes(mesh: Mesh, binary: bool = True, texture_file: str | None = None) -> bytes:
    """PLY bytes of ``mesh``: float32 positions, uint8 colours, per-vertex ``s t`` if present.

    Per-corner UVs (``uv_faces`` differing from ``faces``) cannot be stored per vertex and are
    refused with ``ValueError``.
    """
    n = mesh.num_vertices
    fields: list[tuple[str, str]] = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if mesh.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if mesh.uvs is not None:
        if mesh.uv_faces is not None and not np.array_equal(mesh.uv_faces, mesh.faces):
            raise ValueError("PLY stores per-vertex UVs only; this mesh has per-corner UVs")
        fields += [("s", "f4"), ("t", "f4")]
    v = np.empty(n, dtype=fields)
    v["x"], v["y"], v["z"] = mesh.vertices.T
    if mesh.vertex_colors is not None:
        v["red"], v["green"], v["blue"] = mesh.vertex_colors.T
    if mesh.uvs is not None:
        v["s"], v["t"] = mesh.uvs[:n].T
    f = np.empty(mesh.num_faces, dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = mesh.faces
    comments = [f"TextureFile {texture_file}"] if texture_file else []
    ply = PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")],
        text=not binary,
        byte_order="<",
        comments=comments,
    )
    buf = io.BytesIO()
    ply.write(buf)
    return buf.getvalue()


def write_ply(
    path: Path | str, mesh: Mesh, binary: bool = True, texture_file: str | None = None
) -> None:
    """Write ``mesh`` as PLY atomically (see :func:`ply_bytes`)."""
    atomic_write(Path(path), ply_bytes(mesh, binary, texture_file))
