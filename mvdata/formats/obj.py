"""Wavefront OBJ (+ MTL) reader and writer (FaceScape, BP4D-style frames, mesh folders).

Hand-written rather than trimesh because the datasets' OBJ files index texture coordinates
separately from positions (``f v/vt``), and :class:`mvdata.core.Mesh` keeps them that way
(``uv_faces``). trimesh either splits vertices at UV seams (reordering / adding vertices) or,
with ``process=False, maintain_order=True``, keeps the vertices but stores one UV per vertex and
silently drops the second UV of a seam vertex (checked with trimesh 5.2). Registered datasets
rely on the vertex order, so it must be kept exactly.

Supported: ``v x y z [r g b]``, ``vt u v [w]``, ``f`` with ``v``, ``v/vt``, ``v//vn``,
``v/vt/vn`` corners, polygons (fan-triangulated), negative (relative) indices, ``mtllib``;
``vn``, groups, ``usemtl`` and smoothing are ignored (one material a file is assumed).
OBJ ``vt`` use the OpenGL origin (bottom-left), like :class:`Mesh`.

Truncation: OBJ declares no counts, so a file cut at a line boundary inside the ``f`` block
would read as a smaller mesh. What can be checked is: a file that ends without a newline in a
data line (``v``, ``vt``, ``vn``, ``f``: cut mid-line, maybe mid-number, so the last value
cannot be trusted) is ``"truncated"``; an ``f`` line with fewer than three corners is an error
(never dropped silently); a face naming a vertex or texture coordinate beyond those defined is
an error; and where the header carries MeshLab's ``# Vertices: N`` / ``# Faces: N`` comments,
the counts must match (a guess at other exporters' habits is not made).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import as_float32, fan_triangulate, read_bytes, refuse_zero_filled
from mvdata.io import atomic_write

__all__ = ["ObjMesh", "obj_text", "parse_mtl", "parse_obj", "read_obj", "write_obj"]


@dataclass
class ObjMesh:
    """A parsed OBJ mesh and the material library file it names (or None)."""

    mesh: Mesh
    mtllib: str | None


# MeshLab's OBJ header comments ("# Vertices: 26350", "# Faces: 52052"), looked for near the top.
_RE_DECLARED = re.compile(rb"^#\s*(Vertices|Faces):\s*(\d+)\s*$", re.M)
_DATA_KEYS = (b"v", b"vt", b"vn", b"vp", b"f", b"l")


def _decode(data: bytes, path: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise MeshReadError(path, "encoding", "file is UTF-16 or binary; OBJ is ASCII/UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MeshReadError(path, "encoding", f"not UTF-8 text at byte {exc.start}") from None


@dataclass
class _Block:
    """The lines of one kind (``v``, ``vt`` or ``f``) as bytes joined by ``\\n``, prefixes kept."""

    text: bytes
    n: int
    #: ``(start, end)`` offsets in the file, when found by the block classifier.
    span: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, lines: list[str]) -> _Block:
        return cls("\n".join(lines).encode(), len(lines))

    def lines(self) -> list[bytes]:
        return self.text.split(b"\n") if self.n else []

    def first(self) -> bytes:
        i = self.text.find(b"\n")
        return self.text if i < 0 else self.text[:i]


# The line prefixes become blanks, and a face line's "f" a 0 (an index OBJ never uses), in one
# C-speed pass; exact only while each line holds its prefix letters once (checked by counting).
_V_NUMBERS = bytes.maketrans(b"v", b" ")
_VT_NUMBERS = bytes.maketrans(b"vt", b"  ")
_F_NUMBERS = bytes.maketrans(b"f/", b"0 ")


def _prefix_once(block: _Block, letters: bytes) -> bool:
    return all(block.text.count(letters[i : i + 1]) == block.n for i in range(len(letters)))


def _floats(block: _Block, path: str, what: str) -> NDArray[np.float64]:
    letters, table = (b"v", _V_NUMBERS) if what == "v" else (b"vt", _VT_NUMBERS)
    msg = f"'{what}' lines hold something that is not a number"
    if not _prefix_once(block, letters):
        raise MeshReadError(path, "parse", msg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return np.fromstring(block.text.translate(table), dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise MeshReadError(path, "parse", msg) from None


def _resolve(
    idx: NDArray[np.int64],
    count: int,
    path: str,
    what: str,
    defined: int | NDArray[np.int64],
) -> NDArray[np.int64]:
    """0-based indices of OBJ's 1-based ones. A negative index counts back from the last
    element defined *before its face line* (``defined``: that count, for every corner or one
    for all), as the OBJ format says: ``f -3 -2 -1`` after each ``v`` triple is its own face."""
    if idx.size and idx.min() > 0 and idx.max() <= count:
        return idx - 1  # the common case, without the three full-size temporaries below
    out = np.where(idx > 0, idx - 1, idx + defined)
    if (idx == 0).any() or (out < 0).any() or (out >= count).any():
        raise MeshReadError(path, "parse", f"face {what} index out of range (1..{count})")
    return out


def _defined_per_corner(
    f_defined: list[tuple[int, int]], sep: NDArray[np.int64] | None
) -> tuple[int | NDArray[np.int64], int | NDArray[np.int64]]:
    """The ``v`` and ``vt`` counts defined before each face corner's line (for negative
    indices): one pair for the whole file where every face line sees the same counts, else one
    per corner (``sep``: the polygons' ends; None where every face is a triangle)."""
    if len(set(f_defined)) == 1:
        return f_defined[0]
    per_line = np.asarray(f_defined, dtype=np.int64).reshape(-1, 2)
    sizes = np.full(len(per_line), 3) if sep is None else np.diff(sep, prepend=0)
    return np.repeat(per_line[:, 0], sizes), np.repeat(per_line[:, 1], sizes)


def _triangle_corners(fb: _Block, nparts: int) -> NDArray[np.int64] | None:
    """``(3F, nparts)`` corner indices when every face is a triangle whose corners all have
    ``nparts`` parts, parsed at C speed; None (take the general path) otherwise.

    Each line's ``f`` becomes a ``0``, so one ``np.fromstring`` both parses the numbers and
    shows where every line starts: all triangles iff the zeros fall exactly every
    ``3 * nparts + 1`` numbers and nowhere else. ``v//vn`` corners put zeros of their own in
    the text, so those files are checked line by line instead."""
    if not _prefix_once(fb, b"f"):
        return None
    text = fb.text
    slashes = text.count(b"/")
    empty_vt = b"//" in text
    if empty_vt:
        if not all(ln.count(b" ") == 3 for ln in fb.lines()):
            return None
        text = text.replace(b"//", b"/0/")
    width = 3 * nparts + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            nums = np.fromstring(text.translate(_F_NUMBERS), dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if nums.size != fb.n * width or slashes != 3 * fb.n * (nparts - 1):
        return None
    rows = nums.reshape(fb.n, width)
    if rows[:, 0].any() or (not empty_vt and np.count_nonzero(nums) != nums.size - fb.n):
        return None
    return rows[:, 1:].reshape(-1, nparts)


def _faces(
    corners: NDArray[np.int64], ends: NDArray[np.int64] | None, path: str
) -> NDArray[np.int32]:
    """Triangles from resolved corner indices: ``ends`` are the polygons' end offsets (then
    fan-triangulated from a ``-1``-separated list), or None when every face is a triangle."""
    if ends is None:
        return corners.reshape(-1, 3).astype(np.int32)
    faces, _ = fan_triangulate(np.insert(corners, ends, -1), path, "f")
    return faces


def _line_start(data: bytes, prefix: bytes) -> int:
    """Offset of the first line starting with ``prefix``, or -1."""
    if data.startswith(prefix):
        return 0
    i = data.find(b"\n" + prefix)
    return i + 1 if i >= 0 else -1


def _block(data: bytes, prefix: bytes) -> _Block | None:
    """The lines starting with ``prefix``, found with C-speed byte searches; None unless they
    form one contiguous block (as exporters write them)."""
    first = _line_start(data, prefix)
    if first < 0:
        return _Block(b"", 0)
    last = max(first, data.rfind(b"\n" + prefix) + 1)
    end = data.find(b"\n", last)
    block = data[first : len(data) if end < 0 else end]
    n = block.count(b"\n") + 1
    if block.count(b"\n" + prefix) + 1 != n:
        return None  # interleaved with other lines
    return _Block(block, n, (first, first + len(block)))


def _plain_gap(gap: bytes) -> bool:
    """True when the text between the blocks holds no line the blocks should have caught: an
    indented line, a line starting with ``f`` (say a bare ``f``), or a bare ``v`` / ``vt``."""
    return not any(s in gap for s in (b"\n ", b"\nf", b"\nv\n", b"\nvt\n"))


def _check_end(data: bytes, path: str) -> None:
    """A file that ends inside a data line (no final newline) was cut off: its last value may
    be a fragment (``f 1 2 34`` of ``f 1 2 345``), so it is refused rather than trusted."""
    if data.endswith((b"\n", b"\r")):
        return
    last = data[data.rfind(b"\n") + 1 :].split(None, 1)
    if last and last[0] in _DATA_KEYS:
        key = last[0].decode()
        msg = f"file ends inside a '{key}' line without a newline: cut off (truncated)?"
        raise MeshReadError(path, "truncated", msg)


def _check_declared(data: bytes, nv: int, nf: int, path: str) -> None:
    """Compare MeshLab's ``# Vertices: N`` / ``# Faces: N`` header comments, where present in
    the first 4 KB, with the ``v`` and ``f`` lines found."""
    for m in _RE_DECLARED.finditer(data[:4096]):
        what, declared = m.group(1).decode(), int(m.group(2))
        found, lines = (nv, "'v'") if what == "Vertices" else (nf, "'f'")
        if declared != found:
            kind = "truncated" if found < declared else "parse"
            msg = f"header comment declares {what}: {declared}, the file has {found} {lines} lines"
            raise MeshReadError(path, kind, msg)


def _classify_blocks(data: bytes) -> tuple[_Block, _Block, _Block, str | None] | None:
    """The ``v``, ``vt`` and ``f`` blocks (and the first ``mtllib``) of a *regular* file, found
    with byte searches instead of a Python loop over every line (which cost as much as all the
    number parsing): plain ASCII with ``\\n`` line ends, no indented lines, and each kind of
    line in one contiguous block. Anything else returns None and the caller
    takes the line-by-line path, which gives the same blocks."""
    if not data.isascii() or b"\r" in data or b"\t" in data or b"\x00" in data[:4096]:
        return None
    vb, vtb, fb = (_block(data, prefix) for prefix in (b"v ", b"vt ", b"f "))
    if vb is None or vtb is None or fb is None:
        return None
    # An indented v/vt/f line can only hide outside the blocks (inside, every line starts with
    # the prefix): search just those gaps, which are small, rather than the whole file.
    pos = 0
    for first, end in sorted(span for span in (vb.span, vtb.span, fb.span) if span[1] > span[0]):
        if not _plain_gap(b"\n" + data[pos:first]):
            return None
        pos = end
    if not _plain_gap(b"\n" + data[pos:]):
        return None
    mtllib = None
    lib = _line_start(data, b"mtllib ")
    if lib >= 0:
        end = data.find(b"\n", lib)
        mtllib = data[lib + 7 : len(data) if end < 0 else end].decode().strip()
    return vb, vtb, fb, mtllib


def parse_obj(data: bytes, path: str = "<bytes>") -> ObjMesh:
    """Parse OBJ bytes into a :class:`Mesh` keeping vertex order and per-corner UVs."""
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    refuse_zero_filled(data, path)
    _check_end(data, path)
    classified = _classify_blocks(data)
    vb: _Block
    vtb: _Block
    fb: _Block
    mtllib: str | None
    f_defined: list[tuple[int, int]]  # the v and vt lines defined before each f line
    if classified is not None:
        vb, vtb, fb, mtllib = classified
        # each kind of line in one block: a face line sees all of a block before it, or none
        f_defined = [
            (vb.n if vb.span[0] < fb.span[0] else 0, vtb.n if vtb.span[0] < fb.span[0] else 0)
        ]
    else:
        vl: list[str] = []
        vtl: list[str] = []
        fl: list[str] = []
        f_defined = []
        mtllib = None
        for raw in _decode(data, path).splitlines():
            # any whitespace separates tokens (tabs too); lines are rebuilt as "key values"
            toks = raw.split(None, 1)
            if not toks:
                continue
            key, rest = toks[0], (toks[1].strip() if len(toks) > 1 else "")
            if key == "v":
                vl.append("v " + rest)
            elif key == "vt":
                vtl.append("vt " + rest)
            elif key == "f":
                fl.append("f " + rest)
                f_defined.append((len(vl), len(vtl)))
            elif key == "mtllib" and mtllib is None:
                mtllib = rest
        vb, vtb, fb = _Block.of(vl), _Block.of(vtl), _Block.of(fl)
    if not vb.n:
        raise MeshReadError(path, "parse", "no 'v' lines: not an OBJ mesh")
    ncols = len(vb.first().split()) - 1
    vals = _floats(vb, path, "v")
    if ncols not in (3, 4, 6, 7) or vals.size != ncols * vb.n:
        raise MeshReadError(path, "parse", "'v' lines have differing or unexpected field counts")
    vals = vals.reshape(vb.n, ncols)
    verts = as_float32(vals[:, :3])
    if verts is None or not np.isfinite(vals).all():
        msg = "vertex positions or colours hold NaN or inf (or values beyond float32)"
        raise MeshReadError(path, "nan", msg)
    colors = None
    if ncols in (6, 7):
        colors = np.rint(np.clip(vals[:, ncols - 3 :], 0.0, 1.0) * 255.0).astype(np.uint8)
    if not fb.n:
        raise MeshReadError(path, "truncated", "no 'f' lines (no faces)")
    _check_declared(data, vb.n, fb.n, path)
    head = fb.first().split()
    if len(head) < 2:
        raise MeshReadError(path, "parse", "an 'f' line has no corners")
    first = head[1].split(b"/")
    has_vt = len(first) >= 2 and first[1] != b""
    fast = _triangle_corners(fb, len(first))
    sep: NDArray[np.int64] | None = None  # polygon ends, when not all faces are triangles
    if fast is not None:
        vi = fast[:, 0]
        ti = fast[:, 1] if has_vt else None
    else:
        corners: list[str] = []
        ends: list[int] = []
        for fline in fb.lines():
            toks = fline.decode().split()[1:]
            if len(toks) < 3:
                # never dropped silently: a face cut short is a damaged file
                shown = fline.decode()[:60]
                msg = f"'f' line with {len(toks)} corners (at least 3 needed): {shown!r}"
                raise MeshReadError(path, "parse", msg)
            corners += toks
            ends.append(len(corners))
        try:
            parts = [c.split("/") for c in corners]
            vi = np.fromiter((int(p[0]) for p in parts), dtype=np.int64, count=len(parts))
            ti = (
                np.fromiter((int(p[1]) for p in parts), dtype=np.int64, count=len(parts))
                if has_vt
                else None
            )
        except (ValueError, IndexError):
            msg = "a face corner is not 'v', 'v/vt' or 'v/vt/vn'"
            raise MeshReadError(path, "parse", msg) from None
        except OverflowError:
            msg = "a face index is too large (beyond 64 bits): damaged file"
            raise MeshReadError(path, "parse", msg) from None
        sep = np.asarray(ends, dtype=np.int64)
    defined = _defined_per_corner(f_defined, sep)
    vi = _resolve(vi, len(verts), path, "vertex", defined[0])
    faces = _faces(vi, sep, path)
    uvs = uv_faces = None
    if has_vt and ti is not None:
        uv = _floats(vtb, path, "vt") if vtb.n else np.zeros(0)
        ucols = len(vtb.first().split()) - 1 if vtb.n else 2
        if ucols not in (2, 3) or uv.size != ucols * vtb.n:
            raise MeshReadError(path, "parse", "'vt' lines have differing field counts")
        uvs = as_float32(uv.reshape(vtb.n, ucols)[:, :2])
        if uvs is None:
            raise MeshReadError(path, "nan", "texture coordinates hold NaN or inf")
        ti = _resolve(ti, len(uvs), path, "texture", defined[1])
        uv_faces = _faces(ti, sep, path)
    if len(faces) == 0:
        raise MeshReadError(path, "empty", "no triangle in the 'f' lines")
    mesh = Mesh(verts, faces, vertex_colors=colors, uvs=uvs, uv_faces=uv_faces)
    return ObjMesh(mesh, mtllib)


def read_obj(path: Path | str) -> ObjMesh:
    """Read an ``.obj`` file (see :func:`parse_obj`)."""
    return parse_obj(read_bytes(Path(path)), str(path))


def parse_mtl(data: bytes, path: str = "<bytes>") -> str | None:
    """The diffuse texture (``map_Kd``, last token, options skipped) of the first material."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MeshReadError(path, "encoding", "MTL file is not UTF-8 text") from None
    for raw in text.splitlines():
        toks = raw.split()
        if len(toks) >= 2 and toks[0] == "map_Kd":
            return toks[-1]
    return None


def obj_text(mesh: Mesh, mtllib: str | None = None, float_fmt: str = "%.6f") -> str:
    """OBJ text of ``mesh`` (``v``, ``vt`` and ``f v/vt`` with the mesh's own UV indexing)."""
    out = ["# written by mvdata"]
    if mtllib:
        out += [f"mtllib {mtllib}"]
    vfmt = f"v {float_fmt} {float_fmt} {float_fmt}"
    out += [vfmt % tuple(r) for r in mesh.vertices.tolist()]
    if mesh.uvs is not None and mesh.uv_faces is not None:
        tfmt = f"vt {float_fmt} {float_fmt}"
        out += [tfmt % tuple(r) for r in mesh.uvs.tolist()]
        if mtllib:
            out.append("usemtl material0")
        f1 = (mesh.faces + 1).tolist()
        t1 = (mesh.uv_faces + 1).tolist()
        out += [f"f {a}/{p} {b}/{q} {c}/{r}" for (a, b, c), (p, q, r) in zip(f1, t1, strict=True)]
    else:
        out += [f"f {a} {b} {c}" for a, b, c in (mesh.faces + 1).tolist()]
    return "\n".join(out) + "\n"


def write_obj(
    path: Path | str, mesh: Mesh, texture_file: str | None = None, float_fmt: str = "%.6f"
) -> None:
    """Write ``mesh`` as ``path`` (.obj) plus, with a texture, a same-stem ``.mtl``."""
    p = Path(path)
    mtl = None
    if texture_file is not None:
        mtl = p.with_suffix(".mtl").name
        mtl_text = f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture_file}\n"
        atomic_write(p.with_suffix(".mtl"), mtl_text.encode("utf-8"))
    atomic_write(p, obj_text(mesh, mtl, float_fmt).encode("utf-8"))
