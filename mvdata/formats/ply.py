"""PLY reader and writer (CoMA sequences, mesh folders), through the ``plyfile`` library.

ASCII and binary PLY both read. Vertex positions ``x y z``; optional colours
``red green blue`` (uint8, or float in [0, 1]); optional per-vertex texture coordinates ``s t``
or ``texture_u texture_v`` (or ``u v``); faces ``vertex_indices`` / ``vertex_index`` lists of any
length (fan-triangulated). A ``comment TextureFile NAME`` header line (MeshLab's convention)
names the texture image. Vertex order is kept exactly.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import fan_triangulate_lists, read_bytes
from mvdata.io import atomic_write

__all__ = ["PlyMesh", "parse_ply", "ply_bytes", "read_ply", "write_ply"]

_UV_NAMES = (("s", "t"), ("texture_u", "texture_v"), ("u", "v"))


@dataclass
class PlyMesh:
    """A parsed PLY mesh and the texture file its header comment names (or None)."""

    mesh: Mesh
    texture_file: str | None


def parse_ply(data: bytes, path: str = "<bytes>") -> PlyMesh:
    """Parse PLY bytes into a :class:`Mesh`."""
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise MeshReadError(path, "encoding", "file is UTF-16 encoded; a PLY header is ASCII")
    if not data.startswith(b"ply"):
        raise MeshReadError(path, "bad-magic", "not a PLY file (does not start with 'ply')")
    if b"end_header" not in data[:65536]:
        raise MeshReadError(path, "truncated", "PLY header has no 'end_header'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # plyfile warns on empty ASCII lines
            ply = PlyData.read(io.BytesIO(data))
    except PlyParseError as exc:
        msg = str(exc)
        kind = "truncated" if ("early end" in msg or "end-of-file" in msg) else "parse"
        raise MeshReadError(path, kind, f"PLY: {msg}") from None
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise MeshReadError(path, "parse", f"PLY: {exc}") from None
    return _mesh_from(ply, path)


def _mesh_from(ply: PlyData, path: str) -> PlyMesh:
    names = [e.name for e in ply.elements]
    if "vertex" not in names:
        raise MeshReadError(path, "parse", "PLY has no 'vertex' element")
    vd = ply["vertex"].data
    props = set(vd.dtype.names or ())
    if not {"x", "y", "z"} <= props:
        raise MeshReadError(path, "parse", "PLY vertex element lacks x, y or z")
    verts = np.stack([vd["x"], vd["y"], vd["z"]], 1).astype(np.float64)
    if len(verts) == 0:
        raise MeshReadError(path, "empty", "PLY has no vertices")
    if not np.isfinite(verts).all():
        raise MeshReadError(path, "nan", "vertex positions hold NaN or inf")
    if "face" not in names or len(ply["face"].data) == 0:
        raise MeshReadError(path, "empty", "PLY has no faces")
    fd = ply["face"].data
    fnames = fd.dtype.names or ()
    fprop = next((n for n in ("vertex_indices", "vertex_index") if n in fnames), None)
    if fprop is None:
        raise MeshReadError(path, "parse", "PLY face element lacks vertex_indices")
    flist = fd[fprop]
    if flist.dtype != object:  # fixed-length lists (fast path): already an (F, 3) array
        faces = np.array(flist, dtype=np.int32).reshape(-1, 3)  # a copy: not the memmap
    else:
        faces = fan_triangulate_lists(flist)
    if len(faces) == 0 or faces.min() < 0 or faces.max() >= len(verts):
        raise MeshReadError(path, "parse", "face index out of range or no triangle")
    colors = None
    if {"red", "green", "blue"} <= props:
        c = np.stack([vd["red"], vd["green"], vd["blue"]], 1)
        if np.issubdtype(c.dtype, np.floating):
            c = np.rint(np.clip(c, 0.0, 1.0) * 255.0)
        colors = c.astype(np.uint8)
    uvs = None
    for un, vn in _UV_NAMES:
        if {un, vn} <= props:
            uvs = np.stack([vd[un], vd[vn]], 1).astype(np.float64)
            if not np.isfinite(uvs).all():
                raise MeshReadError(path, "nan", "texture coordinates hold NaN or inf")
            break
    tex = None
    for c in ply.comments:
        parts = c.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "texturefile":
            tex = parts[1].strip()
    uv32 = None if uvs is None else uvs.astype(np.float32)
    return PlyMesh(Mesh(verts.astype(np.float32), faces, vertex_colors=colors, uvs=uv32), tex)


def _fast_binary_triangles(path: Path, data: bytes) -> PlyData | None:
    """plyfile reads list properties (faces) row by row in Python (~0.13 s for a 5k-vertex
    mesh); with ``known_list_len`` and a memory map it reads them at numpy speed (~1 ms) but
    *assumes* every face is a triangle. This checks that assumption against the bytes: vertex
    then face, face last, ending exactly at the end of the file, every count byte 3. Anything
    else returns None and the caller takes plyfile's general path."""
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
    end = data.find(b"end_header")
    head = data.index(b"\n", end) + 1
    fstart = head + len(vd) * vd.dtype.itemsize
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
    data = read_bytes(Path(path))
    if data.startswith(b"ply") and b"binary" in data[:64]:
        fast = _fast_binary_triangles(Path(path), data)
        if fast is not None:
            return _mesh_from(fast, str(path))
    elif data.startswith(b"ply") and b"format ascii" in data[:64]:
        quick = _fast_ascii_triangles(data, str(path))
        if quick is not None:
            return quick
    return parse_ply(data, str(path))


def _fast_ascii_triangles(data: bytes, path: str) -> PlyMesh | None:
    """ASCII PLY with a ``vertex`` element of scalar properties then a triangle ``face``
    element, parsed with ``np.fromstring`` (plyfile's ASCII path runs ``loadtxt`` per row,
    ~0.2 s for a 5k-vertex mesh). Anything unusual returns None (plyfile's general path)."""
    end = data.find(b"end_header")
    if end < 0:
        return None
    try:
        header = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        return None
    elems: list[tuple[str, int, list[str]]] = []
    comments: list[str] = []
    for ln in header[2:]:
        t = ln.split()
        if not t:
            continue
        if t[0] == "comment":
            comments.append(ln[8:].strip())
        elif t[0] == "element" and len(t) == 3 and t[2].isdigit():
            elems.append((t[1], int(t[2]), []))
        elif t[0] == "property" and elems:
            elems[-1][2].append(" ".join(t[1:]))
        elif t[0] != "obj_info":
            return None
    if [e[0] for e in elems] != ["vertex", "face"] or len(elems[1][2]) != 1:
        return None
    if any(p.startswith("list") for p in elems[0][2]) or not elems[1][2][0].startswith("list"):
        return None
    props = [p.split()[-1] for p in elems[0][2]]
    nv, nf = elems[0][1], elems[1][1]
    lines = data[data.index(b"\n", end) + 1 :].split(b"\n")
    body = [ln for ln in lines if ln.strip()]
    if len(body) != nv + nf:
        return None
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
    arr = np.empty(nv, dtype=[(p, "f8") for p in props])
    for i, p in enumerate(props):
        arr[p] = vt[:, i]
    faces = np.empty(nf, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = fvals.reshape(nf, 4)[:, 1:]
    ply = PlyData(
        [PlyElement.describe(arr, "vertex"), PlyElement.describe(faces, "face")],
        comments=comments,
    )
    # colours were parsed as floats from integer text: give them back their integer type
    mesh = _mesh_from(ply, path)
    if mesh.mesh.vertex_colors is not None:
        mesh.mesh.vertex_colors = np.stack(
            [vt[:, props.index(c)] for c in ("red", "green", "blue")], 1
        ).astype(np.uint8)
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
