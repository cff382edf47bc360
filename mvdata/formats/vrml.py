"""VRML 2.0 ``IndexedFaceSet`` reader and writer (BU-3DFE, BU-4DFE, BP4D-style ``.wrl``); the
reader takes VRML 1.0 files too.

Hand-written because no maintained Python library reads VRML 2.0 meshes with their separately
indexed texture coordinates (trimesh has no VRML loader). The parser works on nodes, not lines:
it locates ``coord Coordinate { point [ ... ] }``, ``coordIndex [ ... ]``,
``texCoord TextureCoordinate { point [ ... ] }``, ``texCoordIndex [ ... ]``,
``color Color { color [ ... ] }`` and ``ImageTexture { url "..." }`` by their keywords wherever
they are, so header length, field order, ``", "`` vs ``" "`` separators and line breaks do not
matter. Number blocks go through ``np.fromstring`` (C speed) after commas are turned into spaces.

VRML 1.0 (``#VRML V1.0 ascii``) keeps the same lists in other nodes: ``Coordinate3 { point }``,
``TextureCoordinate2 { point }``, ``IndexedFaceSet { coordIndex textureCoordIndex }`` and
``Texture2 { filename }``; they are read the same way (raw-formats.md states the version of
BU-3DFE's files only, so a dataset written as 1.0 is read rather than refused).

Texture coordinates: VRML puts (0, 0) at the lower-left of the image, which is already the
OpenGL convention of :class:`mvdata.core.Mesh`, so they are kept as they are.
Only the first ``IndexedFaceSet`` of a file is read (the datasets have one per file).

Truncation: every ``{`` and ``[`` must be closed (a file cut anywhere before its last brace is
``"truncated"``); index lists are range-checked on the values as parsed, before the cast to
int32, and a bad index is quoted as written.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import (
    as_float32,
    check_indices,
    fan_triangulate,
    read_bytes,
    refuse_zero_filled,
)
from mvdata.io import atomic_write

__all__ = ["VrmlMesh", "parse_vrml", "read_vrml", "vrml_text", "write_vrml"]

_MAGIC = b"#VRML V2.0"
_MAGIC_V1 = b"#VRML V1.0"
_DEF = r"(?:DEF\s+[^\s{}\[\]]+\s+)?"
# (literal anchor, pattern matched at the anchor): str.find runs at memchr speed, whereas a
# regex search over a multi-megabyte file costs ~0.1 s per pattern.
_Anchor = tuple[str, re.Pattern[str]]
_COORD: _Anchor = ("coord", re.compile(r"coord\s+" + _DEF + r"Coordinate\s*\{"))
_TEXCOORD: _Anchor = ("texCoord", re.compile(r"texCoord\s+" + _DEF + r"TextureCoordinate\s*\{"))
_COLOR: _Anchor = ("color", re.compile(r"color\s+" + _DEF + r"Color\s*\{"))
_POINT: _Anchor = ("point", re.compile(r"point\s*\["))
_COLORFIELD: _Anchor = ("color", re.compile(r"color\s*\["))
_COORDINDEX: _Anchor = ("coordIndex", re.compile(r"coordIndex\s*\["))
_TEXCOORDINDEX: _Anchor = ("texCoordIndex", re.compile(r"texCoordIndex\s*\["))
_URL: _Anchor = (
    "ImageTexture",
    re.compile(r'ImageTexture\s*\{[^}]*?\burl\s*\[?\s*"([^"]*)"', re.S),
)
# VRML 1.0 spells the same mesh with other nodes: Coordinate3 / TextureCoordinate2 point lists,
# textureCoordIndex, Texture2 { filename }. (No per-vertex colours are read from 1.0 files.)
_COORD_V1: _Anchor = ("Coordinate3", re.compile(r"Coordinate3\s*\{"))
_TEXCOORD_V1: _Anchor = ("TextureCoordinate2", re.compile(r"TextureCoordinate2\s*\{"))
_TEXCOORDINDEX_V1: _Anchor = ("textureCoordIndex", re.compile(r"textureCoordIndex\s*\["))
_URL_V1: _Anchor = ("Texture2", re.compile(r'Texture2\s*\{[^}]*?\bfilename\s*"([^"]*)"', re.S))


@dataclass(frozen=True)
class _Syntax:
    """Where one VRML version keeps the mesh's parts."""

    coord: _Anchor
    texcoord: _Anchor
    texcoord_index: _Anchor
    url: _Anchor
    color: _Anchor | None


_V2 = _Syntax(_COORD, _TEXCOORD, _TEXCOORDINDEX, _URL, _COLOR)
_V1 = _Syntax(_COORD_V1, _TEXCOORD_V1, _TEXCOORDINDEX_V1, _URL_V1, None)
_RE_COMMENT = re.compile(r"#[^\n]*")
_RE_STRING = re.compile(r'"[^"\n]*"')


@dataclass
class VrmlMesh:
    """A parsed VRML mesh and the texture file name its ``ImageTexture`` names (or None)."""

    mesh: Mesh
    texture_url: str | None


def _search(text: str, anchor: _Anchor, pos: int = 0) -> re.Match[str] | None:
    """First match of ``anchor`` at or after ``pos`` that starts a word (not ``xcoord``)."""
    lit, pat = anchor
    i = text.find(lit, pos)
    while i >= 0:
        if i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"):
            m = pat.match(text, i)
            if m is not None:
                return m
        i = text.find(lit, i + 1)
    return None


Spans = list[tuple[int, int]]


def _block(
    text: str, start: _Anchor, path: str, what: str, spans: Spans, pos: int = 0
) -> str | None:
    """The text between ``field [`` and its ``]``, or None when the field is absent; its
    ``(start, end)`` offsets are appended to ``spans``."""
    m = _search(text, start, pos)
    if m is None:
        return None
    end = text.find("]", m.end())
    if end < 0:
        raise MeshReadError(path, "truncated", f"{what} block is not closed (file ends early?)")
    spans.append((m.end(), end))
    return text[m.end() : end]


def _node_block(
    text: str, node: _Anchor, field: _Anchor, path: str, what: str, spans: Spans
) -> str | None:
    """The number block of ``field [ ... ]`` inside the node ``node`` (None when absent)."""
    m = _search(text, node)
    if m is None:
        return None
    close = text.find("}", m.end())
    f = _search(text, field, m.end())
    if f is None or (close >= 0 and f.start() > close):
        raise MeshReadError(path, "parse", f"{what} node has no number list")
    return _block(text, field, path, what, spans, m.end())


def _numbers(block: str, dtype: type, path: str, what: str) -> NDArray[np.generic]:
    """Parse a whitespace/comma separated number list at C speed; bad tokens raise parse."""
    if "#" in block:
        block = _RE_COMMENT.sub(" ", block)
    block = block.replace(",", " ")
    if not block.strip():
        # np.fromstring reads whitespace alone as one number ([0] as int, [-1.] as float)
        return np.zeros(0, dtype=dtype)
    try:
        with warnings.catch_warnings():
            # numpy < 2.3 only warns when it stops at an unparsable token; make that an error.
            warnings.simplefilter("error", DeprecationWarning)
            arr: NDArray[np.generic] = np.fromstring(block, dtype=dtype, sep=" ")
    except (ValueError, DeprecationWarning):
        bad = next((t for t in block.split() if not _is_number(t, dtype)), "?")
        raise MeshReadError(path, "parse", f"{what}: not a number: {bad[:40]!r}") from None
    return arr


def _is_number(tok: str, dtype: type) -> bool:
    try:
        if dtype is np.int64:
            int(tok)
        else:
            float(tok)
    except ValueError:
        return False
    return True


def _utf16(data: bytes) -> bool:
    """A byte-order mark, or ASCII text with a zero byte beside every character (UTF-16
    without a mark): zeros at every odd offset and none at even ones, or the reverse."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = data[:64]
    even, odd = head[0::2], head[1::2]
    return len(odd) > 1 and (
        (odd.count(0) == len(odd) and even.count(0) == 0)
        or (even.count(0) == len(even) and odd.count(0) == 0)
    )


def _check_closed(text: str, spans: Spans, path: str) -> None:
    """Every ``{`` closed: a file cut anywhere before its end leaves a node open (a cut inside
    a list leaves the nodes around it open too). The number lists already parsed hold no braces,
    so the fast count skips them (``spans``) and reads only the few KB around them; only when
    the counts differ is the whole text counted again, comments and strings (which may hold
    brackets) taken out, to say what is wrong."""
    opened = closed = pos = 0
    for start, end in [*sorted(spans), (len(text), len(text))]:
        if start >= pos:
            opened += text.count("{", pos, start)
            closed += text.count("}", pos, start)
        pos = max(pos, end)
    if opened == closed:
        return
    pairs = (("{", "}", "node"), ("[", "]", "list"))
    bare = _RE_COMMENT.sub(" ", _RE_STRING.sub(" ", text))
    for a, b, what in pairs:
        opened, closed = bare.count(a), bare.count(b)
        if opened > closed:
            msg = f"{opened - closed} {what} bracket(s) '{a}' never closed: the file ends early"
            raise MeshReadError(path, "truncated", msg)
        if closed > opened:
            msg = f"{closed - opened} '{b}' without a matching '{a}'"
            raise MeshReadError(path, "parse", msg)


def _decode(data: bytes, path: str) -> tuple[str, _Syntax]:
    refuse_zero_filled(data, path)
    if _utf16(data):
        raise MeshReadError(path, "encoding", "file is UTF-16 encoded; VRML 2.0 must be UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    syntax = _V2 if data.startswith(_MAGIC) else _V1 if data.startswith(_MAGIC_V1) else None
    if syntax is None:
        if b"\x00" in data[:64]:
            raise MeshReadError(path, "bad-magic", "binary data, not a VRML file")
        if data.startswith(b"#VRML"):
            head = data[:20].split(b"\n")[0].decode("ascii", "replace")
            raise MeshReadError(path, "bad-magic", f"unsupported VRML version {head!r}")
        raise MeshReadError(path, "bad-magic", "not a VRML file (no '#VRML V2.0' header)")
    try:
        return data.decode("utf-8"), syntax
    except UnicodeDecodeError as exc:
        raise MeshReadError(
            path, "encoding", f"not valid UTF-8 at byte {exc.start} (binary data?)"
        ) from None


def parse_vrml(data: bytes, path: str = "<bytes>") -> VrmlMesh:
    """Parse the first ``IndexedFaceSet`` of a VRML 2.0 file's bytes into a :class:`Mesh`."""
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    text, syntax = _decode(data, path)
    spans: Spans = []
    pts = _node_block(text, syntax.coord, _POINT, path, "coord point", spans)
    if pts is None:
        if "IndexedFaceSet" not in text:
            raise MeshReadError(path, "parse", "no IndexedFaceSet in the file")
        raise MeshReadError(path, "truncated", "IndexedFaceSet has no coord Coordinate point list")
    verts = _numbers(pts, np.float64, path, "coord point")
    if verts.size == 0:
        raise MeshReadError(path, "empty", "coord point list is empty")
    if verts.size % 3:
        msg = f"coord point holds {verts.size} numbers: not x y z triples"
        raise MeshReadError(path, "parse", msg)
    verts32 = as_float32(verts.reshape(-1, 3))
    if verts32 is None:
        raise MeshReadError(path, "nan", "coord point holds NaN or inf (or beyond float32)")
    ci = _block(text, _COORDINDEX, path, "coordIndex", spans)
    if ci is None:
        raise MeshReadError(path, "truncated", "IndexedFaceSet has no coordIndex")
    cidx = _numbers(ci, np.int64, path, "coordIndex").astype(np.int64)
    check_indices(cidx, len(verts32), path, "coordIndex", ci, noun="vertex")
    faces, poly = fan_triangulate(cidx, path, "coordIndex")
    if len(faces) == 0:
        raise MeshReadError(path, "empty", "coordIndex holds no polygon")

    uvs = uv_faces = None
    tc = _node_block(text, syntax.texcoord, _POINT, path, "texCoord point", spans)
    uv = None if tc is None else _numbers(tc, np.float64, path, "texCoord point")
    if uv is not None and uv.size:  # an empty texCoord list: the mesh has no UVs
        if uv.size % 2:
            raise MeshReadError(path, "parse", "texCoord point does not hold u v pairs")
        uvs = as_float32(uv.reshape(-1, 2))
        if uvs is None:
            raise MeshReadError(path, "nan", "texCoord point holds NaN or inf")
        ti = _block(text, syntax.texcoord_index, path, "texCoordIndex", spans)
        tidx = None if ti is None else _numbers(ti, np.int64, path, "texCoordIndex")
        if tidx is None or tidx.size == 0:
            # VRML97: without texCoordIndex, or with an empty one, coordIndex indexes the texCoords
            uv_faces = faces
        else:
            tidx64: NDArray[np.int64] = np.asarray(tidx, dtype=np.int64)
            what, noun = "texCoordIndex", "texture coordinate"
            check_indices(tidx64, len(uvs), path, what, ti, noun=noun)
            uv_faces, tpoly = fan_triangulate(tidx64, path, "texCoordIndex")
            if uv_faces.shape != faces.shape or not np.array_equal(tpoly, poly):
                raise MeshReadError(
                    path, "parse", "texCoordIndex polygons do not match coordIndex polygons"
                )
        if len(uvs) == 0 or uv_faces.min() < 0 or uv_faces.max() >= len(uvs):
            raise MeshReadError(path, "parse", "texture coordinate index out of range")

    colors = None
    cb = None
    if syntax.color is not None:
        cb = _node_block(text, syntax.color, _COLORFIELD, path, "color", spans)
    if cb is not None:
        c = _numbers(cb, np.float64, path, "color")
        if c.size == verts.size:  # per-vertex colours only; other layouts are ignored
            colors = np.clip(np.rint(np.nan_to_num(c.reshape(-1, 3)) * 255.0), 0, 255)
            colors = colors.astype(np.uint8)

    _check_closed(text, spans, path)
    m = _search(text, syntax.url)
    url = m.group(1) if m else None
    mesh = Mesh(verts32, faces, vertex_colors=colors, uvs=uvs, uv_faces=uv_faces)
    return VrmlMesh(mesh, url)


def read_vrml(path: Path | str) -> VrmlMesh:
    """Read a ``.wrl`` file (see :func:`parse_vrml`)."""
    return parse_vrml(read_bytes(Path(path)), str(path))


VrmlStyle = Literal["comma", "space"]


def _fmt(arr: NDArray[np.generic], fmt: str, cols: int, style: VrmlStyle, per_line: int) -> str:
    toks = [fmt % v for v in np.asarray(arr).ravel().tolist()]
    if style == "comma":
        # BU style: one row a line, numbers separated by ", ", rows ending with ","
        rows = [", ".join(toks[i : i + cols]) for i in range(0, len(toks), cols)]
        return ",\n".join(rows)
    # free line breaks: a fixed number of tokens a line, regardless of row boundaries
    return "\n".join(" ".join(toks[i : i + per_line]) for i in range(0, len(toks), per_line))


def _index_list(tris: NDArray[np.int32]) -> NDArray[np.int64]:
    out = np.full((len(tris), 4), -1, dtype=np.int64)
    out[:, :3] = tris
    return out


def vrml_text(
    mesh: Mesh,
    texture_url: str | None = None,
    style: VrmlStyle = "comma",
    float_fmt: str = "%.6f",
    comments: tuple[str, ...] = (),
) -> str:
    """The VRML 2.0 text of a triangle mesh (one ``IndexedFaceSet``).

    ``style="comma"`` writes BU-3DFE-like blocks (``x, y, z,`` one point a line);
    ``style="space"`` writes space separated numbers with line breaks every 7 tokens, cutting
    through points, to exercise readers. ``comments`` become extra header lines.
    """
    head = ["#VRML V2.0 utf8", *(f"# {c}" for c in comments), ""]
    app = ""
    if texture_url is not None:
        tex = f'texture ImageTexture {{ url "{texture_url}" }}'
        app = f"  appearance Appearance {{\n    {tex}\n  }}\n"
    parts = [
        "\n".join(head),
        "Transform {\n children [\n Shape {\n",
        app,
        "  geometry IndexedFaceSet {\n   solid FALSE\n   creaseAngle 0.5\n",
        "   coord Coordinate {\n    point [\n",
        _fmt(mesh.vertices, float_fmt, 3, style, 7),
        "\n    ]\n   }\n",
    ]
    if mesh.vertex_colors is not None:
        parts += [
            "   color Color {\n    color [\n",
            _fmt(mesh.vertex_colors.astype(np.float64) / 255.0, "%.6f", 3, style, 7),
            "\n    ]\n   }\n",
        ]
    if mesh.uvs is not None:
        parts += [
            "   texCoord TextureCoordinate {\n    point [\n",
            _fmt(mesh.uvs, float_fmt, 2, style, 7),
            "\n    ]\n   }\n",
        ]
    parts += ["   coordIndex [\n", _fmt(_index_list(mesh.faces), "%d", 4, style, 8), "\n   ]\n"]
    if mesh.uvs is not None and mesh.uv_faces is not None:
        parts += [
            "   texCoordIndex [\n",
            _fmt(_index_list(mesh.uv_faces), "%d", 4, style, 8),
            "\n   ]\n",
        ]
    parts.append("  }\n }\n ]\n}\n")
    return "".join(parts)


def write_vrml(
    path: Path | str,
    mesh: Mesh,
    texture_url: str | None = None,
    style: VrmlStyle = "comma",
    float_fmt: str = "%.6f",
    comments: tuple[str, ...] = (),
) -> None:
    """Write ``mesh`` as a VRML 2.0 file atomically (see :func:`vrml_text`)."""
    text = vrml_text(mesh, texture_url, style, float_fmt, comments)
    atomic_write(Path(path), text.encode("utf-8"))
