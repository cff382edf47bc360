"""Bosphorus ``.bnt`` binary depth grid: reader, writer, and grid -> mesh.

Hand-written because the format is specific to the Bosphorus database (no library reads it).
Layout (little-endian, verified against real files, see docs/raw-formats.md)::

    uint16 nrows | uint16 ncols | float64 zmin | uint16 L | L bytes ASCII texture name |
    uint32 N (= 5 * nrows * ncols) | N float64: all x, all y, all z, all u, all v

The file size must be exactly ``18 + L + 8 N``. Point (row, col) is at ``row * ncols + col``;
row 0 is the bottom of the face. Background points have ``z == zmin`` (x and y are not always
set there, so only z is tested). u, v lie in [0, 1] and index the ``.png`` texture with **v growing
downwards like the image rows** (v = 0 is the top row): reported from a real file, whose v falls
as y rises (correlation -1.0). :class:`BntGrid` keeps the file's values; :func:`bnt_to_mesh`
turns them into the OpenGL convention of :class:`mvdata.core.Mesh` (v up) with ``1 - v``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import read_bytes
from mvdata.io import atomic_write

__all__ = ["BntGrid", "bnt_bytes", "bnt_to_mesh", "parse_bnt", "read_bnt", "write_bnt"]

_HEAD = struct.Struct("<HHdH")  # nrows, ncols, zmin, L


@dataclass
class BntGrid:
    """The five ``(nrows, ncols)`` float64 blocks of a ``.bnt`` file, row 0 at the bottom.

    ``u``/``v`` are as in the file: v = 0 is the texture image's top row (see the module).
    """

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    z: NDArray[np.float64]
    u: NDArray[np.float64]
    v: NDArray[np.float64]
    zmin: float
    texture_name: str

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.z.shape[0]), int(self.z.shape[1]))

    @property
    def valid(self) -> NDArray[np.bool_]:
        """Foreground mask: every point whose z is not the background marker."""
        return np.asarray(self.z != self.zmin)


def parse_bnt(data: bytes, path: str = "<bytes>") -> BntGrid:
    """Parse the bytes of a ``.bnt`` file, checking the size rule and the header."""
    if not data:
        raise MeshReadError(path, "empty", "file is empty (0 bytes)")
    if len(data) < _HEAD.size:
        raise MeshReadError(path, "truncated", f"{len(data)} bytes: shorter than the header")
    nrows, ncols, zmin, name_len = _HEAD.unpack_from(data, 0)
    if nrows == 0 or ncols == 0:
        raise MeshReadError(path, "bad-magic", f"header says {nrows}x{ncols} grid: not a .bnt file")
    raw_name = data[_HEAD.size : _HEAD.size + name_len]
    # the name is checked before the length: garbage is "bad-magic", a short header "truncated"
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError:
        raise MeshReadError(
            path, "bad-magic", "texture name in the header is not ASCII: not a .bnt file"
        ) from None
    if not name.isprintable():
        raise MeshReadError(path, "bad-magic", "texture name in the header is not printable")
    if len(data) < _HEAD.size + name_len + 4:
        raise MeshReadError(path, "truncated", "file ends inside the header")
    (n,) = struct.unpack_from("<I", data, _HEAD.size + name_len)
    if n != 5 * nrows * ncols:
        raise MeshReadError(
            path, "bad-magic", f"header: N={n} but 5*{nrows}*{ncols}={5 * nrows * ncols}"
        )
    expect = 18 + name_len + 8 * n
    if len(data) < expect:
        raise MeshReadError(path, "truncated", f"{len(data)} bytes, header promises {expect}")
    if len(data) != expect:
        raise MeshReadError(path, "wrong-size", f"{len(data)} bytes, header promises {expect}")
    blocks = np.frombuffer(data, dtype="<f8", count=n, offset=18 + name_len)
    blocks = blocks.reshape(5, nrows, ncols)
    if not np.isfinite(zmin):
        raise MeshReadError(path, "nan", "zmin (background marker) is NaN or inf")
    z = blocks[2]
    fg = z != zmin
    if not fg.any():
        raise MeshReadError(path, "empty", "every point is background (z == zmin)")
    if not np.isfinite(blocks[:, fg]).all():
        raise MeshReadError(path, "nan", "a foreground point holds NaN or inf")
    return BntGrid(
        blocks[0].astype(np.float64),
        blocks[1].astype(np.float64),
        z.astype(np.float64),
        blocks[3].astype(np.float64),
        blocks[4].astype(np.float64),
        float(zmin),
        name,
    )


def read_bnt(path: Path | str) -> BntGrid:
    """Read a ``.bnt`` file (see :func:`parse_bnt`)."""
    return parse_bnt(read_bytes(Path(path)), str(path))


def bnt_to_mesh(grid: BntGrid, path: str = "<bnt>") -> Mesh:
    """Triangle mesh of the foreground: two triangles per grid quad whose four points are valid.

    Vertices are the valid points in row-major order; per-vertex UVs are ``(u, 1 - v)``: the
    file's v grows down the image rows, :class:`Mesh` UVs grow up (OpenGL, origin bottom-left).
    Triangles are counter-clockwise seen from +z (rows grow with y, columns with x).
    """
    valid = grid.valid
    nrows, ncols = grid.shape
    index = np.full(valid.shape, -1, dtype=np.int64)
    index[valid] = np.arange(int(valid.sum()))
    a = index[:-1, :-1]
    b = index[:-1, 1:]
    c = index[1:, :-1]
    d = index[1:, 1:]
    quad = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[quad], b[quad], c[quad], d[quad]
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int32)
    if len(faces) == 0:
        raise MeshReadError(path, "empty", "no quad of four valid points: no surface")
    verts = np.stack([grid.x[valid], grid.y[valid], grid.z[valid]], 1)
    uvs = np.stack([grid.u[valid], 1.0 - grid.v[valid]], 1)
    limit = float(np.finfo(np.float32).max)
    for what, arr in (("coordinates", verts), ("texture coordinates", uvs)):
        # Checked before the float32 cast, which would turn 1e300 into inf with a warning.
        if not (np.isfinite(arr).all() and (np.abs(arr) <= limit).all()):
            raise MeshReadError(path, "nan", f"{what} hold NaN, inf or values beyond float32")
    return Mesh(verts.astype(np.float32), faces, uvs=uvs.astype(np.float32))


def bnt_bytes(grid: BntGrid) -> bytes:
    """The bytes of a ``.bnt`` file holding ``grid``."""
    nrows, ncols = grid.shape
    name = grid.texture_name.encode("ascii")
    n = 5 * nrows * ncols
    blocks = np.stack([grid.x, grid.y, grid.z, grid.u, grid.v]).astype("<f8")
    head = _HEAD.pack(nrows, ncols, grid.zmin, len(name))
    return b"".join([head, name, struct.pack("<I", n), blocks.tobytes()])


def write_bnt(path: Path | str, grid: BntGrid) -> None:
    """Write ``grid`` as a ``.bnt`` file atomically."""
    atomic_write(Path(path), bnt_bytes(grid))
