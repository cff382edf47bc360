"""Every assumption a reader makes about a dataset's files, stated as a test.

The licensed datasets are not available to CI, and round trips through the project's own writers
cannot catch a convention that writer and reader share by mistake (Bosphorus textures rendered
upside down for that reason). So the files here are built BY HAND in each format's documented
convention, read by the reader users run, and rendered by the real renderer; each convention
listed in :mod:`mvdata.sources.conventions` (and printed by ``mvdata inspect``) has a test here
that states it (:data:`STATED_BY`, checked by :func:`test_every_convention_is_stated_by_a_test`).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mvdata.build.clips import MotionReference
from mvdata.core import Mesh, MeshReadError
from mvdata.formats.landmarks import read_bnd, read_lm2, read_lm3
from mvdata.formats.obj import obj_text, read_obj
from mvdata.formats.ply import ply_bytes, read_ply
from mvdata.formats.vrml import vrml_text
from mvdata.render.gl import Renderer
from mvdata.render.normalise import normalise
from mvdata.sources import get_source, list_sources
from mvdata.sources.conventions.status import STATUS_TEXT
from mvdata.sources.inspect import CONVENTIONS, conventions_of
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig, SynthMesh, iter_synth
from mvdata.synth.native import bnt_grid, write_native
from schemas.landmarks import BOSPHORUS_LABELS, canonical_name

REPO = Path(__file__).resolve().parents[1]
RED = (220, 30, 30)
BLUE = (30, 30, 220)

# A 100 x 120 mm quad facing +z, corners counter-clockwise from the bottom-left, and its UVs
# in the v-up convention of OBJ, VRML97 and PLY (MeshLab): (0, 0) is the image's lower-left.
QUAD = [(-50.0, -60.0, 0.0), (50.0, -60.0, 0.0), (50.0, 60.0, 0.0), (-50.0, 60.0, 0.0)]
QUAD_UV_UP = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def two_tone(path: Path, size: int = 16) -> None:
    """A texture whose TOP half (image rows 0 .. size/2) is red and bottom half blue."""
    img = np.zeros((size, size, 3), np.uint8)
    img[: size // 2] = RED
    img[size // 2 :] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


# --------------------------------------------------------------------------- hand-made files
def bnt_file_bytes(texture: str, nrows: int = 24, ncols: int = 20) -> bytes:
    """A Bosphorus ``.bnt`` packed field by field (not by the project's writer): a flat grid,
    row 0 at the BOTTOM (y grows with the row), texture v growing DOWN the image rows
    (v = 0 on the top row), as a real file has it."""
    r, c = np.mgrid[0:nrows, 0:ncols].astype(np.float64)
    x = c * 5.0 - 47.5
    y = r * 5.0 - 57.5
    z = np.zeros_like(x)
    u = c / (ncols - 1)
    v = 1.0 - r / (nrows - 1)  # the top row of the grid samples the top row of the image
    name = texture.encode("ascii")
    n = 5 * nrows * ncols
    head = struct.pack("<HHdH", nrows, ncols, -1e9, len(name)) + name + struct.pack("<I", n)
    return head + np.stack([x, y, z, u, v]).astype("<f8").tobytes()


def vrml_lists() -> tuple[str, str]:
    """The quad's points and UVs as VRML number lists (``x y z, ...`` and ``u v, ...``)."""
    pts = ", ".join(f"{x:g} {y:g} {z:g}" for x, y, z in QUAD)
    return pts, ", ".join(f"{u:g} {v:g}" for u, v in QUAD_UV_UP)


def vrml_quad(texture: str) -> str:
    """VRML97: TextureCoordinate (0, 0) is the image's lower-left (the spec), v up."""
    pts, uvs = vrml_lists()
    return (
        "#VRML V2.0 utf8\n"
        "Shape {\n"
        f'  appearance Appearance {{ texture ImageTexture {{ url "{texture}" }} }}\n'
        "  geometry IndexedFaceSet {\n"
        f"    coord Coordinate {{ point [ {pts} ] }}\n"
        "    coordIndex [ 0, 1, 2, 3, -1 ]\n"
        f"    texCoord TextureCoordinate {{ point [ {uvs} ] }}\n"
        "    texCoordIndex [ 0, 1, 2, 3, -1 ]\n"
        "  }\n"
        "}\n"
    )


def vrml1_quad(texture: str) -> str:
    """VRML 1.0: TextureCoordinate2 (0, 0) is the image's lower-left too, v up."""
    pts, uvs = vrml_lists()
    return (
        "#VRML V1.0 ascii\n"
        "Separator {\n"
        f'  Texture2 {{ filename "{texture}" }}\n'
        f"  Coordinate3 {{ point [ {pts} ] }}\n"
        f"  TextureCoordinate2 {{ point [ {uvs} ] }}\n"
        "  IndexedFaceSet { coordIndex [ 0, 1, 2, 3, -1 ] textureCoordIndex [ 0, 1, 2, 3, -1 ] }\n"
        "}\n"
    )


def obj_quad(mtl: str | None) -> str:
    """OBJ: ``vt`` with v up, (0, 0) the image's lower-left (the convention every tool reads)."""
    lines = [f"mtllib {mtl}"] if mtl else []
    lines += [f"v {x:g} {y:g} {z:g}" for x, y, z in QUAD]
    lines += [f"vt {u:g} {v:g}" for u, v in QUAD_UV_UP]
    lines.append("f 1/1 2/2 3/3 4/4")
    return "\n".join(lines) + "\n"


def ply_quad(texture: str) -> str:
    """ASCII PLY with per-vertex ``texture_u texture_v`` (MeshLab's convention: v up)."""
    head = [
        "ply",
        "format ascii 1.0",
        f"comment TextureFile {texture}",
        "element vertex 4",
        *(f"property float {p}" for p in ("x", "y", "z", "texture_u", "texture_v")),
        "element face 1",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    rows = [
        f"{x:g} {y:g} {z:g} {u:g} {v:g}" for (x, y, z), (u, v) in zip(QUAD, QUAD_UV_UP, strict=True)
    ]
    return "\n".join([*head, *rows, "4 0 1 2 3"]) + "\n"


def ply_quad_corner_uvs(texture: str) -> str:
    """ASCII PLY with MeshLab's per-corner ``list uchar float texcoord`` face property (u v
    for each corner of the face, v up) and no per-vertex UVs."""
    head = [
        "ply",
        "format ascii 1.0",
        f"comment TextureFile {texture}",
        "element vertex 4",
        *(f"property float {p}" for p in ("x", "y", "z")),
        "element face 1",
        "property list uchar int vertex_indices",
        "property list uchar float texcoord",
        "end_header",
    ]
    rows = [f"{x:g} {y:g} {z:g}" for x, y, z in QUAD]
    uvs = " ".join(f"{u:g} {v:g}" for u, v in QUAD_UV_UP)
    return "\n".join([*head, *rows, f"4 0 1 2 3 8 {uvs}"]) + "\n"


def make_bosphorus(root: Path) -> None:
    (root / "bs000").mkdir(parents=True)
    (root / "bs000" / "bs000_N_N_0.bnt").write_bytes(bnt_file_bytes("bs000_N_N_0.png"))
    two_tone(root / "bs000" / "bs000_N_N_0.png")


def make_bu3dfe(root: Path) -> None:
    write_text(root / "F0001" / "F0001_NE00WH_F3D.wrl", vrml_quad("F0001_NE00WH_F3D.bmp"))
    two_tone(root / "F0001" / "F0001_NE00WH_F3D.bmp")


def make_bu4dfe(root: Path) -> None:
    write_text(root / "F001" / "Happy" / "000.wrl", vrml_quad("000.jpg"))
    two_tone(root / "F001" / "Happy" / "000.jpg")


def make_bu4dfe_vrml1(root: Path) -> None:
    write_text(root / "F001" / "Happy" / "000.wrl", vrml1_quad("000.jpg"))
    two_tone(root / "F001" / "Happy" / "000.jpg")


def make_bp4d(root: Path) -> None:
    write_text(root / "F001" / "T1" / "0001.obj", obj_quad(None))  # same-stem image
    two_tone(root / "F001" / "T1" / "0001.png")


def make_facescape(root: Path) -> None:
    base = root / "1" / "models_reg"
    write_text(base / "1_neutral.obj", obj_quad("1_neutral.mtl"))
    write_text(base / "1_neutral.mtl", "newmtl m\nKd 1 1 1\nmap_Kd 1_neutral.png\n")
    two_tone(base / "1_neutral.png")


def make_meshdir_obj(root: Path) -> None:
    write_text(root / "S1" / "face.obj", obj_quad("face.mtl"))
    write_text(root / "S1" / "face.mtl", "newmtl m\nmap_Kd skin.png\n")
    two_tone(root / "S1" / "skin.png")


def make_meshdir_wrl(root: Path) -> None:
    write_text(root / "S1" / "face.wrl", vrml_quad("skin.png"))
    two_tone(root / "S1" / "skin.png")


def make_meshdir_ply(root: Path) -> None:
    write_text(root / "S1" / "face.ply", ply_quad("skin.png"))
    two_tone(root / "S1" / "skin.png")


def make_meshdir_ply_corner_uvs(root: Path) -> None:
    write_text(root / "S1" / "face.ply", ply_quad_corner_uvs("skin.png"))
    two_tone(root / "S1" / "skin.png")


def make_bosphorus_upper_case(root: Path) -> None:
    """Upper-case extensions (a copy made on Windows): ``.BNT`` beside its ``.PNG``."""
    (root / "bs000").mkdir(parents=True)
    (root / "bs000" / "bs000_N_N_0.BNT").write_bytes(bnt_file_bytes("bs000_N_N_0.PNG"))
    two_tone(root / "bs000" / "bs000_N_N_0.PNG")


def make_bp4d_upper_case(root: Path) -> None:
    write_text(root / "F001" / "T1" / "0001.OBJ", obj_quad(None))  # same-stem image
    two_tone(root / "F001" / "T1" / "0001.PNG")


#: case -> (reader, file maker)
HAND_MADE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "bosphorus-bnt": ("bosphorus", make_bosphorus),
    "bu3dfe-wrl": ("bu3dfe", make_bu3dfe),
    "bu4dfe-wrl": ("bu4dfe", make_bu4dfe),
    "bu4dfe-wrl-vrml1": ("bu4dfe", make_bu4dfe_vrml1),
    "bp4d-obj": ("bp4d", make_bp4d),
    "facescape-obj": ("facescape", make_facescape),
    "meshdir-obj": ("meshdir", make_meshdir_obj),
    "meshdir-wrl": ("meshdir", make_meshdir_wrl),
    "meshdir-ply": ("meshdir", make_meshdir_ply),
    "meshdir-ply-corner-uvs": ("meshdir", make_meshdir_ply_corner_uvs),
    "bosphorus-upper-case": ("bosphorus", make_bosphorus_upper_case),
    "bp4d-upper-case": ("bp4d", make_bp4d_upper_case),
}


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    with Renderer(64, ((0.0, 0.0),), ("rgb",)) as r:
        yield r


def read_only_item(source: str, root: Path) -> Mesh:
    src = get_source(source)
    res = src.scan(root)
    assert res.errors == [] and len(res.items) == 1, res.errors
    return src.load_frame(res.items[0], 0)


def top_and_bottom(renderer: Renderer, mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the top and the bottom quarter of the rendered face (frontal view)."""
    img = renderer.render(mesh)["rgb"][0].astype(np.float64)
    rows = np.nonzero(img.sum(axis=(1, 2)) > 0)[0]
    assert len(rows) > 20, "the face is not in the view"
    q = (rows[-1] - rows[0]) // 4
    top = img[rows[0] + 1 : rows[0] + q]
    bottom = img[rows[-1] - q + 1 : rows[-1]]
    return top[top.sum(axis=2) > 0].mean(axis=0), bottom[bottom.sum(axis=2) > 0].mean(axis=0)


# --------------------------------------------------------------------------- texture v, rendered
@pytest.mark.parametrize("case", sorted(HAND_MADE))
def test_texture_top_lands_at_the_top_of_the_face(
    case: str, renderer: Renderer, tmp_path: Path
) -> None:
    """A texture whose top half is red, on a quad whose UVs follow the format's convention:
    the rendered face is red at the top and blue at the bottom. Bosphorus ``.bnt``: v grows down
    the image rows (reported from a real file); OBJ, VRML97, PLY: v grows up (their convention).
    A reader handing the renderer the wrong v shows the face upside down and fails here."""
    source, make = HAND_MADE[case]
    make(tmp_path)
    mesh = read_only_item(source, tmp_path)
    assert mesh.texture is not None and mesh.uvs is not None
    top, bottom = top_and_bottom(renderer, mesh)
    assert top[0] > 150 and top[2] < 80, f"{case}: top of the face is {top}, not red"
    assert bottom[2] > 150 and bottom[0] < 80, f"{case}: bottom of the face is {bottom}, not blue"


def test_writers_write_each_formats_texture_convention() -> None:
    """The project's writers (used by the synthetic native layouts) keep each format's
    convention: OBJ ``vt``, VRML ``texCoord`` and PLY ``s t`` with v up, as the mesh holds them;
    Bosphorus ``.bnt`` with v DOWN the image rows (1 - v), v = 0 on the grid's top row."""
    top_uv = np.array(QUAD_UV_UP, np.float32)
    mesh = Mesh(np.array(QUAD, np.float32), np.array([[0, 1, 2], [0, 2, 3]]), uvs=top_uv)
    vts = [ln.split()[1:] for ln in obj_text(mesh).splitlines() if ln.startswith("vt ")]
    assert np.allclose(np.asarray(vts, float), QUAD_UV_UP)
    text = vrml_text(mesh, "t.png", "space", "%g", ())
    block = text[text.index("TextureCoordinate") :]
    nums = block[block.index("[") + 1 : block.index("]")].replace(",", " ").split()
    assert np.allclose(np.asarray(nums, float).reshape(-1, 2), QUAD_UV_UP)
    ply = ply_bytes(mesh, binary=False).decode("ascii")
    body = ply.split("end_header\n")[1].splitlines()[:4]
    assert np.allclose([[float(t) for t in row.split()[3:5]] for row in body], QUAD_UV_UP)
    # a mesh dense enough for the depth grid, UVs v-up with y
    g = np.mgrid[-60:61:10, -50:51:10].reshape(2, -1).T[:, ::-1].astype(np.float32)
    verts = np.c_[g, np.zeros(len(g), np.float32)]
    from scipy.spatial import Delaunay

    tri = Delaunay(g).simplices.astype(np.int32)
    uv = np.c_[(g[:, 0] + 50) / 100, (g[:, 1] + 60) / 120].astype(np.float32)
    grid = bnt_grid(Mesh(verts, tri, uvs=uv), "t.png", xy_background_zmin=False)
    fg = grid.valid
    assert np.corrcoef(grid.v[fg], grid.y[fg])[0, 1] < -0.99  # v falls as y rises
    assert grid.v[-1][fg[-1]].max() < 0.01 and grid.v[0][fg[0]].min() > 0.99


# --------------------------------------------------------------------------- Bosphorus
@pytest.fixture(scope="module")
def bosphorus_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SynthMesh]]:
    """A tiny synthetic Bosphorus set (1 identity, neutral + happiness) in the native layout."""
    cfg = SynthConfig(
        num_identities=1,
        expressions=("neutral", "happiness"),
        intensities=(3,),
        texture_size=64,
        seed=3,
    )
    meshes = [s for s in iter_synth(cfg, procedural_face()) if s.kind == "static"]
    root = tmp_path_factory.mktemp("bos") / "set"
    assert write_native("bosphorus", meshes, root) > 0
    return root, meshes


def test_bosphorus_bnt_layout() -> None:
    """uint16 rows, uint16 cols, float64 zmin, uint16 L, the name, uint32 N = 5*rows*cols, then
    the x, y, z, u, v blocks; exactly 18 + L + 8N bytes (verified against real files)."""
    from mvdata.formats.bnt import parse_bnt

    data = bnt_file_bytes("bs000_N_N_0.png", nrows=3, ncols=2)
    assert len(data) == 18 + 15 + 8 * 5 * 3 * 2
    g = parse_bnt(data, "x.bnt")
    assert g.shape == (3, 2) and g.texture_name == "bs000_N_N_0.png" and g.zmin == -1e9


def test_bosphorus_grid_rows_grow_upwards() -> None:
    """Row 0 is the bottom of the face (y grows with the row), so the grid's triangles face +z,
    towards a frontal viewer; background is told by z alone (its x and y may be set)."""
    from mvdata.formats.bnt import bnt_to_mesh, parse_bnt

    g = parse_bnt(bnt_file_bytes("a.png", nrows=4, ncols=3))
    g.z[0, 0] = g.zmin  # x and y of this background point stay set
    m = bnt_to_mesh(g)
    assert m.num_vertices == 11 and m.vertices[:, 1].max() == g.y[-1, 0]
    v = m.vertices[m.faces]
    assert (np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2] > 0).all()


def test_bosphorus_texture_v_grows_down(bosphorus_set: tuple[Path, list[SynthMesh]]) -> None:
    """Reported from a real file: v falls as y rises (correlation -1.0). The synthetic writer
    writes it so, and the reader hands the renderer 1 - v (see the render test above)."""
    from mvdata.formats.bnt import read_bnt

    root, _ = bosphorus_set
    for p in sorted(root.rglob("*.bnt")):
        g = read_bnt(p)
        fg = g.valid
        assert np.corrcoef(g.v[fg], g.y[fg])[0, 1] < -0.9, p


def test_bosphorus_lm2_points_are_texture_pixels_y_down(
    bosphorus_set: tuple[Path, list[SynthMesh]],
) -> None:
    """``.lm2`` points are texture pixels with y down the image rows: the eyes lie on smaller
    rows than the mouth, and each point is the texel the read mesh's UV maps it to."""
    root, _ = bosphorus_set
    src = get_source("bosphorus")
    for it in src.scan(root).items:
        stem = root / it.frame_paths[0][0][: -len(".bnt")]
        lm2, lm3 = read_lm2(f"{stem}.lm2"), read_lm3(f"{stem}.lm3")
        assert lm2.labels == lm3.labels
        px = dict(zip(lm2.labels, lm2.points, strict=True))
        assert px["Outer left eye corner"][1] < px["Left mouth corner"][1]
        assert px["Inner right eyebrow"][1] < px["Nose tip"][1] < px["Chin middle"][1]
        mesh = src.load_frame(it, 0)
        assert mesh.texture is not None and mesh.uvs is not None
        h, w = mesh.texture.shape[:2]
        near = ((lm3.points[:, None] - mesh.vertices[None]) ** 2).sum(-1).argmin(1)
        uv = mesh.uvs[near]
        expect = np.c_[uv[:, 0] * w, (1.0 - uv[:, 1]) * h]
        assert np.abs(expect - lm2.points).max() < 0.05 * w


def test_bosphorus_landmark_labels(bosphorus_set: tuple[Path, list[SynthMesh]]) -> None:
    """A full scan names 22 points in words, in a real file's order; the reader yields those
    labels and each maps to a canonical landmark."""
    root, _ = bosphorus_set
    for p in sorted(root.rglob("*.lm3")):
        raw = p.read_bytes()
        assert raw.startswith(b"# 3D Landmark File\r\n\r\n22 landmarks:\r\nOuter left eyebrow\r\n")
        assert read_lm3(p).labels == BOSPHORUS_LABELS
    src = get_source("bosphorus")
    mesh = src.load_frame(src.scan(root).items[0], 0)
    assert mesh.landmark_names == BOSPHORUS_LABELS
    assert all(canonical_name(n) is not None for n in mesh.landmark_names)


def test_bosphorus_landmark_sides(bosphorus_set: tuple[Path, list[SynthMesh]]) -> None:
    """GUESS: a label's "left" is the subject's right, the points with the smaller x in the
    files seen; the synthetic files are written so."""
    assert canonical_name("Outer left eye corner") == "eye_outer_right"
    assert canonical_name("Left mouth corner") == "mouth_corner_right"
    assert canonical_name("Left nose peak") == "nose_ala_right"
    root, _ = bosphorus_set
    for p in sorted(root.rglob("*.lm3")):
        lm = read_lm3(p)
        pts = dict(zip(lm.labels, lm.points, strict=True))
        for left, right in (
            ("Outer left eyebrow", "Outer right eyebrow"),
            ("Outer left eye corner", "Outer right eye corner"),
            ("Inner left eye corner", "Inner right eye corner"),
            ("Nose saddle left", "Nose saddle right"),
            ("Left nose peak", "Right nose peak"),
            ("Left mouth corner", "Right mouth corner"),
        ):
            assert pts[left][0] < pts[right][0], (p.name, left, right)


def test_bosphorus_emotion_codes(tmp_path: Path) -> None:
    """GUESS: E-category codes ANGER ... SURPRISE name the emotions; other codes none."""
    for name in ("bs001_E_HAPPY_0", "bs001_E_SADNESS_0", "bs001_E_WONDER_0", "bs001_CAU_A22_0"):
        (tmp_path / "bs001").mkdir(exist_ok=True)
        (tmp_path / "bs001" / f"{name}.bnt").write_bytes(bnt_file_bytes(f"{name}.png", 3, 3))
    res = get_source("bosphorus").scan(tmp_path)
    got = {it.key: it.meta.expression for it in res.items}
    assert got == {
        "bosphorus_bs001_E_HAPPY_0": "happiness",
        "bosphorus_bs001_E_SADNESS_0": "sadness",
        "bosphorus_bs001_E_WONDER_0": None,
        "bosphorus_bs001_CAU_A22_0": None,
    }


def _mvdata(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.mvdata_app", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


def test_bosphorus_build_normalises_by_landmarks(tmp_path: Path) -> None:
    """End to end (``mvdata synth --format bosphorus`` + ``mvdata build``): each sample is
    normalised from its 22 word-labelled landmarks, not by bounding box."""
    raw, out = tmp_path / "raw", tmp_path / "shards"
    r = _mvdata(
        "synth", str(raw), "-n", "1", "--expressions", "neutral,happiness", "--intensities", "2",
        "--texture-size", "32", "--face-model", "procedural", "--format", "bosphorus",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _mvdata(
        "build", str(raw), str(out), "--source", "bosphorus", "--image-size", "32",
        "--views", "0,0", "--workers", "1", "--samples-per-shard", "4",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    docs = []
    for tar in sorted((out / "data").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    f = tf.extractfile(m)
                    assert f is not None
                    docs.append(json.loads(f.read()))
    assert len(docs) == 2
    for doc in docs:
        assert [n["method"] for n in doc["normalisation"]] == ["landmarks"], doc["key"]
        assert tuple(doc["landmark_names"]) == BOSPHORUS_LABELS


# --------------------------------------------------------------------------- BU-3DFE / BU-4DFE
def test_bu3dfe_file_names(tmp_path: Path) -> None:
    """F0001_AN03WH_F3D.wrl: subject F0001, anger at level 3; _RAW scans are skipped."""
    make_bu3dfe(tmp_path)
    write_text(tmp_path / "F0001" / "F0001_AN03WH_F3D.wrl", vrml_quad("x.bmp"))
    write_text(tmp_path / "F0001" / "F0001_AN03WH_RAW.wrl", vrml_quad("x.bmp"))
    res = get_source("bu3dfe").scan(tmp_path)
    got = {it.key: (it.meta.subject, it.meta.expression, it.meta.intensity) for it in res.items}
    assert got == {
        "bu3dfe_F0001_AN03": ("F0001", "anger", 3),
        "bu3dfe_F0001_NE00": ("F0001", "neutral", 0),
    }
    assert res.errors == []


def test_bu_bnd_rows_are_used_only_as_a_set(tmp_path: Path) -> None:
    """GUESS: the 83-row order is unknown, so the rows never name eye corners: the normaliser
    gives the same transform for any row order, with no rotation."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(83, 3)) * [40, 50, 15]
    a = tmp_path / "a.bnd"
    write_text(a, "".join(f"{i}\t\t{x} {y} {z}\n" for i, (x, y, z) in enumerate(pts)))
    lm = read_bnd(a)
    assert lm.labels == tuple(f"bnd{i:02d}" for i in range(83))
    quad = Mesh(np.array(QUAD, np.float32), np.array([[0, 1, 2], [0, 2, 3]]))
    norms = []
    for order in (np.arange(83), rng.permutation(83)):
        quad.landmarks = lm.points[order].astype(np.float32)
        quad.landmark_names = lm.labels
        norms.append(normalise(quad))
    assert norms[0].method == "landmarks" and norms[0].rotation == np.eye(3).tolist()
    assert np.allclose(norms[0].centre, norms[1].centre) and np.isclose(
        norms[0].scale, norms[1].scale
    )


def test_bu4dfe_layout(tmp_path: Path) -> None:
    """F001/Happy/000.wrl, one VRML file a frame with its .jpg beside it."""
    make_bu4dfe(tmp_path)
    write_text(tmp_path / "F001" / "Happy" / "001.wrl", vrml_quad("001.jpg"))
    (it,) = get_source("bu4dfe").scan(tmp_path).items
    assert (it.key, it.meta.expression, it.num_frames) == ("bu4dfe_F001_Happy", "happiness", 2)
    assert it.frame_paths[0] == ("F001/Happy/000.wrl", "F001/Happy/000.jpg")


def test_bu4dfe_no_correspondence() -> None:
    """Frames share no vertex order: motion is measured by nearest vertices, so a frame that is
    the first one with its vertices shuffled has not moved."""
    s = procedural_face(16, 12)
    first = Mesh(s.mean, s.faces)
    perm = np.random.default_rng(1).permutation(len(s.mean))
    shuffled = Mesh(s.mean[perm], np.argsort(perm)[s.faces])
    moved = Mesh(s.mean + [0.0, 0.0, 4.0], s.faces)
    ref = MotionReference(first)
    assert ref.motion(shuffled) == 0.0 and ref.motion(moved) > 3.0


def test_bu4dfe_frame_rate(tmp_path: Path) -> None:
    make_bu4dfe(tmp_path)
    assert get_source("bu4dfe").scan(tmp_path).items[0].fps == 25.0


# --------------------------------------------------------------------------- BP4D
def test_bp4d_layout(tmp_path: Path) -> None:
    """GUESS (no real file seen): <subject>/<task>/<frame>.obj with a same-stem image."""
    make_bp4d(tmp_path)
    write_text(tmp_path / "F001" / "T1" / "0010.obj", obj_quad(None))
    (it,) = get_source("bp4d").scan(tmp_path).items
    assert it.key == "bp4d_F001_T1" and it.num_frames == 2
    assert it.frame_paths[0] == ("F001/T1/0001.obj", "F001/T1/0001.png")


def test_bp4d_task_emotions(tmp_path: Path) -> None:
    """GUESS: T1 happiness, T2 sadness, T3 surprise, T5 fear, T7 anger, T8 disgust."""
    want = {"T1": "happiness", "T2": "sadness", "T3": "surprise", "T4": None, "T5": "fear"}
    want |= {"T6": None, "T7": "anger", "T8": "disgust"}
    for task in want:
        write_text(tmp_path / "M002" / task / "1.obj", obj_quad(None))
    got = {
        it.meta.extra["task"]: it.meta.expression for it in get_source("bp4d").scan(tmp_path).items
    }
    assert got == want


def test_bp4d_frame_rate(tmp_path: Path) -> None:
    make_bp4d(tmp_path)
    assert get_source("bp4d").scan(tmp_path).items[0].fps == 25.0


# --------------------------------------------------------------------------- CoMA
def _coma_frame(root: Path, binary: bool, n: int) -> None:
    mesh = Mesh(np.array(QUAD, np.float32), np.array([[0, 1, 2], [0, 2, 3]]))
    p = root / "FaceTalk_170725_00137_TA" / "bareteeth" / f"bareteeth.{n:06d}.ply"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(ply_bytes(mesh, binary=binary))


def _make_coma(root: Path) -> None:
    _coma_frame(root, False, 1)


#: Hand-made files of every reader that keeps its file's axes (Bosphorus scans are turned
#: upright by their labelled landmarks).
AXES_CASES = {
    **{case: made for case, made in HAND_MADE.items() if made[0] != "bosphorus"},
    "coma-ply": ("coma", _make_coma),
}


@pytest.mark.parametrize("case", sorted(AXES_CASES))
def test_readers_keep_the_file_axes(case: str, tmp_path: Path) -> None:
    """GUESS: the files are stored +y up with the face looking along +z. The readers hand the
    renderer the file's own coordinates and the normaliser, without landmarks named by
    meaning, does not turn them (identity rotation), so the file's axes are the views' axes.
    Whether a dataset's files follow the rule is what `mvdata inspect --check` tests on their
    shapes (tests/test_face_orientation.py)."""
    source, make = AXES_CASES[case]
    make(tmp_path)
    mesh = read_only_item(source, tmp_path)
    got = sorted(map(tuple, np.round(mesh.vertices.astype(np.float64), 4).tolist()))
    assert got == sorted(set(QUAD)), case
    norm = normalise(mesh)
    assert norm.method == "bbox" and np.allclose(norm.rotation, np.eye(3)), case


def test_coma_layout(tmp_path: Path) -> None:
    _coma_frame(tmp_path, False, 1)
    (it,) = get_source("coma").scan(tmp_path).items
    assert (
        it.key == "coma_FaceTalk_170725_00137_TA_bareteeth" and it.meta.extra["code"] == "bareteeth"
    )


def test_coma_vertex_count_is_not_required(tmp_path: Path) -> None:
    """GUESS: 5,023 FLAME vertices; the reader does not depend on it (a 4-vertex frame reads)."""
    _coma_frame(tmp_path, False, 1)
    src = get_source("coma")
    assert src.load_frame(src.scan(tmp_path).items[0], 0).num_vertices == 4


def test_coma_ply_encoding(tmp_path: Path) -> None:
    """GUESS: ASCII or binary PLY; both read to the same mesh."""
    _coma_frame(tmp_path, False, 1)
    _coma_frame(tmp_path, True, 2)
    src = get_source("coma")
    it = src.scan(tmp_path).items[0]
    a, b = src.load_frame(it, 0), src.load_frame(it, 1)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def test_coma_frame_rate(tmp_path: Path) -> None:
    _coma_frame(tmp_path, True, 1)
    assert get_source("coma").scan(tmp_path).items[0].fps == 60.0


# --------------------------------------------------------------------------- FaceScape
def test_facescape_layout(tmp_path: Path) -> None:
    make_facescape(tmp_path)
    (it,) = get_source("facescape").scan(tmp_path).items
    assert it.key == "facescape_1_1_neutral" and it.meta.expression == "neutral"
    assert it.frame_paths[0][1:] == ("1/models_reg/1_neutral.mtl", "1/models_reg/1_neutral.png")


def test_facescape_emotions() -> None:
    """GUESS: only neutral, smile, anger and sadness name an emotion."""
    from mvdata.sources.conventions.facescape import EXPRESSIONS, NAMES

    named = {n: EXPRESSIONS.get(n) for n in NAMES if EXPRESSIONS.get(n)}
    assert named == {
        "neutral": "neutral",
        "smile": "happiness",
        "anger": "anger",
        "sadness": "sadness",
    }


# --------------------------------------------------------------------------- synthetic
def test_synthetic_landmarks_are_ibug_ids() -> None:
    m = next(iter(iter_synth(SynthConfig(num_identities=1, texture_size=16), procedural_face())))
    assert m.mesh.landmark_names[:3] == ("ibug9", "ibug18", "ibug19")
    assert canonical_name("ibug37") == "eye_outer_right"


def test_a_frame_number_is_read_once(tmp_path: Path) -> None:
    """Two files with one frame number (``0001.obj`` beside ``0001.wrl``; ``000.wrl`` and
    ``0000.wrl``) would play one moment twice: the first in name order is read, the other is a
    "duplicate" error naming the file that is read."""
    bp4d, bu4dfe = tmp_path / "bp4d", tmp_path / "bu4dfe"
    for name in ("0001.obj", "0002.obj"):
        write_text(bp4d / "F001" / "T1" / name, obj_quad(None))
    write_text(bp4d / "F001" / "T1" / "0001.wrl", vrml_quad("0001.png"))
    for name in ("000.wrl", "0000.wrl", "001.wrl"):
        write_text(bu4dfe / "F001" / "Happy" / name, vrml_quad("000.jpg"))
    for source, root, kept, dropped in (
        ("bp4d", bp4d, ["F001/T1/0001.obj", "F001/T1/0002.obj"], "F001/T1/0001.wrl"),
        ("bu4dfe", bu4dfe, ["F001/Happy/000.wrl", "F001/Happy/001.wrl"], "F001/Happy/0000.wrl"),
    ):
        res = get_source(source).scan(root)
        (item,) = res.items
        assert [paths[0] for paths in item.frame_paths] == kept
        assert [(e.path, e.kind) for e in res.errors] == [(dropped, "duplicate")]
        assert kept[0] in res.errors[0].message


def test_meshdir_subject_is_the_top_level_folder(tmp_path: Path) -> None:
    """GUESS (the reader's choice): without a label row the person is the top-level folder,
    so S01's expression subfolders stay one subject; a row's subject wins."""
    for rel in ("S01/happy/1.obj", "S01/sad/1.obj", "S02/happy/1.obj", "top.obj"):
        write_text(tmp_path / rel, obj_quad(None))
    res = get_source("meshdir").scan(tmp_path)
    assert res.errors == []
    assert {it.frame_paths[0][0]: it.meta.subject for it in res.items} == {
        "S01/happy/1.obj": "S01",
        "S01/sad/1.obj": "S01",
        "S02/happy/1.obj": "S02",
        "top.obj": "root",
    }
    write_text(tmp_path / "labels.csv", "path,subject\nS01/happy/1.obj,alice\n")
    res = get_source("meshdir").scan(tmp_path)
    assert res.errors == []
    assert [it.meta.subject for it in res.items] == ["alice", "S01", "S02", "root"]


# --------------------------------------------------------------------------- text formats
def test_text_files_must_end_with_a_newline(tmp_path: Path) -> None:
    """GUESS: a complete OBJ, ASCII PLY or .bnd file ends with a newline. The same bytes with
    the final newline off are refused as cut off, with a message naming the file and the
    newline (a file cut inside its last line looks exactly like that)."""
    obj = "v -50 -60 0\nv 50 -60 0\nv 50 60 0\nf 1 2 3\n"
    ply = (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
        "end_header\n-50 -60 0\n50 -60 0\n50 60 0\n3 0 1 2\n"
    )
    bnd = "".join(f"{i}\t\t{i}.5 {-i}.25 {i % 7}\n" for i in range(83))
    readers: dict[str, Callable[[Path], object]] = {
        "a.obj": read_obj,
        "a.ply": read_ply,
        "a.bnd": read_bnd,
    }
    for (name, read), text in zip(readers.items(), (obj, ply, bnd), strict=True):
        complete, cut = tmp_path / name, tmp_path / f"cut-{name}"
        write_text(complete, text)
        write_text(cut, text[:-1])
        read(complete)
        with pytest.raises(MeshReadError) as err:
            read(cut)
        assert err.value.kind == "truncated" and "newline" in err.value.message
        assert str(err.value).startswith(str(cut))


# --------------------------------------------------------------------------- inspect, README
#: (source, convention topic) -> the test in this module that states it.
STATED_BY: dict[tuple[str, str], str] = {
    ("bosphorus", "bnt layout"): "test_bosphorus_bnt_layout",
    ("bosphorus", "grid rows"): "test_bosphorus_grid_rows_grow_upwards",
    ("bosphorus", "texture v"): "test_bosphorus_texture_v_grows_down",
    ("bosphorus", ".lm2 points"): "test_bosphorus_lm2_points_are_texture_pixels_y_down",
    ("bosphorus", "landmark labels"): "test_bosphorus_landmark_labels",
    ("bosphorus", "landmark sides"): "test_bosphorus_landmark_sides",
    ("bosphorus", "emotion codes"): "test_bosphorus_emotion_codes",
    ("bu3dfe", "file names"): "test_bu3dfe_file_names",
    ("bu3dfe", "texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("bu3dfe", ".bnd landmark order"): "test_bu_bnd_rows_are_used_only_as_a_set",
    ("bu4dfe", "layout"): "test_bu4dfe_layout",
    ("bu4dfe", "no correspondence"): "test_bu4dfe_no_correspondence",
    ("bu4dfe", "frame rate"): "test_bu4dfe_frame_rate",
    ("bu4dfe", "VRML version"): "test_texture_top_lands_at_the_top_of_the_face",
    ("bu4dfe", "texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("bu4dfe", ".bnd landmark order"): "test_bu_bnd_rows_are_used_only_as_a_set",
    ("bp4d", "layout"): "test_bp4d_layout",
    ("bp4d", "task emotions"): "test_bp4d_task_emotions",
    ("bp4d", "frame rate"): "test_bp4d_frame_rate",
    ("bp4d", "texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("coma", "layout"): "test_coma_layout",
    ("coma", "vertex count"): "test_coma_vertex_count_is_not_required",
    ("coma", "PLY encoding"): "test_coma_ply_encoding",
    ("coma", "frame rate"): "test_coma_frame_rate",
    ("facescape", "layout"): "test_facescape_layout",
    ("facescape", "texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("facescape", "emotions"): "test_facescape_emotions",
    ("meshdir", "OBJ texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("meshdir", "VRML texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("meshdir", "PLY texture v"): "test_texture_top_lands_at_the_top_of_the_face",
    ("meshdir", "subject"): "test_meshdir_subject_is_the_top_level_folder",
    ("synthetic", "landmarks"): "test_synthetic_landmarks_are_ibug_ids",
    ("synthetic", "texture v"): "test_writers_write_each_formats_texture_convention",
    ("bu3dfe", "final newline"): "test_text_files_must_end_with_a_newline",
    ("bu4dfe", "final newline"): "test_text_files_must_end_with_a_newline",
    ("bp4d", "final newline"): "test_text_files_must_end_with_a_newline",
    ("coma", "final newline"): "test_text_files_must_end_with_a_newline",
    ("facescape", "final newline"): "test_text_files_must_end_with_a_newline",
    ("meshdir", "final newline"): "test_text_files_must_end_with_a_newline",
    ("bu3dfe", "axes"): "test_readers_keep_the_file_axes",
    ("bu4dfe", "axes"): "test_readers_keep_the_file_axes",
    ("bp4d", "axes"): "test_readers_keep_the_file_axes",
    ("coma", "axes"): "test_readers_keep_the_file_axes",
    ("facescape", "axes"): "test_readers_keep_the_file_axes",
    ("meshdir", "axes"): "test_readers_keep_the_file_axes",
}


def test_every_convention_is_stated_by_a_test() -> None:
    listed = {(src, c.topic) for src, convs in CONVENTIONS.items() for c in convs}
    assert listed == set(STATED_BY)
    for name in STATED_BY.values():
        assert callable(globals().get(name)), name
    assert {s.name for s in list_sources()} <= set(CONVENTIONS)  # every reader states its own
    for convs in CONVENTIONS.values():
        for c in convs:
            assert c.status in STATUS_TEXT and c.topic and c.assumption and c.basis


def test_inspect_prints_the_conventions(tmp_path: Path) -> None:
    """``mvdata inspect`` lists each assumption of the chosen reader with its status."""
    from cli.mvdata_app import app

    make_bosphorus(tmp_path)
    r = CliRunner().invoke(
        app, ["inspect", str(tmp_path), "--source", "bosphorus"], env={"COLUMNS": "250"}
    )
    assert r.exit_code == 0, r.output
    assert "conventions" in r.output and "reported from a real file" in r.output
    for c in conventions_of("bosphorus"):
        assert c.topic in r.output
    assert r.output.count("GUESS") == sum(c.status == "guess" for c in conventions_of("bosphorus"))


def test_readme_states_every_guess() -> None:
    """The README's "What the readers assume" table names each reader's guesses."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### What the readers assume") :]
    section = section[: section.index("\n#")]
    rows = {
        ln.split("|")[1].strip().strip("`"): ln
        for ln in section.splitlines()
        if ln.startswith("| `")
    }
    for src, convs in CONVENTIONS.items():
        for c in convs:
            if c.status != "verified":
                assert c.topic in rows[src], (src, c.topic)
