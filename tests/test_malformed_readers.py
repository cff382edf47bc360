"""A malformed-input campaign against the raw-file readers, generated here (issue 11).

For each format a valid file is made, then many corrupted variants are derived from it:
truncated at several points (with and without a final newline), bytes flipped, zero-filled
(whole or in part), random garbage, doubled, re-encoded (UTF-16/32, BOMs, CRLF, a Latin-1
byte), numbers replaced by NaN / inf / values beyond float32 / indices beyond int32 and int64,
declared counts and sizes made huge or off by one, and the path itself replaced by a directory,
a symlink loop, a dangling symlink or a FIFO. For every variant the reader, used as the dataset
sources use it, must either read (and then give a valid mesh, finite landmarks or an RGB image)
or raise ``MeshReadError`` whose message names the file: never any other exception, never a
hang (``pytest-timeout``), never a large allocation (the ``tracemalloc`` peak; declared sizes
are checked against the file before anything is allocated). Where a format lets truncation be
seen (PLY counts, VRML brackets, the BNT size rule, an OBJ cut mid-line), a truncated variant
must not read.
"""

from __future__ import annotations

import os
import re
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData, PlyElement

from mvdata.core import Mesh, MeshReadError
from mvdata.formats.bnt import BntGrid, bnt_bytes, bnt_to_mesh, read_bnt
from mvdata.formats.landmarks import (
    Landmarks,
    read_bnd,
    read_lm2,
    read_lm3,
    write_bnd,
    write_lm2,
    write_lm3,
)
from mvdata.formats.obj import ObjMesh, obj_text, read_obj
from mvdata.formats.ply import PlyMesh, ply_bytes, read_ply
from mvdata.formats.vrml import VrmlMesh, read_vrml, vrml_text
from mvdata.sources.common import checked, load_image

#: The most a read of one of these small files (a few KB) may allocate at its peak.
MEMORY_LIMIT = 64 * 2**20

Variant = tuple[str, bytes | str]  # (name, the file's bytes or a special kind of path)
SPECIAL = ("special:directory", "special:symlink-loop", "special:dangling-symlink", "special:fifo")


# --------------------------------------------------------------------------- valid files
def _mesh(per_corner_uvs: bool) -> Mesh:
    rng = np.random.default_rng(3)
    n = 30
    v = (rng.normal(size=(n, 3)) * 40).astype(np.float32)
    f = rng.integers(0, n, (48, 3)).astype(np.int32)
    if per_corner_uvs:
        uvs = rng.random((n + 5, 2)).astype(np.float32)
        return Mesh(v, f, uvs=uvs, uv_faces=rng.integers(0, n + 5, (48, 3)).astype(np.int32))
    colors = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    return Mesh(v, f, vertex_colors=colors, uvs=rng.random((n, 2)).astype(np.float32))


def _polygons_ply(binary: bool) -> bytes:
    """A PLY of quads and triangles with a float colour and an extra property: plyfile's
    general path (not the triangle fast paths)."""
    rng = np.random.default_rng(4)
    v = np.empty(12, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "f4"), ("q", "u2")])
    for name in ("x", "y", "z"):
        v[name] = rng.normal(size=12) * 30
    v["red"], v["q"] = rng.random(12), rng.integers(0, 9, 12)
    faces = np.empty(8, dtype=[("vertex_indices", object)])
    faces["vertex_indices"] = [rng.integers(0, 12, 3 + (i % 2)).astype(np.int32) for i in range(8)]
    ply = PlyData(
        [PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")], text=not binary
    )
    buf = BytesIO()
    ply.write(buf)
    return buf.getvalue()


def _polygons_obj() -> bytes:
    """An OBJ the line-by-line path reads: quads, ``v//vn`` corners, groups, a comment."""
    rng = np.random.default_rng(6)
    lines = ["# polygons", "g head"]
    lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in rng.normal(size=(10, 3)) * 30]
    lines += ["vn 0 0 1"]
    for i in range(8):
        corners = rng.integers(1, 11, 3 + (i % 2))
        lines.append("f " + " ".join(f"{c}//1" for c in corners))
    return ("\n".join(lines) + "\n").encode()


def _grid() -> BntGrid:
    r, c = np.mgrid[0:7, 0:6].astype(np.float64)
    z = 10.0 + r * 0.5 - c * 0.25
    z[0, 0] = -1e9
    return BntGrid(c * 0.77, r * 0.77, z, c / 6, 1 - r / 6, -1e9, "bs000_N_N_0.png")


def _landmark_file(write: Callable[[Path], None], tmp: Path) -> bytes:
    write(tmp)
    return tmp.read_bytes()


def _image(fmt: str) -> bytes:
    rng = np.random.default_rng(5)
    buf = BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _good(fmt: str, tmp: Path) -> bytes:
    pts = np.random.default_rng(1).normal(size=(5, 3)) * 30
    labels = ("Nose tip", "Outer left eye corner", "Inner left eye corner", "Chin middle", "x")
    makers: dict[str, Callable[[], bytes]] = {
        "obj": lambda: obj_text(_mesh(True)).encode(),
        "obj-polygons": _polygons_obj,
        "ply-ascii-polygons": lambda: _polygons_ply(binary=False),
        "ply-binary-polygons": lambda: _polygons_ply(binary=True),
        "ply-ascii": lambda: ply_bytes(_mesh(False), binary=False, texture_file="t.png"),
        "ply-binary": lambda: ply_bytes(_mesh(False), binary=True),
        "vrml": lambda: vrml_text(_mesh(True), "t.bmp").encode(),
        "vrml-space": lambda: vrml_text(_mesh(True), None, "space", "%.9g").encode(),
        "bnt": lambda: bnt_bytes(_grid()),
        "bnd": lambda: _landmark_file(
            lambda p: write_bnd(p, np.resize(pts, (83, 3)), np.arange(83)), tmp / "g.bnd"
        ),
        "lm2": lambda: _landmark_file(lambda p: write_lm2(p, pts[:, :2], labels), tmp / "g.lm2"),
        "lm3": lambda: _landmark_file(lambda p: write_lm3(p, pts, labels), tmp / "g.lm3"),
        "png": lambda: _image("PNG"),
        "jpg": lambda: _image("JPEG"),
    }
    return makers[fmt]()


# --------------------------------------------------------------------------- reading
def _read_mesh(reader: Callable[[Path], object]) -> Callable[[Path], None]:
    def read(p: Path) -> None:
        parsed = reader(p)
        assert isinstance(parsed, (ObjMesh, PlyMesh, VrmlMesh))
        parsed.mesh.validate()  # a mesh that reads must be a valid one

    return read


def _read_bnt(p: Path) -> None:
    # as the Bosphorus source reads it: its mesh is validated there (``checked``), which turns
    # a grid value beyond float32 (inf once cast) into a "nan" MeshReadError
    checked(bnt_to_mesh(read_bnt(p), str(p)), str(p))


def _read_landmarks(reader: Callable[[Path], object]) -> Callable[[Path], None]:
    def read(p: Path) -> None:
        lm = reader(p)
        assert isinstance(lm, Landmarks)
        assert np.isfinite(lm.points).all(), "landmarks hold NaN or inf"

    return read


def _read_image(p: Path) -> None:
    img = load_image(p)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


READERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "obj": (".obj", _read_mesh(read_obj)),
    "obj-polygons": (".obj", _read_mesh(read_obj)),
    "ply-ascii-polygons": (".ply", _read_mesh(read_ply)),
    "ply-binary-polygons": (".ply", _read_mesh(read_ply)),
    "ply-ascii": (".ply", _read_mesh(read_ply)),
    "ply-binary": (".ply", _read_mesh(read_ply)),
    "vrml": (".wrl", _read_mesh(read_vrml)),
    "vrml-space": (".wrl", _read_mesh(read_vrml)),
    "bnt": (".bnt", _read_bnt),
    "bnd": (".bnd", _read_landmarks(read_bnd)),
    "lm2": (".lm2", _read_landmarks(read_lm2)),
    "lm3": (".lm3", _read_landmarks(read_lm3)),
    "png": (".png", _read_image),
    "jpg": (".jpg", _read_image),
}
TEXT = {"obj", "obj-polygons", "ply-ascii", "ply-ascii-polygons", "vrml", "vrml-space"} | {
    "bnd",
    "lm2",
    "lm3",
}


# --------------------------------------------------------------------------- variants
_FLOAT = re.compile(rb"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?")
_INT = re.compile(rb"(?<![\w.\-])\d+(?![\w.])")


def _replace_nth(data: bytes, pattern: re.Pattern[bytes], which: float, new: bytes) -> bytes:
    found = list(pattern.finditer(data))
    if not found:
        return data
    m = found[min(int(which * len(found)), len(found) - 1)]
    return data[: m.start()] + new + data[m.end() :]


def _generic(good: bytes) -> Iterator[Variant]:
    n = len(good)
    yield "empty", b""
    for frac in (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98):
        yield f"truncate-{frac}", good[: int(n * frac)]
    for k in (1, 2, 3, 7, 13):
        yield f"truncate-last-{k}", good[:-k]
    for seed in range(8):
        rng = np.random.default_rng(seed)
        flipped = bytearray(good)
        for pos in rng.integers(0, n, (1, 3, 16, 64)[seed % 4]):
            flipped[pos] ^= int(rng.integers(1, 256))
        yield f"flip-{seed}", bytes(flipped)
    yield "zero-filled", b"\0" * n
    yield "zero-tail", good[: n // 2] + b"\0" * (n - n // 2)
    yield "zero-block", good[: n // 3] + b"\0" * 64 + good[n // 3 + 64 :]
    yield "garbage", np.random.default_rng(9).integers(0, 256, n, dtype=np.uint8).tobytes()
    yield "doubled", good + good
    yield "one-byte", good[:1]


def _text(good: bytes) -> Iterator[Variant]:
    text = good.decode("ascii")
    for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
        yield f"encoding-{enc}", text.encode(enc)
    yield "utf8-bom", b"\xef\xbb\xbf" + good
    yield "latin1-byte", good[: len(good) // 2] + b"\xe9" + good[len(good) // 2 :]
    yield "crlf", good.replace(b"\n", b"\r\n")
    yield "cr-only", good.replace(b"\n", b"\r")
    yield "tabs", good.replace(b" ", b"\t")
    lines = good.split(b"\n")
    for frac in (0.3, 0.6, 0.95):
        k = max(1, int(len(lines) * frac))
        yield f"cut-at-line-{frac}", b"\n".join(lines[:k]) + b"\n"
        cut = good[: int(len(good) * frac)]
        yield f"cut-plus-newline-{frac}", cut + b"\n"
    for which in (0.0, 0.5, 0.99):
        for new in (b"nan", b"inf", b"-inf", b"1e999", b"1e300", b"-1e39", b"0x1p3", b"1..2"):
            yield f"float-{which}-{new.decode()}", _replace_nth(good, _FLOAT, which, new)
        for new in (b"4294967296", b"4294967297", b"2147483648", b"100000000000000000000000"):
            yield f"int-{which}-{new.decode()}", _replace_nth(good, _INT, which, new)
        for new in (b"-2", b"-9223372036854775809", b"3.5", b"1e3", b"99999"):
            yield f"int-{which}-{new.decode()}", _replace_nth(good, _INT, which, new)


def _png_size(png: bytes, w: int, h: int) -> bytes:
    """``png`` with its IHDR declaring ``w x h`` (CRC fixed, so only the size is wrong)."""
    ihdr = png[12:16] + struct.pack(">II", w, h) + png[24:29]
    return png[:8] + png[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _jpg_size(jpg: bytes, w: int, h: int) -> bytes:
    i = jpg.find(b"\xff\xc0")
    return jpg[: i + 5] + struct.pack(">HH", h, w) + jpg[i + 9 :]


def _declared(fmt: str, good: bytes) -> Iterator[Variant]:
    """Huge, zero, negative and off-by-one declared counts and sizes."""
    if fmt.startswith("ply"):
        for element in (b"vertex", b"face"):
            m = re.search(rb"element " + element + rb" (\d+)", good)
            assert m is not None
            count = int(m.group(1))
            for new in (10**12, 3 * 10**8, 2**32, 2**31, count + 1, count - 1, 0, -1):
                head = b"element " + element + b" " + str(new).encode()
                yield f"count-{element.decode()}-{new}", good.replace(m.group(0), head, 1)
        if fmt.startswith("ply-ascii"):
            yield "list-count-255", good.replace(b"\n3 ", b"\n255 ", 1)
        yield "unknown-type", good.replace(b"property float x", b"property quad x", 1)
        yield (
            "format-unknown",
            re.sub(rb"format \S+", b"format binary_middle_endian", good, count=1),
        )
        yield "no-end-header", good.replace(b"end_header", b"end_hdr", 1)
    elif fmt == "bnt":
        nrows, ncols, zmin, name_len = struct.unpack_from("<HHdH", good)
        rest = good[14 + name_len + 4 :]
        name = good[14 : 14 + name_len]
        for r, c in ((20000, 20000), (65535, 65535), (nrows + 1, ncols), (0, ncols)):
            n = (5 * r * c) & 0xFFFFFFFF
            head = struct.pack("<HHdH", r, c, zmin, name_len) + name + struct.pack("<I", n)
            yield f"grid-{r}x{c}", head + rest
        yield "name-length-65535", struct.pack("<HHdH", nrows, ncols, zmin, 65535) + good[14:]
        yield "zmin-nan", struct.pack("<HHdH", nrows, ncols, float("nan"), name_len) + good[14:]
    elif fmt in ("lm2", "lm3"):
        m = re.search(rb"(\d+) landmarks", good)
        assert m is not None
        for new in (b"1000000000", b"0", b"6", b"4", b"99999999999999999999999"):
            yield f"count-{new.decode()}", good.replace(m.group(0), new + b" landmarks", 1)
    elif fmt == "png":
        for w, h in ((30000, 30000), (10000, 10000), (9000, 9000), (0, 0), (2**31 - 1, 1)):
            yield f"declares-{w}x{h}", _png_size(good, w, h)
    elif fmt == "jpg":
        for w, h in ((60000, 60000), (65535, 65535), (0, 0), (9000, 9000)):
            yield f"declares-{w}x{h}", _jpg_size(good, w, h)


def variants(fmt: str, good: bytes) -> Iterator[Variant]:
    """Every corrupted variant of ``good`` for ``fmt`` (deterministic)."""
    yield from _generic(good)
    if fmt in TEXT:
        yield from _text(good)
    yield from _declared(fmt, good)
    for kind in SPECIAL:
        yield kind, kind


def _must_fail(fmt: str, good: bytes, name: str, data: bytes | str) -> bool:
    """Truncations a format lets a reader see: such a variant must not read."""
    if not isinstance(data, bytes) or not name.startswith("truncate"):
        return False
    removed = good[len(data) :]
    if not removed.strip():
        return False  # only trailing whitespace went: the file is whole
    if fmt.startswith(("ply", "vrml")) or fmt in ("bnt", "bnd"):
        return True  # declared counts, the size rule, unclosed brackets, 83 rows + final newline
    return fmt.startswith("obj") and not data.endswith(b"\n")  # cut mid-line


def _make(path: Path, data: bytes | str) -> None:
    if data == "special:directory":
        path.mkdir()
    elif data == "special:symlink-loop":
        path.symlink_to(path.name)
    elif data == "special:dangling-symlink":
        path.symlink_to(path.parent / "no-such-target")
    elif data == "special:fifo":
        os.mkfifo(path)
    else:
        assert isinstance(data, bytes)
        path.write_bytes(data)


def _run(read: Callable[[Path], None], path: Path, name: str) -> tuple[str | None, bool, int]:
    """``(problem, read_ok, peak_bytes)`` of one read: a ``MeshReadError`` that does not name
    the file is a problem; any other exception fails the test at once, with the variant's name
    added to its traceback."""
    problem = None
    ok = False
    tracemalloc.start()
    try:
        read(path)
        ok = True
    except MeshReadError as exc:
        if str(path) not in str(exc):
            problem = f"error does not name the file: {exc}"
    except Exception as exc:
        exc.add_note(f"malformed-input variant: {name} ({path.name})")
        raise
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return problem, ok, peak


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", sorted(READERS))
def test_every_corrupted_variant_reads_or_names_the_file(fmt: str, tmp_path: Path) -> None:
    suffix, read = READERS[fmt]
    good = _good(fmt, tmp_path)
    ok_path = tmp_path / f"good{suffix}"
    ok_path.write_bytes(good)
    assert _run(read, ok_path, "valid")[:2] == (None, True), "the valid file must read"
    problems: list[str] = []
    count = 0
    for i, (name, data) in enumerate(variants(fmt, good)):
        path = tmp_path / f"v{i:03d}{suffix}"
        _make(path, data)
        problem, ok, peak = _run(read, path, name)
        count += 1
        if problem is not None:
            problems.append(f"{name}: {problem}"[:400])
        if peak > MEMORY_LIMIT:
            problems.append(f"{name}: allocated {peak / 2**20:.0f} MiB at its peak")
        if ok and _must_fail(fmt, good, name, data):
            problems.append(f"{name}: a truncated file ({len(data)} of {len(good)} B) read")
    assert count > 30
    assert problems == [], "\n".join(problems)


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    """The same variants each run, so a failure names a reproducible case."""
    good = _good("ply-ascii", tmp_path)
    assert list(variants("ply-ascii", good)) == list(variants("ply-ascii", good))


def test_bnd_index_beyond_int64_is_a_read_error(tmp_path: Path) -> None:
    """Found by the campaign: ``int(index)`` of 10**23 reached ``np.asarray(..., np.int64)``
    (an OverflowError naming no file); now a "parse" error quoting the index."""
    good = _good("bnd", tmp_path)
    path = tmp_path / "huge.bnd"
    path.write_bytes(_replace_nth(good, _INT, 0.5, b"100000000000000000000000"))
    problem, _, _ = _run(READERS["bnd"][1], path, "bnd index 10**23")
    assert problem is None, problem
