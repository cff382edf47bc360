"""Wavefront OBJ (+ MTL) reader and writer (FaceScape, BP4D-style frames, mesh folders).

Hand-written rather than trimesh because the datasets' OBJ files index texture coordinates
separately from positions (``f v/vt``), and :class:`mvdata.mesh.Mesh` keeps them that way
(``uv_faces``). trimesh either splits vertices at UV seams (reordering / adding vertices) or,
with ``process=False, maintain_order=True``, keeps the vertices but stores one UV per vertex and
silently drops the second UV of a seam vertex (checked with trimesh 5.2). Registered datasets
rely on the vertex order, so it must be kept exactly.

Supported: ``v x y z [r g b]``, ``vt u v [w]``, ``f`` with ``v``, ``v/vt``, ``v//vn``,
``v/vt/vn`` corners, polygons (fan-triangulated), negative (relative) indices, ``mtllib``;
``vn``, groups, ``usemtl`` and smoothing are ignored (one material a file is assumed).
OBJ ``vt`` use the OpenGL origin (bottom-left), like :class:`Mesh`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.formats import atomic_write_bytes, fan_triangulate, read_bytes
from mvdata.mesh import Mesh, MeshReadError

__all__ = ["ObjMesh", "obj_text", "parse_mtl", "parse_obj", "read_obj", "write_obj"]


@dataclass
class ObjMesh:
    """A parsed OBJ mesh and the material library file it names (or None)."""

    mesh: Mesh
    mtllib: str | None


def _decode(data: bytes, path: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise MeshReadError(path, "encoding", "file is UTF-16 or binary; OBJ is ASCII/UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MeshReadError(path, "encoding", f"not UTF-8 text at byte {exc.start}") from None


def _numbers_text(lines: list[str], prefix: str) -> str:
    """The lines (each starting with ``prefix``, e.g. ``"v "``) as one text of numbers. Joining
    whole lines and deleting the prefixes runs at C speed, unlike slicing every line; it is
    exact only when each line holds the prefix once, so any other line is sliced instead."""
    joined = "\n".join(lines)
    if joined.count(prefix) == len(lines):
        return joined.replace(prefix, " ")
    return " ".join(ln[len(prefix) :] for ln in lines)


def _floats(lines: list[str], path: str, what: str) -> NDArray[np.float64]:
    block = _numbers_text(lines, what + " ")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return np.fromstring(block, dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning):
        msg = f"'{what}' lines hold something that is not a number"
        raise MeshReadError(path, "parse", msg) from None


def _resolve(idx: NDArray[np.int64], count: int, path: str, what: str) -> NDArray[np.int64]:
    # OBJ is 1-based; negative indices count back from the end (relative to the whole list here)
    out = np.where(idx > 0, idx - 1, idx + count)
    if (idx == 0).any() or (out < 0).any() or (out >= count).any():
        raise MeshReadError(path, "parse", f"face {what} index out of range (1..{count})")
    return out


def _triangle_corners(fl: list[str], nparts: int) -> NDArray[np.int64] | None:
    """``(3F, nparts)`` corner indices when every face is a triangle whose corners all have
    ``nparts`` parts, parsed at C speed; None (take the general path) otherwise."""
    if any(ln.count(" ") != 3 for ln in fl):
        return None
    block = _numbers_text(fl, "f ")
    if "//" in block:
        block = block.replace("//", "/0/")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            nums = np.fromstring(block.replace("/", " "), dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if nums.size != 3 * len(fl) * nparts or block.count("/") != 3 * len(fl) * (nparts - 1):
        return None
    return nums.reshape(-1, nparts)


def _classify_blocks(data: bytes, text: str) -> tuple[list[str], list[str], list[str], str | None] | None:
    """The ``v``, ``vt`` and ``f`` lines (and the first ``mtllib``) of a *regular* file, found
    with numpy instead of a Python loop over every line (which cost as much as all the number
    parsing): plain ASCII with ``\\n`` line ends, no indented lines, and each kind of line in one
    contiguous block, as exporters write them. Anything else returns None and the caller takes
    the line-by-line path, so both paths give the same lists."""
    if not data.isascii() or b"\r" in data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(buf == 10) + 1))
    starts = starts[starts < len(buf)]
    pad = np.concatenate((buf, np.zeros(3, dtype=np.uint8)))
    c0, c1, c2 = pad[starts], pad[starts + 1], pad[starts + 2]
    if ((c0 == 32) | (c0 == 9)).any():
        return None  # indented lines: the general path strips them
    ends = np.concatenate((starts[1:] - 1, [len(buf)]))
    blocks: list[list[str]] = []
    for mask in (
        (c0 == ord("v")) & (c1 == 32),
        (c0 == ord("v")) & (c1 == ord("t")) & (c2 == 32),
        (c0 == ord("f")) & (c1 == 32),
    ):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            blocks.append([])
            continue
        if idx[-1] - idx[0] + 1 != len(idx):
            return None  # interleaved with other lines
        block = text[int(starts[idx[0]]) : int(ends[idx[-1]])].rstrip("\n")
        lines = block.split("\n")
        if " \n" in block or block.endswith(" "):
            lines = [ln.rstrip() for ln in lines]
        blocks.append(lines)
    lib = np.flatnonzero((c0 == ord("m")) & (c1 == ord("t")))  # "mtllib"
    mtllib = None
    for i in lib:
        line = text[int(starts[i]) : int(ends[i])]
        if line.startswith("mtllib "):
            mtllib = line[7:].strip()
            break
    return blocks[0], blocks[1], blocks[2], mtllib


def parse_obj(data: bytes, path: str = "<bytes>") -> ObjMesh:
    """Parse OBJ bytes into a :class:`Mesh` keeping vertex order and per-corner UVs."""
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    text = _decode(data, path)
    classified = _classify_blocks(data, text)
    vl: list[str]
    vtl: list[str]
    fl: list[str]
    mtllib: str | None
    if classified is not None:
        vl, vtl, fl, mtllib = classified
    else:
        vl, vtl, fl, mtllib = [], [], [], None
        for raw in text.splitlines():
            ln = raw.strip()
            if ln.startswith("v "):
                vl.append(ln)
            elif ln.startswith("vt "):
                vtl.append(ln)
            elif ln.startswith("f "):
                fl.append(ln)
            elif ln.startswith("mtllib ") and mtllib is None:
                mtllib = ln[7:].strip()
    if not vl:
        raise MeshReadError(path, "parse", "no 'v' lines: not an OBJ mesh")
    ncols = len(vl[0].split()) - 1
    vals = _floats(vl, path, "v")
    if ncols not in (3, 4, 6, 7) or vals.size != ncols * len(vl):
        raise MeshReadError(path, "parse", "'v' lines have differing or unexpected field counts")
    vals = vals.reshape(len(vl), ncols)
    verts = vals[:, :3]
    if not np.isfinite(vals).all():
        raise MeshReadError(path, "nan", "vertex positions or colours hold NaN or inf")
    colors = None
    if ncols in (6, 7):
        colors = np.rint(np.clip(vals[:, ncols - 3 :], 0.0, 1.0) * 255.0).astype(np.uint8)
    if not fl:
        raise MeshReadError(path, "truncated", "no 'f' lines (no faces)")
    first = fl[0].split()[1].split("/")
    has_vt = len(first) >= 2 and first[1] != ""
    fast = _triangle_corners(fl, len(first))
    if fast is not None:
        vi = fast[:, 0]
        ti = fast[:, 1] if has_vt else None
        sep = np.arange(3, 3 * len(fl) + 1, 3, dtype=np.int64)
    else:
        corners: list[str] = []
        ends: list[int] = []
        for ln in fl:
            corners += ln.split()[1:]
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
        sep = np.asarray(ends, dtype=np.int64)
    # -1-separated polygon list, the layout fan_triangulate expects
    vi = _resolve(vi, len(verts), path, "vertex")
    faces, poly = fan_triangulate(np.insert(vi, sep, -1), path, "f")
    uvs = uv_faces = None
    if has_vt and ti is not None:
        uv = _floats(vtl, path, "vt") if vtl else np.zeros(0)
        ucols = len(vtl[0].split()) - 1 if vtl else 2
        if ucols not in (2, 3) or uv.size != ucols * len(vtl):
            raise MeshReadError(path, "parse", "'vt' lines have differing field counts")
        uvs = uv.reshape(len(vtl), ucols)[:, :2]
        if not np.isfinite(uvs).all():
            raise MeshReadError(path, "nan", "texture coordinates hold NaN or inf")
        ti = _resolve(ti, len(uvs), path, "texture")
        uv_faces, _ = fan_triangulate(np.insert(ti, sep, -1), path, "f")
    if len(faces) == 0:
        raise MeshReadError(path, "empty", "no triangle in the 'f' lines")
    del poly
    uv32 = None if uvs is None else uvs.astype(np.float32)
    mesh = Mesh(verts.astype(np.float32), faces, vertex_colors=colors, uvs=uv32, uv_faces=uv_faces)
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
        atomic_write_bytes(p.with_suffix(".mtl"), mtl_text.encode("utf-8"))
    atomic_write_bytes(p, obj_text(mesh, mtl, float_fmt).encode("utf-8"))
