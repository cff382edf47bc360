"""Format parsers and writers: round trips, hand-made files shaped like the real ones, and one
clear error (file named, kind given) for every kind of broken file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mvdata.core import Mesh, MeshReadError
from mvdata.formats import fan_triangulate
from mvdata.formats.bnt import BntGrid, bnt_bytes, bnt_to_mesh, parse_bnt, read_bnt, write_bnt
from mvdata.formats.landmarks import (
    read_bnd,
    read_lm2,
    read_lm3,
    write_bnd,
    write_lm2,
    write_lm3,
)
from mvdata.formats.obj import obj_text, parse_obj, read_obj, write_obj
from mvdata.formats.ply import parse_ply, ply_bytes, read_ply
from mvdata.formats.vrml import parse_vrml, read_vrml, vrml_text, write_vrml
from mvdata.synth.native import depth_grid


def _eq(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b))


def _mesh(n: int = 40, f: int = 60, seed: int = 0, corner_uvs: bool = True) -> Mesh:
    rng = np.random.default_rng(seed)
    v = (rng.normal(size=(n, 3)) * 50).astype(np.float32)
    faces = rng.integers(0, n, size=(f, 3)).astype(np.int32)
    if corner_uvs:
        m = n + 7
        uvs = rng.random((m, 2)).astype(np.float32)
        return Mesh(v, faces, uvs=uvs, uv_faces=rng.integers(0, m, size=(f, 3)).astype(np.int32))
    colors = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    return Mesh(v, faces, vertex_colors=colors, uvs=rng.random((n, 2)).astype(np.float32))


def _raises(kind: str, fn, *args) -> MeshReadError:  # type: ignore[no-untyped-def]
    with pytest.raises(MeshReadError) as ei:
        fn(*args)
    assert ei.value.kind == kind, (ei.value.kind, str(ei.value))
    return ei.value


# --------------------------------------------------------------------------- VRML


@pytest.mark.parametrize(("style", "fmt", "tol"), [("comma", "%.6f", 1e-5), ("space", "%.9g", 0.0)])
def test_vrml_round_trip(tmp_path: Path, style: str, fmt: str, tol: float) -> None:
    m = _mesh()
    p = tmp_path / "a.wrl"
    write_vrml(p, m, "a.bmp", style, fmt, ("one", "two"))  # type: ignore[arg-type]
    r = read_vrml(p)
    assert r.texture_url == "a.bmp"
    np.testing.assert_allclose(r.mesh.vertices, m.vertices, rtol=0, atol=tol)
    assert _eq(r.mesh.faces, m.faces)
    assert _eq(r.mesh.uv_faces, m.uv_faces)
    assert r.mesh.uvs is not None and m.uvs is not None
    np.testing.assert_allclose(r.mesh.uvs, m.uvs, atol=1e-6)
    text = p.read_text()
    assert (", " in text.split("point [")[1].split("]")[0]) == (style == "comma")


def test_vrml_colors_round_trip() -> None:
    m = _mesh(corner_uvs=False)
    r = parse_vrml(vrml_text(m, style="space").encode())
    assert r.mesh.vertex_colors is not None
    assert _eq(r.mesh.vertex_colors, m.vertex_colors)
    assert _eq(r.mesh.uv_faces, m.faces)


BU_LIKE = """#VRML V2.0 utf8
# Produced by 3DMD
# a header of a length the reader must not assume

DEF Head Transform {
  children [ Shape {
    appearance Appearance { texture ImageTexture { url "F0001_NE00WH_F3D.bmp" } }
    geometry DEF Face IndexedFaceSet {
      creaseAngle 1.0   solid FALSE
      texCoord DEF tc TextureCoordinate { point [ 0 0, 1 0,
        1 1, 0 1,
        0.5 0.5 ] }
      coord DEF co Coordinate {
        point [
          0.0, 0.0, 0.0,
          1.0, 0.0, 0.0, 1.0, 1.0, 0.0,
          0.0, 1.0, 0.0,   # a comment inside the block
          0.5 1.5 0.25
        ]
      }
      coordIndex [ 0, 1, 2, 3, -1, 3 2 4 -1 ]
      texCoordIndex [
        0, 1, 2, 3, -1,
        3, 2, 4, -1
      ]
    }
  } ]
}
"""


def test_vrml_bu_like_polygons_and_nodes() -> None:
    r = parse_vrml(BU_LIKE.encode(), "bu.wrl")
    assert r.texture_url == "F0001_NE00WH_F3D.bmp"
    assert r.mesh.vertices.shape == (5, 3)
    assert r.mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 4]]
    assert r.mesh.uv_faces is not None and r.mesh.uv_faces.tolist() == r.mesh.faces.tolist()
    np.testing.assert_array_equal(r.mesh.vertices[4], [0.5, 1.5, 0.25])


def test_fan_triangulate_matches_loop() -> None:
    rng = np.random.default_rng(1)
    polys = [list(rng.integers(0, 99, k)) for k in rng.integers(3, 8, 50)]
    flat = np.array([i for p in polys for i in (*p, -1)])
    ref = [[p[0], p[i], p[i + 1]] for p in polys for i in range(1, len(p) - 1)]
    tris, _ = fan_triangulate(flat, "x")
    assert tris.tolist() == ref


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (BU_LIKE.encode()[: BU_LIKE.index("0.0, 1.0, 0.0")], "truncated"),
        (b"\x89\x13garbage\xff\xfe binary", "bad-magic"),
        (b"#VRML V1.0 ascii\nSeparator {}", "parse"),
        (b"#VRML V3.0 utf8\nSeparator {}", "bad-magic"),
        (BU_LIKE.encode("utf-16"), "encoding"),
        (BU_LIKE.replace("0.5 1.5 0.25", "0.5 nan 0.25").encode(), "nan"),
        (BU_LIKE.replace("0.5 1.5 0.25", "0.5 1.5x 0.25").encode(), "parse"),
        (BU_LIKE.replace("3 2 4 -1", "3 2 9 -1").encode(), "parse"),
        (BU_LIKE.replace("3, 2, 4, -1", "3, 2, -1").encode(), "parse"),
        (BU_LIKE.encode() + b"\xff\xfe", "encoding"),
    ],
)
def test_vrml_errors(data: bytes, kind: str) -> None:
    err = _raises(kind, parse_vrml, data, "dir/bad.wrl")
    assert str(err).startswith("dir/bad.wrl: ")


# --------------------------------------------------------------------------- BNT


def _grid(nrows: int = 6, ncols: int = 5) -> BntGrid:
    r, c = np.mgrid[0:nrows, 0:ncols].astype(np.float64)
    z = 10.0 + r * 0.5 - c * 0.25
    z[0, 0] = z[3, 2] = -1e9  # holes: background by z only, x/y keep grid values
    # real files: v grows down the image rows, i.e. falls as the row (and y) rises
    v = (nrows - 1 - r) / (nrows - 1)
    return BntGrid(c * 0.77, r * 0.77, z, c / ncols, v, -1e9, "bs000_N_N_0.png")


def test_bnt_round_trip_bytes(tmp_path: Path) -> None:
    g = _grid()
    p = tmp_path / "a.bnt"
    write_bnt(p, g)
    data = p.read_bytes()
    name = b"bs000_N_N_0.png"
    assert len(data) == 18 + len(name) + 8 * 5 * 6 * 5
    assert data[:2] == (6).to_bytes(2, "little") and data[14 : 14 + len(name)] == name
    r = read_bnt(p)
    for a in ("x", "y", "z", "u", "v"):
        assert _eq(getattr(r, a), getattr(g, a))
    assert r.texture_name == g.texture_name and r.zmin == -1e9
    assert bnt_bytes(r) == data


def test_bnt_mesh_matches_reference_loop() -> None:
    g = _grid()
    m = bnt_to_mesh(g)
    valid = g.z != g.zmin
    assert m.num_vertices == int(valid.sum())
    idx = -np.ones(valid.shape, int)
    idx[valid] = np.arange(valid.sum())
    ref = set()
    for r in range(5):
        for c in range(4):
            a, b, cc, d = idx[r, c], idx[r, c + 1], idx[r + 1, c], idx[r + 1, c + 1]
            if min(a, b, cc, d) >= 0:
                ref |= {(a, b, d), (a, d, cc)}
    assert {tuple(f) for f in m.faces.tolist()} == ref
    # row 0 is the bottom: y grows with the row; triangles face +z (counter-clockwise)
    v = m.vertices[m.faces]
    normal_z = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2]
    assert (normal_z > 0).all()
    assert m.uvs is not None and m.uvs.shape == (m.num_vertices, 2)
    # the file's v grows down the image; the mesh's (OpenGL) v grows up, with y
    np.testing.assert_allclose(m.uvs[:, 0], g.u[valid])
    np.testing.assert_allclose(m.uvs[:, 1], 1.0 - g.v[valid], atol=1e-7)
    np.testing.assert_allclose(m.uvs[:, 1], m.vertices[:, 1] / (5 * 0.77), atol=1e-6)


def test_bnt_errors() -> None:
    good = bnt_bytes(_grid())
    _raises("empty", parse_bnt, b"", "e.bnt")
    _raises("truncated", parse_bnt, good[:10], "t.bnt")
    _raises("truncated", parse_bnt, good[:-8], "t.bnt")
    err = _raises("wrong-size", parse_bnt, good + b"\0" * 8, "w.bnt")
    assert "w.bnt" in str(err)
    bad_n = bytearray(good)
    bad_n[14 + 15] ^= 1  # N no longer 5 * rows * cols
    _raises("bad-magic", parse_bnt, bytes(bad_n), "m.bnt")
    _raises("bad-magic", parse_bnt, b"\0\0\0\0" + good[4:], "m.bnt")
    _raises("bad-magic", parse_bnt, "garbage text é".encode("utf-16") * 40, "g.bnt")
    g = _grid()
    g.z[2, 2] = np.nan
    _raises("nan", parse_bnt, bnt_bytes(g), "n.bnt")
    g = _grid()
    g.z[:] = g.zmin
    _raises("empty", parse_bnt, bnt_bytes(g), "bg.bnt")


# --------------------------------------------------------------------------- landmarks


def test_bnd_round_trip_and_trailing_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(83, 3)) * 40
    idx = rng.integers(0, 5000, 83)
    for trailing in (False, True):
        p = tmp_path / f"{trailing}.bnd"
        write_bnd(p, pts, idx, trailing_empty_line=trailing)
        assert p.read_bytes().split(b"\n")[0].count(b"\t\t") == 1
        lm = read_bnd(p)
        np.testing.assert_allclose(lm.points, pts, atol=1e-6)
        assert lm.indices is not None and _eq(lm.indices, idx)
        assert len(lm.labels) == 83


def test_lm2_lm3_crlf_variable_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for n in (22, 19, 24):
        labels = tuple(f"Label {i}" for i in range(n))
        p3 = rng.normal(size=(n, 3)) * 30
        p2 = rng.random((n, 2)) * 500
        write_lm3(tmp_path / "a.lm3", p3, labels)
        write_lm2(tmp_path / "a.lm2", p2, labels)
        raw = (tmp_path / "a.lm3").read_bytes()
        assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
        lm3 = read_lm3(tmp_path / "a.lm3")
        lm2 = read_lm2(tmp_path / "a.lm2")
        assert lm3.labels == labels and lm2.labels == labels
        np.testing.assert_allclose(lm3.points, p3, rtol=1e-5, atol=1e-4)  # %g: 6 digits
        np.testing.assert_allclose(lm2.points, p2, rtol=1e-5, atol=1e-3)


def test_landmark_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.lm3"
    p.write_bytes("# 3D Landmark File\r\n\r\n3 landmarks:\r\nA\r\n1 2 3\r\n".encode("utf-16"))
    _raises("encoding", read_lm3, p)
    p.write_bytes(b"# 3D Landmark File\r\n\r\n3 landmarks:\r\nA\r\n1 2 3\r\n")
    err = _raises("truncated", read_lm3, p)
    assert str(p) in str(err)
    p.write_bytes(b"# 3D Landmark File\r\n\r\n1 landmarks:\r\nA\r\n1 nan 3\r\n")
    _raises("nan", read_lm3, p)
    p.write_bytes(b"")
    _raises("empty", read_lm3, p)
    p.write_bytes(b"# 2D Landmark File\r\n")
    _raises("bad-magic", read_lm3, p)
    b = tmp_path / "x.bnd"
    b.write_bytes(b"0\t\t1 2\n")
    _raises("parse", read_bnd, b)


# --------------------------------------------------------------------------- PLY


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path: Path, binary: bool) -> None:
    m = _mesh(corner_uvs=False)
    p = tmp_path / "a.ply"
    p.write_bytes(ply_bytes(m, binary, "tex.png"))
    for r in (read_ply(p), parse_ply(p.read_bytes(), str(p))):  # fast path and plyfile path
        assert _eq(r.mesh.vertices, m.vertices)
        assert _eq(r.mesh.faces, m.faces)
        assert r.mesh.vertex_colors is not None
        assert _eq(r.mesh.vertex_colors, m.vertex_colors)
        assert r.mesh.uvs is not None and m.uvs is not None
        assert _eq(r.mesh.uvs, m.uvs)
        assert r.texture_file == "tex.png"


def test_ply_other_property_names_and_quads() -> None:
    text = (
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nproperty float texture_u\nproperty float texture_v\n"
        "property float red\nproperty float green\nproperty float blue\n"
        "element face 2\nproperty list uchar int vertex_index\nend_header\n"
        "0 0 0 0 0 1 0 0\n1 0 0 1 0 0 1 0\n1 1 0 1 1 0 0 1\n0 1 0 0 1 1 1 1\n2 2 2 .5 .5 0 0 0\n"
        "4 0 1 2 3\n3 2 4 3\n"
    )
    r = parse_ply(text.encode(), "q.ply")
    assert r.mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [2, 4, 3]]
    assert r.mesh.uvs is not None and r.mesh.uvs[4].tolist() == [0.5, 0.5]
    assert r.mesh.vertex_colors is not None and r.mesh.vertex_colors[0].tolist() == [255, 0, 0]


def test_ply_errors(tmp_path: Path) -> None:
    m = _mesh(corner_uvs=False)
    good = ply_bytes(m, True)
    p = tmp_path / "b.ply"
    for data, kind in [
        (b"", "empty"),
        (good[: len(good) - 20], "truncated"),
        (ply_bytes(m, False)[:-30], "truncated"),
        (b"\x89PNG garbage", "bad-magic"),
        (ply_bytes(m, False).decode().encode("utf-16"), "encoding"),
        (b"ply\nformat ascii 1.0\nelement vertex 1", "truncated"),
    ]:
        p.write_bytes(data)
        err = _raises(kind, read_ply, p)
        assert str(p) in str(err)
    bad = Mesh(m.vertices.copy(), m.faces)
    bad.vertices[3, 1] = np.nan
    p.write_bytes(ply_bytes(bad, True))
    _raises("nan", read_ply, p)


# --------------------------------------------------------------------------- OBJ


def test_obj_round_trip_keeps_order_and_corner_uvs(tmp_path: Path) -> None:
    m = _mesh()
    p = tmp_path / "m.obj"
    write_obj(p, m, "m.jpg")
    assert "map_Kd m.jpg" in (tmp_path / "m.mtl").read_text()
    r = read_obj(p)
    assert r.mtllib == "m.mtl"
    np.testing.assert_allclose(r.mesh.vertices, m.vertices, atol=1e-6)
    assert _eq(r.mesh.faces, m.faces)
    assert _eq(r.mesh.uv_faces, m.uv_faces)
    assert r.mesh.uvs is not None and m.uvs is not None
    np.testing.assert_allclose(r.mesh.uvs, m.uvs, atol=1e-6)


def test_obj_polygons_negative_indices_normals() -> None:
    text = (
        "# x\nmtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\ng grp\nusemtl m\ns 1\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\nf -4/-4/1 -2/-2/1 -1/-1/1\n"
    )
    r = parse_obj(text.encode())
    assert r.mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    assert r.mesh.uv_faces is not None and r.mesh.uv_faces.tolist() == r.mesh.faces.tolist()
    r2 = parse_obj(b"v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nf 1//1 2//1 3//1\n")
    assert r2.mesh.uvs is None
    assert r2.mesh.vertex_colors is not None and r2.mesh.vertex_colors.tolist()[0] == [255, 0, 0]


def test_obj_errors() -> None:
    good = obj_text(_mesh()).encode()
    cut = good[: good.index(b"\nvt ")]
    for data, kind in [
        (b"", "empty"),
        (cut, "truncated"),
        (good.decode().encode("utf-16"), "encoding"),
        (b"\x89\x00\x01binary", "encoding"),
        (b"hello world\n", "parse"),
        (b"v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "nan"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "parse"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "parse"),
    ]:
        err = _raises(kind, parse_obj, data, "f/x.obj")
        assert str(err).startswith("f/x.obj: ")


# --------------------------------------------------------------------------- depth grid


def test_depth_grid_plane_exact_and_nearest_wins() -> None:
    # two parallel planes over the same square: the nearer (+z) one must win every cell
    xs, ys = np.meshgrid(np.linspace(0, 20, 6), np.linspace(0, 15, 5))
    pts = np.stack([xs.ravel(), ys.ravel()], 1)
    quads = [
        (r * 6 + c, r * 6 + c + 1, (r + 1) * 6 + c + 1, (r + 1) * 6 + c)
        for r in range(4)
        for c in range(5)
    ]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]

    def plane(off: float) -> np.ndarray:
        return np.c_[pts, 0.3 * pts[:, 0] - 0.2 * pts[:, 1] + off]

    v = np.concatenate([plane(0.0), plane(5.0)])
    f = np.concatenate([tris, np.array(tris) + len(pts)])
    uv = np.concatenate([pts / [20, 15], pts / [20, 15]])
    g = depth_grid(Mesh(v, f, uvs=uv))
    assert g.covered.all()  # the square is fully covered at 0.77 mm
    r, c = np.mgrid[0 : g.z.shape[0], 0 : g.z.shape[1]]
    gx, gy = g.x0 + c * 0.77, g.y0 + r * 0.77
    np.testing.assert_allclose(g.z, 0.3 * gx - 0.2 * gy + 5.0, atol=1e-4)
    np.testing.assert_allclose(g.u, gx / 20, atol=1e-5)
    np.testing.assert_allclose(g.v, gy / 15, atol=1e-5)


def test_obj_block_fast_path_agrees_with_the_line_by_line_path() -> None:
    """A regular OBJ takes the numpy block classifier; the same file with CRLF line ends, an
    indented line or interleaved lines takes the line-by-line path: all must give one mesh."""
    from mvdata.formats.obj import _classify_blocks

    rng = np.random.default_rng(0)
    verts = rng.normal(size=(40, 3)).astype(np.float32)
    faces = rng.integers(0, 40, size=(60, 3)).astype(np.int32)
    mesh = Mesh(verts, faces, uvs=rng.random((40, 2)).astype(np.float32))
    text = obj_text(mesh, "skin.mtl")
    regular = text.encode()
    assert _classify_blocks(regular) is not None
    lines = text.split("\n")
    first_f = next(i for i, ln in enumerate(lines) if ln.startswith("f "))
    variants = {
        "crlf": text.replace("\n", "\r\n").encode(),
        "indented": "\n".join(["  " + ln if ln.startswith("v ") else ln for ln in lines]).encode(),
        "interleaved": "\n".join(
            lines[:first_f] + [lines[first_f + 1], "v 0 0 0"] + lines[first_f + 2 :]
        ).encode(),
    }
    ref = parse_obj(regular, "regular.obj")
    assert ref.mtllib == "skin.mtl"
    for name, data in variants.items():
        assert _classify_blocks(data) is None, name
        got = parse_obj(data, f"{name}.obj")
        assert got.mtllib == "skin.mtl", name
        n = len(ref.mesh.vertices)
        np.testing.assert_array_equal(got.mesh.vertices[:n], ref.mesh.vertices, err_msg=name)
        np.testing.assert_allclose(got.mesh.uvs, ref.mesh.uvs, err_msg=name)
    np.testing.assert_array_equal(parse_obj(variants["crlf"]).mesh.faces, ref.mesh.faces)


def test_obj_face_fast_path_falls_back_exactly() -> None:
    """The one-pass face parser takes only all-triangle files; a quad next to a two-corner face
    (same number of numbers as two triangles), ``v//vn`` corners and a 0 index go the general
    way and give what it gives (fan triangles, or an error: a face of two corners is a damaged
    line, never dropped silently)."""
    from mvdata.formats.obj import _Block, _triangle_corners

    head = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
    tri = _triangle_corners(_Block(b"f 1 2 3\nf 1 3 4", 2), 1)
    assert tri is not None and tri.ravel().tolist() == [1, 2, 3, 1, 3, 4]
    assert _triangle_corners(_Block(b"f 1 2 3 4\nf 1 2", 2), 1) is None
    quad = parse_obj((head + "f 1 2 3 4\nf 1 2 3\n").encode()).mesh
    assert quad.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2]]  # quad fanned
    with pytest.raises(MeshReadError, match="2 corners"):
        parse_obj((head + "f 1 2 3 4\nf 1 2\n").encode())
    normals = parse_obj((head + "vn 0 0 1\nf 1//1 2//1 3//1\nf 1//1 3//1 4//1\n").encode()).mesh
    assert normals.faces.tolist() == [[0, 1, 2], [0, 2, 3]] and normals.uvs is None
    with pytest.raises(MeshReadError, match="out of range"):
        parse_obj((head + "f 1 2 3\nf 0 2 3\n").encode())


# --------------------------------------------------------------------------- issue 11: truncation,
# declared sizes, indices beyond int32, wrong reasons


def _tri_obj(n_faces: int = 40) -> bytes:
    rng = np.random.default_rng(2)
    m = Mesh(
        rng.normal(size=(30, 3)).astype(np.float32),
        rng.integers(0, 30, (n_faces, 3)).astype(np.int32),
    )
    return obj_text(m).encode()


def test_obj_truncation_is_an_error() -> None:
    """Half an OBJ loaded as a smaller mesh with no error (176 of 6,736 faces, written as ok):
    a file cut mid-line, a dangling ``f`` line, MeshLab's declared counts and a face beyond the
    defined vertices are errors now; a complete last line without a newline is refused as cut."""
    good = _tri_obj()
    assert parse_obj(good).mesh.num_faces == 40
    half = good[: good.index(b"\nf ") + (len(good) - good.index(b"\nf ")) // 2]
    assert not half.endswith(b"\n")
    err = _raises("truncated", parse_obj, half, "s/half.obj")
    assert str(err).startswith("s/half.obj: ") and "without a newline" in str(err)
    last_cut = good[:-3]  # "f 12 7 30\n" -> "f 12 7 3": a different, valid-looking vertex
    _raises("truncated", parse_obj, last_cut, "s/cut.obj")
    dangling = good + b"f 1 2\n"
    assert "2 corners" in str(_raises("parse", parse_obj, dangling, "s/d.obj"))
    _raises("parse", parse_obj, good + b"f 1 2 31\n", "s/beyond.obj")  # 30 vertices defined
    declared = b"# Vertices: 30\n# Faces: 41\n" + good
    assert "Faces: 41" in str(_raises("truncated", parse_obj, declared, "s/m.obj"))
    assert parse_obj(b"# Vertices: 30\n# Faces: 40\n" + good).mesh.num_faces == 40


def test_ply_declared_sizes_are_checked_before_allocating(tmp_path: Path) -> None:
    """A 10^12-vertex header was a 13.6 TiB allocation (MemoryError naming no file), a 3 x 10^8
    face header 2.45 GB before failing; an ASCII count off by one failed or lost a face."""
    import tracemalloc

    m = _mesh(corner_uvs=False)
    binary, ascii_ = ply_bytes(m, True), ply_bytes(m, False)
    p = tmp_path / "big.ply"
    cases = [
        (binary.replace(b"element vertex 40", b"element vertex 1000000000000"), "truncated"),
        (binary.replace(b"element face 60", b"element face 300000000"), "truncated"),
        (ascii_.replace(b"element vertex 40", b"element vertex 1000000000000"), "truncated"),
        (ascii_.replace(b"element face 60", b"element face 300000000"), "truncated"),
        (ascii_.replace(b"element face 60", b"element face 61"), "truncated"),
        (ascii_.replace(b"element face 60", b"element face 59"), "wrong-size"),  # a face lost
        (ascii_.replace(b"element vertex 40", b"element vertex 39"), "wrong-size"),
        (binary.replace(b"element face 60", b"element face 59"), "wrong-size"),
        (ascii_[:-2], "truncated"),  # last index cut mid-number, no newline
    ]
    for data, kind in cases:
        p.write_bytes(data)
        tracemalloc.start()
        try:
            err = _raises(kind, read_ply, p)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert str(err).startswith(f"{p}: ") and peak < 16 * 2**20, (kind, peak, str(err))
        _raises(kind, parse_ply, data, "x.ply")  # the same without the fast paths' file


def test_face_index_beyond_int32_is_refused_as_written(tmp_path: Path) -> None:
    """An index of 2**32 in VRML or ASCII PLY wrapped to 0 in the int32 cast and was accepted;
    a coordIndex of 10**23 was reported as "refers to vertex 3447". Ranges are checked before
    the cast and the index is quoted as written."""
    m = Mesh(_mesh().vertices, _mesh().faces)  # no UVs: nothing else can catch the index
    wrl = vrml_text(m).encode()
    for big in (b"4294967296", b"100000000000000000000000"):
        bad = wrl.replace(b"coordIndex [\n", b"coordIndex [\n" + big + b", 1, 2, -1,\n", 1)
        err = _raises("parse", parse_vrml, bad, "a/b.wrl")
        assert big.decode() in str(err) and "40 exist" in str(err), str(err)
    ascii_ = ply_bytes(m, False)
    lines = ascii_.split(b"\n")
    first_face = lines.index(b"end_header") + 1 + m.num_vertices
    lines[first_face] = b"3 4294967296 1 2"
    p = tmp_path / "wrap.ply"
    p.write_bytes(b"\n".join(lines))
    for err in (_raises("parse", read_ply, p), _raises("parse", parse_ply, p.read_bytes(), "w")):
        assert "4294967296" in str(err)
    obj = obj_text(m).encode() + b"f 1 2 4294967297\n"
    _raises("parse", parse_obj, obj, "o.obj")
    quad = obj_text(m).encode() + b"f 1 2 3 100000000000000000000000\n"  # the polygon path
    _raises("parse", parse_obj, quad, "o.obj")


def test_vrml_unclosed_nodes_are_truncated() -> None:
    """A VRML file cut after its last number list (its closing braces lost) read as whole."""
    wrl = vrml_text(_mesh()).encode()
    for cut in (2, 6, 12):
        err = _raises("truncated", parse_vrml, wrl[:-cut], "t.wrl")
        assert "never closed" in str(err)
    assert parse_vrml(wrl[:-1], "t.wrl").mesh.num_faces == 60  # only the final newline lost
    _raises("parse", parse_vrml, wrl + b"}\n", "t.wrl")
    # brackets inside comments and strings do not count
    commented = wrl.replace(b"#VRML V2.0 utf8\n", b"#VRML V2.0 utf8\n# a { b [\n", 1)
    assert parse_vrml(commented, "t.wrl").mesh.num_faces == 60


def test_wrong_reasons_are_named_right(tmp_path: Path) -> None:
    """A zero-filled .wrl was called "UTF-16 encoded"; values beyond float32 (1e300) became inf
    vertices in a mesh that read as valid."""
    for name, read in (("z.wrl", read_vrml), ("z.obj", read_obj), ("z.ply", read_ply)):
        p = tmp_path / name
        p.write_bytes(b"\0" * 4096)
        err = _raises("empty", read, p)
        assert "zero" in str(err) and "UTF-16" not in str(err)
    err = _raises("empty", parse_vrml, b"\0" * 100, "z.wrl")
    utf16 = vrml_text(_mesh()).encode("utf-16-le")  # no byte-order mark
    _raises("encoding", parse_vrml, utf16, "u.wrl")
    _raises("nan", parse_obj, b"v 1e300 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "f.obj")
    big = vrml_text(_mesh()).replace("point [\n", "point [\n1e300, 0, 0,\n", 1)
    _raises("nan", parse_vrml, big.encode(), "f.wrl")


@pytest.mark.timeout(30)  # before the fix, reading the FIFO blocked forever
def test_non_files_are_refused_with_their_reason(tmp_path: Path) -> None:
    """A FIFO in place of a mesh blocked the reader forever; a symlink loop raised OSError."""
    import os

    fifo = tmp_path / "pipe.obj"
    os.mkfifo(fifo)
    assert "FIFO" in str(_raises("io", read_obj, fifo))
    loop = tmp_path / "loop.ply"
    loop.symlink_to(loop.name)
    assert "loop" in str(_raises("io", read_ply, loop))
    dangling = tmp_path / "gone.wrl"
    dangling.symlink_to(tmp_path / "nowhere.wrl")
    assert "dangling" in str(_raises("missing", read_vrml, dangling))
    (tmp_path / "dir.obj").mkdir()
    assert "directory" in str(_raises("io", read_obj, tmp_path / "dir.obj"))


def test_lm3_count_must_match_the_rows(tmp_path: Path) -> None:
    """A .lm3 announcing fewer landmarks than it holds read the first ones silently."""
    labels = tuple(f"Label {i}" for i in range(5))
    p = tmp_path / "a.lm3"
    write_lm3(p, np.zeros((5, 3)), labels)
    text = p.read_text().replace("5 landmarks:", "4 landmarks:")
    p.write_text(text)
    with pytest.raises(MeshReadError, match="4 landmarks announced") as ei:
        read_lm3(p)
    assert ei.value.kind == "wrong-size" and str(ei.value).startswith(str(p))


def test_bnd_cut_inside_its_last_row_is_truncated(tmp_path: Path) -> None:
    """A .bnd cut inside a number of its last row read with a wrong value."""
    p = tmp_path / "a.bnd"
    write_bnd(p, np.full((83, 3), 12.345678), np.arange(83))
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(MeshReadError, match="cut short") as ei:
        read_bnd(p)
    assert ei.value.kind == "truncated"
    p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:40]))
    with pytest.raises(MeshReadError, match="40 landmark rows"):
        read_bnd(p)


# --------------------------------------------------------------------------- edge cases of the specs

_TRI_WRL = (
    "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet {\n"
    "  coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] }\n  coordIndex [ %s ]\n"
    "  texCoord TextureCoordinate { point [ %s ] }\n  texCoordIndex [ %s ]\n} }\n"
)


@pytest.mark.parametrize("empty", ["", " ", "\n  \n"])
def test_vrml_empty_lists(empty: str) -> None:
    """VRML97: an empty ``texCoordIndex`` means ``coordIndex`` indexes the texCoords; an empty
    texCoord list is no UVs; an empty ``coordIndex`` or ``point`` is an "empty" error. (numpy
    reads whitespace alone as ``[0]`` or ``[-1.]``: none of that may reach the mesh.)"""
    full = parse_vrml((_TRI_WRL % ("0 1 2 -1", "0 0, 1 0, 0 1", "0 1 2 -1")).encode()).mesh
    m = parse_vrml((_TRI_WRL % ("0 1 2 -1", "0 0, 1 0, 0 1", empty)).encode()).mesh
    assert m.uv_faces is not None and full.uv_faces is not None
    assert _eq(m.uv_faces, full.uv_faces) and _eq(m.uvs, full.uvs)
    no_uv = parse_vrml((_TRI_WRL % ("0 1 2 -1", empty, empty)).encode()).mesh
    assert no_uv.uvs is None and no_uv.uv_faces is None
    _raises("empty", parse_vrml, (_TRI_WRL % (empty, "0 0", "")).encode(), "e.wrl")
    no_points = _TRI_WRL.replace("0 0 0, 1 0 0, 0 1 0", empty) % ("0 1 2 -1", "", "")
    _raises("empty", parse_vrml, no_points.encode(), "e.wrl")


def _ply_head(face_props: str, faces: int = 1, vertex_props: str = "x y z") -> bytes:
    props = "".join(f"property float {p}\n" for p in vertex_props.split())
    return (
        f"ply\nformat ascii 1.0\ncomment TextureFile t.png\nelement vertex 4\n{props}"
        f"element face {faces}\n{face_props}end_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    ).encode()


def test_ply_meshlab_per_corner_texcoord() -> None:
    """MeshLab's ``property list uchar float texcoord`` on faces: one u v pair per corner,
    fan-triangulated with the face; all-empty lists mean no UVs; a wrong length is an error."""
    lists = "property list uchar int vertex_indices\nproperty list uchar float texcoord\n"
    tri = parse_ply(_ply_head(lists, 2) + b"3 0 1 2 6 0 0 1 0 1 1\n3 0 2 3 6 0 0 1 1 0 1\n")
    m = tri.mesh
    assert tri.texture_file == "t.png" and m.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert m.uv_faces is not None and m.uvs is not None
    assert m.uv_faces.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert m.uvs[m.uv_faces[1]].tolist() == [[0, 0], [1, 1], [0, 1]]
    quad = parse_ply(_ply_head(lists) + b"4 0 1 2 3 8 0 0 1 0 1 1 0 1\n").mesh
    assert quad.uvs is not None and quad.uv_faces is not None
    assert _eq(quad.uvs[quad.uv_faces], [[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]])
    assert parse_ply(_ply_head(lists) + b"4 0 1 2 3 0\n").mesh.uvs is None
    _raises("parse", parse_ply, _ply_head(lists) + b"4 0 1 2 3 6 0 0 1 0 1 1\n", "t.ply")
    # per-vertex UVs win where a file has both
    both = _ply_head(lists, vertex_props="x y z s t").replace(b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n", b"")
    both += b"0 0 0 0 0\n1 0 0 1 0\n1 1 0 1 1\n0 1 0 0 1\n3 0 1 2 6 9 9 9 9 9 9\n"
    bm = parse_ply(both).mesh
    assert bm.uvs is not None and bm.uvs.tolist()[1] == [1, 0] and _eq(bm.uv_faces, bm.faces)


def test_ply_binary_meshlab_per_corner_texcoord(tmp_path: Path) -> None:
    v = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], dtype="<f4")
    head = (
        _ply_head("property list uchar int vertex_indices\nproperty list uchar float texcoord\n")
        .split(b"end_header\n")[0]
        .replace(b"ascii", b"binary_little_endian")
    )
    body = v.tobytes() + bytes([4]) + np.array([0, 1, 2, 3], "<i4").tobytes()
    body += bytes([8]) + np.array([0, 0, 1, 0, 1, 1, 0, 1], "<f4").tobytes()
    p = tmp_path / "b.ply"
    p.write_bytes(head + b"end_header\n" + body)
    m = read_ply(p).mesh
    assert (
        m.uvs is not None
        and m.uv_faces is not None
        and m.uv_faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    )


def test_ply_scalar_face_indices_and_repeated_properties_are_errors() -> None:
    scalar = _ply_head("property int vertex_indices\n") + b"0\n"
    assert "not a list" in str(_raises("parse", parse_ply, scalar, "s.ply"))
    twice = _ply_head("property list uchar int vertex_indices\n", vertex_props="x x y z")
    twice = twice.replace(b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n", b"0 0 0 0\n1 1 0 0\n1 1 1 0\n0 0 1 0\n")
    err = _raises("parse", parse_ply, twice + b"3 0 1 2\n", "d.ply")
    assert "already has property 'x'" in str(err)


def test_obj_negative_indices_count_back_from_their_own_line() -> None:
    """OBJ: a negative index counts back from the last element defined BEFORE its face line,
    so ``f -3 -2 -1`` after each ``v`` triple is a face of that triple (not of the last)."""
    text = (
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf -3/-3 -2/-2 -1/-1\n"
        "v 5 5 5\nv 6 5 5\nv 5 6 5\nv 6 6 5\nvt .5 .5\nf -4/-1 -3/-1 -1/-1 -2/-1\n"
    )
    m = parse_obj(text.encode()).mesh
    assert m.faces.tolist() == [[0, 1, 2], [3, 4, 6], [3, 6, 5]]
    assert m.uv_faces is not None and m.uv_faces.tolist() == [[0, 1, 2], [3, 3, 3], [3, 3, 3]]
    _raises("parse", parse_obj, b"v 0 0 0\nv 1 0 0\nf -3 -2 -1\nv 0 1 0\n", "n.obj")
    _raises("parse", parse_obj, b"f -3 -2 -1\nv 0 0 0\nv 1 0 0\nv 0 1 0\n", "n.obj")


def test_landmark_files_with_too_many_rows_are_wrong_size(tmp_path: Path) -> None:
    """A .bnd with more than 83 rows (two files run together) and a .lm2 with more points
    than it announces are "wrong-size"; errors name the file's real line numbers."""
    rows = "".join(f"{i}\t\t{i} {i} {i}\n" for i in range(83))
    b = tmp_path / "x.bnd"
    b.write_text(rows + rows)
    assert "166 landmark rows" in str(_raises("wrong-size", read_bnd, b))
    b.write_text(rows + "\n")  # the empty 84th line of some BU-4DFE files
    assert len(read_bnd(b).points) == 83
    lm2 = tmp_path / "x.lm2"
    head = "# 2D Landmark File\r\n\r\n2 landmarks\r\n\r\nLabels:\r\nA\r\nB\r\n\r\n"
    lm2.write_bytes((head + "2D Image coordinates:\r\n1 2\r\n3 4\r\n5 6\r\n").encode())
    _raises("wrong-size", read_lm2, lm2)
    lm2.write_bytes((head + "2D Image coordinates:\r\n1 2\r\n3 x\r\n").encode())
    assert "line 11:" in str(_raises("parse", read_lm2, lm2))
    lm3 = tmp_path / "x.lm3"
    lm3.write_bytes(b"# 3D Landmark File\r\n\r\n1 landmarks:\r\nA\r\n1 2\r\n")
    assert "line 5:" in str(_raises("parse", read_lm3, lm3))


def test_vrml_1_0_is_read_like_2_0() -> None:
    """VRML 1.0 spells the mesh with Coordinate3, TextureCoordinate2, textureCoordIndex and
    Texture2 { filename }: the same mesh as the 2.0 file comes out."""
    v2 = parse_vrml((_TRI_WRL % ("0 1 2 -1", "0 0, 1 0, 0 1", "2 1 0 -1")).encode()).mesh
    v1 = (
        '#VRML V1.0 ascii\n\nSeparator {\n  Texture2 { filename "frame.jpg" }\n'
        "  DEF c Coordinate3 { point [ 0 0 0, 1 0 0, 0 1 0 ] }\n"
        "  TextureCoordinate2 { point [ 0 0, 1 0, 0 1 ] }\n"
        "  IndexedFaceSet { coordIndex [ 0, 1, 2, -1 ] textureCoordIndex [ 2, 1, 0, -1 ] }\n}\n"
    )
    r = parse_vrml(v1.encode(), "v1.wrl")
    assert r.texture_url == "frame.jpg"
    assert _eq(r.mesh.vertices, v2.vertices) and _eq(r.mesh.faces, v2.faces)
    assert _eq(r.mesh.uvs, v2.uvs) and _eq(r.mesh.uv_faces, v2.uv_faces)
    _raises("truncated", parse_vrml, v1[: v1.index("IndexedFaceSet")].encode(), "v1.wrl")
