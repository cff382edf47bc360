"""Dataset readers on synthetic sets written in each native layout: round trips (geometry,
landmarks, textures, labels, keys), robustness to broken and misnamed files, path escapes,
and the ``mvdata sources`` / ``mvdata inspect`` commands."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mvdata.core import Item, Mesh, MeshReadError
from mvdata.formats.bnt import bnt_bytes, parse_bnt, read_bnt
from mvdata.formats.obj import write_obj
from mvdata.formats.ply import ply_bytes
from mvdata.formats.vrml import write_vrml
from mvdata.sources import get_source, list_sources
from mvdata.sources.inspect import inspect_dataset
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig, SynthMesh, iter_synth
from mvdata.synth.native import (
    BU4_FOLDERS,
    BU_CODES,
    COMA_CATEGORY,
    FACESCAPE_NAME,
    NATIVE_FORMATS,
    bnd_rows,
    bosphorus_landmarks,
    depth_grid,
    write_native,
)
from schemas.landmarks import BOSPHORUS_LABELS


def _eq(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b))


def _tri() -> Mesh:
    return Mesh(np.eye(3, dtype=np.float32), np.array([[0, 1, 2]], np.int32))


KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture(scope="module")
def synth() -> list[SynthMesh]:
    cfg = SynthConfig(
        num_identities=2,
        expressions=("neutral", "happiness", "anger"),
        intensities=(1, 2),
        static=True,
        sequences=True,
        num_frames=10,
        texture_size=32,
    )
    return list(iter_synth(cfg, procedural_face(16, 12)))


@pytest.fixture(scope="module")
def native(synth: list[SynthMesh], tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("native")
    for fmt in NATIVE_FORMATS:
        assert write_native(fmt, synth, base / fmt) > 0
    return base


def _by_key(fmt: str, root: Path) -> dict[str, Item]:
    res = get_source(fmt).scan(root)
    assert res.errors == []
    keys = [it.key for it in res.items]
    assert len(keys) == len(set(keys)) and all(KEY_RE.match(k) for k in keys)
    return {it.key: it for it in res.items}


def _same_geometry(a: Mesh, b: Mesh, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(a.vertices, b.vertices, atol=atol)
    assert _eq(a.faces, b.faces)


def test_registry_lists_every_reader() -> None:
    names = {s.name for s in list_sources()}
    assert set(NATIVE_FORMATS) | {"bp4d"} <= names
    for s in list_sources():
        if s.name in names - {"synthetic"}:
            assert s.licence and s.description


def test_bu3dfe_round_trip(synth: list[SynthMesh], native: Path) -> None:
    items = _by_key("bu3dfe", native / "bu3dfe")
    statics = [s for s in synth if s.kind == "static"]
    assert len(items) == len(statics)
    for s in statics:
        subj = f"{s.sex}{s.identity_index + 1:04d}"
        it = items[f"bu3dfe_{subj}_{BU_CODES[s.expression]}{s.intensity:02d}"]
        assert (it.meta.subject, it.meta.expression, it.meta.intensity) == (
            subj,
            s.expression,
            s.intensity,
        )
        assert it.meta.extra["ethnicity"] == s.ethnicity
        m = get_source("bu3dfe").load_frame(it, 0)
        _same_geometry(m, s.mesh)
        assert m.uvs is not None and s.mesh.uvs is not None
        np.testing.assert_allclose(m.uvs[m.uv_faces], s.mesh.uvs[s.mesh.uv_faces], atol=1e-6)
        assert m.texture is not None and _eq(m.texture, s.mesh.texture)  # BMP: exact
        assert m.landmarks is not None and s.mesh.landmarks is not None
        assert m.landmarks.shape == (83, 3)
        # the rows follow the guessed BU layout: row 0 is ibug 37 (the right eye's outer corner)
        np.testing.assert_allclose(m.landmarks, bnd_rows(s.mesh)[0], atol=1e-5)
        ibug = dict(zip(s.mesh.landmark_names, s.mesh.landmarks, strict=True))
        np.testing.assert_allclose(m.landmarks[0], ibug["ibug37"], atol=1e-5)
        assert m.landmark_names[0] == "bnd00"


def test_bu4dfe_round_trip(synth: list[SynthMesh], native: Path) -> None:
    items = _by_key("bu4dfe", native / "bu4dfe")
    seqs = [s for s in synth if s.kind == "sequence"]
    for s in seqs:
        it = items[f"bu4dfe_{s.sex}{s.identity_index + 1:03d}_{BU4_FOLDERS[s.expression]}"]
        assert it.kind == "sequence" and it.fps == 25.0 and it.num_frames == s.num_frames
        assert it.meta.expression == s.expression
        if s.frame in (0, 3):  # a frame of each VRML style / .bnd ending
            m = get_source("bu4dfe").load_frame(it, s.frame)
            _same_geometry(m, s.mesh)
            assert m.texture is not None and s.mesh.texture is not None
            diff = np.abs(m.texture.astype(int) - s.mesh.texture.astype(int)).mean()
            assert diff < 4.0  # JPEG
            assert m.landmarks is not None and m.landmarks.shape == (83, 3)
    assert len(items) == len({s.sequence for s in seqs})


def test_bosphorus_round_trip(synth: list[SynthMesh], native: Path) -> None:
    items = _by_key("bosphorus", native / "bosphorus")
    statics = [s for s in synth if s.kind == "static"]
    assert len(items) == len(statics)
    it = items["bosphorus_bs001_E_HAPPY_1"]  # the second happiness scan of subject 2
    s = next(
        x
        for x in statics
        if x.identity_index == 1 and x.expression == "happiness" and x.intensity == 2
    )
    assert it.meta.expression == "happiness" and it.meta.extra["category"] == "E"
    assert items["bosphorus_bs000_N_N_0"].meta.expression == "neutral"
    m = get_source("bosphorus").load_frame(it, 0)
    g = depth_grid(s.mesh)
    grid = read_bnt(native / "bosphorus" / it.frame_paths[0][0])
    assert grid.shape == g.z.shape
    # every mesh vertex is a grid point on the synthetic surface (depth from the rasteriser)
    c = np.rint((m.vertices[:, 0] - g.x0) / 0.77).astype(int)
    r = np.rint((m.vertices[:, 1] - g.y0) / 0.77).astype(int)
    np.testing.assert_allclose(m.vertices[:, 2], g.z[r, c], atol=1e-4)
    assert np.abs(m.vertices[:, 2]).max() < 500 and m.num_vertices == int(g.covered.sum())
    # UVs: the file holds v down the image rows; the reader gives back the surface's v-up UVs
    assert m.uvs is not None
    np.testing.assert_allclose(m.uvs, np.stack([g.u[r, c], g.v[r, c]], 1), atol=1e-6)
    # landmarks: the 22 Bosphorus labels in words, in a real file's order, from the ibug points
    assert m.landmarks is not None and s.mesh.landmarks is not None
    want_pts, want_names = bosphorus_landmarks(s.mesh)
    assert m.landmark_names == want_names == BOSPHORUS_LABELS
    np.testing.assert_allclose(m.landmarks, want_pts, rtol=1e-5, atol=1e-3)  # %g
    assert m.texture is not None and _eq(m.texture, s.mesh.texture)  # PNG: exact


def test_coma_round_trip(synth: list[SynthMesh], native: Path) -> None:
    items = _by_key("coma", native / "coma")
    for s in (x for x in synth if x.kind == "sequence" and x.frame in (0, 9)):
        cat = COMA_CATEGORY[s.expression]
        it = items[f"coma_FaceTalk_170725_{s.identity_index + 1:05d}_TA_{cat}"]
        assert it.meta.extra["code"] == cat
        assert it.meta.expression == ("happiness" if cat == "high_smile" else None)
        m = get_source("coma").load_frame(it, s.frame)
        _same_geometry(m, s.mesh, atol=0.0)  # PLY float32 (ASCII and binary)
        assert m.vertex_colors is not None and _eq(m.vertex_colors, s.mesh.vertex_colors)


def test_facescape_round_trip(synth: list[SynthMesh], native: Path) -> None:
    items = _by_key("facescape", native / "facescape")
    assert len(items) == 2 * 3  # one scan per subject and expression
    for s in synth:
        if s.kind != "static" or s.intensity not in (0, 2):
            continue
        name = FACESCAPE_NAME[s.expression]
        it = items[f"facescape_{s.identity_index + 1}_{name}"]
        m = get_source("facescape").load_frame(it, 0)
        _same_geometry(m, s.mesh)  # vertex order kept exactly
        assert m.texture is not None and s.mesh.texture is not None
        assert m.texture.shape == s.mesh.texture.shape
        assert it.meta.expression == s.expression


def test_meshdir_round_trip_and_labels(synth: list[SynthMesh], native: Path) -> None:
    root = native / "meshdir"
    items = _by_key("meshdir", root)
    assert len(items) == len(synth)
    s = synth[3]
    it = items[f"meshdir_{s.subject}_{s.sequence}"]
    assert (it.meta.subject, it.meta.expression, it.meta.intensity) == (
        s.subject,
        s.expression,
        s.intensity,
    )
    m = get_source("meshdir").load_frame(it, 0)
    _same_geometry(m, s.mesh, atol=0.0)
    assert m.texture is not None and _eq(m.texture, s.mesh.texture)


def test_meshdir_parquet_labels_and_bad_rows(tmp_path: Path) -> None:
    import polars as pl

    m = _tri()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.ply").write_bytes(ply_bytes(m))
    write_obj(tmp_path / "y.obj", m)
    pl.DataFrame(
        {"path": ["a/x.ply", "gone.ply"], "subject": ["s9", "s1"], "intensity": ["3", "two"]}
    ).write_parquet(tmp_path / "labels.parquet")
    res = get_source("meshdir").scan(tmp_path)
    assert sorted((e.path, e.kind) for e in res.errors) == [
        ("gone.ply", "labels"),
        ("gone.ply", "labels"),
    ]
    by = {it.key: it for it in res.items}
    assert by["meshdir_a_x"].meta.subject == "s9" and by["meshdir_a_x"].meta.intensity == 3
    assert by["meshdir_y"].meta.subject == "root"


def test_bp4d_layout(synth: list[SynthMesh], tmp_path: Path) -> None:
    frames = [s for s in synth if s.kind == "sequence" and s.identity_index == 0][:4]
    for s in frames[:2]:
        write_obj(tmp_path / "F001" / "T1" / f"{s.frame + 1:04d}.obj", s.mesh)
    for s in frames[2:]:
        write_vrml(tmp_path / "M002" / "T7" / f"{s.frame}.wrl", s.mesh)
    (tmp_path / "F001" / "T1" / "notes.obj").write_text("v 0 0 0\n")
    res = get_source("bp4d").scan(tmp_path)
    assert [(e.path, e.kind) for e in res.errors] == [("F001/T1/notes.obj", "name")]
    by = {it.key: it for it in res.items}
    assert by["bp4d_F001_T1"].meta.expression == "happiness" and by["bp4d_F001_T1"].fps == 25.0
    assert by["bp4d_M002_T7"].meta.expression == "anger"
    _same_geometry(get_source("bp4d").load_frame(by["bp4d_F001_T1"], 1), frames[1].mesh)
    _same_geometry(get_source("bp4d").load_frame(by["bp4d_M002_T7"], 0), frames[2].mesh)


# --------------------------------------------------------------------------- robustness


def _garbage() -> bytes:
    return b"\x89" + np.random.default_rng(7).integers(1, 255, 3000, dtype=np.uint8).tobytes()


def _nan_text(good: bytes, marker: bytes) -> bytes:
    """``good`` with the first number after ``marker`` replaced by nan."""
    j = good.index(marker) + len(marker)
    while good[j : j + 1] in b" \n\r\t,[":
        j += 1
    k = j
    while good[k : k + 1] not in b" \n\r\t,":
        k += 1
    return good[:j] + b"nan" + good[k:]


def _bnt_nan(good: bytes) -> bytes:
    g = parse_bnt(good)
    r, c = np.argwhere(g.z != g.zmin)[0]
    g.z[r, c] = np.nan
    return bnt_bytes(g)


# per format: (unused), a namer giving each broken file a name that parses, a misnamed path
BAD_CASES = {
    "bu3dfe": (
        "F0001/F0001_NE00IN_F3D.wrl",
        lambda i, k: f"M{70 + i:04d}/M{70 + i:04d}_SU03WH_F3D.wrl",
        "F0001/F0001_AN99WH_F3D.wrl",
        b"point [",
    ),
    "bu4dfe": (
        "F001/Happy/000.wrl",
        lambda i, k: f"M0{70 + i}/Sad/00{i}.wrl",
        "F001/Bored/000.wrl",
        b"point [",
    ),
    "bosphorus": (
        "bs000/bs000_N_N_0.bnt",
        lambda i, k: f"bs0{70 + i}/bs0{70 + i}_E_FEAR_0.bnt",
        "bs000/bs000_X_FEAR_0.bnt",
        None,
    ),
    "coma": (
        "FaceTalk_170725_00001_TA/high_smile/high_smile.000001.ply",
        lambda i, k: f"FaceTalk_170725_0{7000 + i}_TA/lips_up/lips_up.00000{i}.ply",
        "FaceTalk_170725_00001_TA/high_smile/high_smile.1.ply",
        None,
    ),
    "facescape": (
        "1/models_reg/1_neutral.obj",
        lambda i, k: f"9{i}/models_reg/2_smile.obj",
        "1/models_reg/3_smile.obj",
        b"\nv ",
    ),
    "meshdir": (
        "S0001/S0001_NE00.ply",
        lambda i, k: f"bad/{k}.ply",
        None,
        None,
    ),
}


def _bad_files(fmt: str, good: bytes) -> dict[str, bytes]:
    """Broken variants of ``good`` by expected error kind."""
    out = {"empty": b"", "bad-magic": _garbage()}
    if fmt == "bosphorus":
        out["truncated"] = good[: len(good) // 2]
        out["wrong-size"] = good + b"\0" * 16
        out["nan"] = _bnt_nan(good)
        return out
    if fmt in ("coma", "meshdir"):
        mesh = _tri()
        nanmesh = _tri()
        nanmesh.vertices[1, 1] = np.nan
        out["truncated"] = good[: len(good) - 40]
        out["nan"] = ply_bytes(nanmesh, binary=True)
        out["encoding"] = ply_bytes(mesh, binary=False).decode().encode("utf-16")
        return out
    if fmt == "facescape":
        out["bad-magic"] = _garbage().replace(b"\0", b"")
        out["encoding"] = good.decode().encode("utf-16")
        out["truncated"] = good[: good.index(b"\nvt ")]
        out["nan"] = b"v nan 0 0\n" + good[good.index(b"\nv ") + 1 :].split(b"\n", 1)[1]
        out.pop("bad-magic")
        out["parse"] = b"this is a text file, not an OBJ mesh\n" * 5
        return out
    out["truncated"] = good[: len(good) // 3]
    out["encoding"] = good.decode().encode("utf-16")
    out["nan"] = _nan_text(good, b"point [")
    return out


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_broken_files_are_counted_and_the_rest_reads(
    fmt: str, native: Path, tmp_path: Path
) -> None:
    root = tmp_path / fmt
    shutil.copytree(native / fmt, root)
    _, namer, misnamed, _ = BAD_CASES[fmt]
    before = get_source(fmt).scan(root)
    good_rel = before.items[0].frame_paths[0][0]
    good_frames = sum(it.num_frames for it in before.items)
    expected: dict[str, str] = {}
    for i, (kind, data) in enumerate(
        sorted(_bad_files(fmt, (root / good_rel).read_bytes()).items())
    ):
        rel = namer(i, kind)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        expected[rel] = kind
    if misnamed is not None:
        (root / misnamed).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / good_rel, root / misnamed)
        expected[misnamed] = "name"
    rep = inspect_dataset(root, fmt, check=True)
    got = Counter(e.path.replace(str(root) + os.sep, "") for e in rep.errors)
    assert all(n == 1 for n in got.values()), got  # one error a file
    kinds = {e.path.replace(str(root) + os.sep, ""): e.kind for e in rep.errors}
    assert kinds == expected
    for e in rep.errors:
        assert e.message and e.kind
    assert rep.frames_checked == good_frames  # every good frame still loads


def test_path_escapes_refused(native: Path, tmp_path: Path) -> None:
    root = tmp_path / "bu3dfe"
    shutil.copytree(native / "bu3dfe", root)
    outside = tmp_path / "outside.wrl"
    first = get_source("bu3dfe").scan(root).items[0].frame_paths[0][0]
    shutil.copy(root / first, outside)
    subj = Path(first).parent.name
    link = root / subj / f"{subj}_SA04WH_F3D.wrl"
    link.symlink_to(outside)
    (root / "M0090").symlink_to(tmp_path, target_is_directory=True)
    res = get_source("bu3dfe").scan(root)
    errs = {(e.path, e.kind) for e in res.errors}
    assert (f"{subj}/{subj}_SA04WH_F3D.wrl", "escape") in errs
    assert ("M0090", "escape") in errs
    assert all("SA04" not in it.key for it in res.items)
    item = res.items[0]
    for rel in ("../outside.wrl", "F0001/../../outside.wrl", str(outside)):
        bad = Item("bu3dfe", item.root, "bu3dfe_x", "static", item.meta, ((rel,),))
        with pytest.raises(MeshReadError) as ei:
            get_source("bu3dfe").load_frame(bad, 0)
        assert ei.value.kind == "escape"


def test_texture_url_outside_root_is_ignored(synth: list[SynthMesh], tmp_path: Path) -> None:
    s = synth[0]
    (tmp_path / "secret.bmp").write_bytes(b"not read")
    root = tmp_path / "root"
    write_vrml(root / "F0001" / "F0001_NE00WH_F3D.wrl", s.mesh, "../../secret.bmp")
    res = get_source("bu3dfe").scan(root)
    m = get_source("bu3dfe").load_frame(res.items[0], 0)
    assert m.texture is None


# --------------------------------------------------------------------------- CLI


def test_cli_sources_and_inspect(native: Path, tmp_path: Path) -> None:
    from cli.mvdata_app import app

    runner = CliRunner()
    r = runner.invoke(app, ["sources"])
    assert r.exit_code == 0 and "bosphorus" in r.output and "EULA" in r.output
    root = tmp_path / "b4"
    shutil.copytree(native / "bu4dfe", root)
    seq = Path(get_source("bu4dfe").scan(root).items[0].frame_paths[0][0]).parent.as_posix()
    (root / seq / "005.wrl").write_bytes(b"junk")
    out = tmp_path / "report" / "inspect.json"
    r = runner.invoke(
        app,
        ["inspect", str(root), "--source", "bu4dfe", "--json", str(out)],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    assert "4 items" in r.output and f"{seq}/005.wrl" in r.output and "bad-magic" in r.output
    got = json.loads(out.read_text())  # the same report, every unreadable file named
    assert got["items"] == 4 and got["error_kinds"] == {"bad-magic": 1}
    assert got["errors"][0]["path"].endswith(f"{seq}/005.wrl")
    assert got["checks"]["landmark_layout"]["disagreeing"] == {"bnd": []}
    r = runner.invoke(app, ["inspect", str(root), "--source", "nosuch"])
    assert r.exit_code == 2 and "unknown source" in r.output


# What `mvdata inspect` must report on the synthetic native sets of the `synth` fixture
# (2 identities; neutral + happiness + anger at intensities 1, 2; 10-frame sequences).
EXPECTED_COUNTS = {
    "bu3dfe": (
        10,
        {"static": 10},
        {"anger": 4, "happiness": 4, "neutral": 2},
        {"0": 2, "1": 4, "2": 4},
        set(),
    ),
    "bu4dfe": (4, {"sequence": 4}, {"anger": 2, "happiness": 2}, {"(none)": 4}, {10}),
    "bosphorus": (
        10,
        {"static": 10},
        {"anger": 4, "happiness": 4, "neutral": 2},
        {"(none)": 10},
        set(),
    ),
    "coma": (4, {"sequence": 4}, {"(none)": 2, "happiness": 2}, {"(none)": 4}, {10}),
    "facescape": (
        6,
        {"static": 6},
        {"anger": 2, "happiness": 2, "neutral": 2},
        {"(none)": 6},
        set(),
    ),
    "meshdir": (
        50,
        {"static": 50},
        {"anger": 24, "happiness": 24, "neutral": 2},
        {"0": 2, "1": 4, "2": 4, "4": 40},
        set(),
    ),
}


@pytest.mark.parametrize("fmt", NATIVE_FORMATS)
def test_inspect_counts_on_each_synthetic_set(fmt: str, native: Path) -> None:
    items, kinds, expressions, intensities, frames = EXPECTED_COUNTS[fmt]
    rep = inspect_dataset(native / fmt, fmt, check=True)
    assert rep.errors == []
    assert rep.num_items == items and dict(rep.kinds) == kinds
    assert len(rep.subjects) == 2 and len(set(rep.subjects.values())) == 1
    assert dict(rep.expressions) == expressions and dict(rep.intensities) == intensities
    assert set(rep.frames_per_sequence.values()) == frames
    assert rep.frames_checked == rep.num_frames
    # every landmark mapping agrees with the geometry the writers put it on
    lay = rep.landmark_layout
    assert sum(lay.failed.values()) == 0, lay.failed
    if fmt in ("bu3dfe", "bu4dfe", "bosphorus"):
        scheme = "bosphorus" if fmt == "bosphorus" else "bnd"
        assert lay.frames == {scheme: rep.num_frames}
        assert lay.held[(scheme, "sides")] == rep.num_frames


# --------------------------------------------------------------------------- issue 11: one bad
# file never stops a scan, an inspect or a build, and each gets its own reason


def _png_declaring(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares ``w x h`` pixels (a decompression bomb's header)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 150, 120)).save(buf, format="PNG")
    png = buf.getvalue()
    ihdr = png[12:16] + struct.pack(">II", w, h) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def test_texture_decompression_bombs_are_read_errors(tmp_path: Path) -> None:
    """A texture declaring 30,000^2 pixels raised PIL's DecompressionBombError through every
    caller; between PIL's two limits it only warned and was decoded (GBs)."""
    from mvdata.sources.common import load_image

    for side in (30000, 10000, 9000):  # over PIL's error limit, its warning limit, ours (8192^2)
        p = tmp_path / f"t{side}.png"
        p.write_bytes(_png_declaring(side, side))
        with pytest.raises(MeshReadError) as ei:
            load_image(p)
        assert ei.value.kind == "texture" and str(ei.value).startswith(f"{p}: ")
    ok = tmp_path / "ok.png"
    ok.write_bytes(_png_declaring(4, 4))
    assert load_image(ok).shape == (4, 4, 3)


def _bad_meshdir(root: Path) -> dict[str, str]:
    """A meshdir folder of good meshes and one bad file of each kind the campaign found;
    returns ``{relative path: expected error kind}``."""
    m = _tri()
    good_ply, ascii_ply = ply_bytes(m), ply_bytes(m, binary=False)
    root.mkdir()
    for name in ("a.ply", "b.ply", "c.ply"):
        (root / name).write_bytes(good_ply)
    write_obj(root / "d.obj", m)
    write_vrml(root / "e.wrl", m)
    bad = {
        "huge.ply": good_ply.replace(b"element vertex 3", b"element vertex 1000000000000"),
        "faces.ply": good_ply.replace(b"element face 1", b"element face 300000000")
        + b"\0" * 100_000,
        "offbyone.ply": ascii_ply.replace(b"element vertex 3", b"element vertex 2"),
        "half.obj": (root / "d.obj").read_bytes()[:-4],
        "zero.wrl": b"\0" * 2048,
        "bomb.ply": good_ply,
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    (root / "bomb.png").write_bytes(_png_declaring(30000, 30000))
    (root / "dangling.ply").symlink_to(root / "gone.ply")
    (root / "loop.obj").symlink_to("loop.obj")
    os.mkfifo(root / "pipe.obj")  # would block a reader forever
    (root / "labels.csv").write_text(
        "path,subject,intensity\na.ply,s1,100000000000000000000\nb.ply,s2,-1\nc.ply,s3,2\n"
    )
    return {
        "huge.ply": "truncated",
        "faces.ply": "truncated",
        "offbyone.ply": "wrong-size",
        "half.obj": "truncated",
        "zero.wrl": "empty",
        "bomb.png": "texture",
        "dangling.ply": "missing",
        "loop.obj": "io",
        "pipe.obj": "io",
        "a.ply": "labels",
        "b.ply": "labels",
    }


def test_inspect_lists_every_bad_file_and_reads_the_rest(tmp_path: Path) -> None:
    """One bad file (a 10^12-vertex header, an ASCII count off by one, a texture bomb, an
    out-of-range intensity, a dangling symlink called "empty", a zero-filled .wrl called
    "UTF-16") aborted `mvdata inspect` with a traceback naming no file, or gave a wrong reason."""
    from cli.mvdata_app import app

    root = tmp_path / "meshes"
    expected = _bad_meshdir(root)
    rep = inspect_dataset(root, "meshdir", check=True)
    got = {Path(e.path).name: e.kind for e in rep.errors}
    assert got == expected, rep.errors
    by_name = {Path(e.path).name: e.message for e in rep.errors}
    assert "dangling symlink" in by_name["dangling.ply"] and "FIFO" in by_name["pipe.obj"]
    assert "zero" in by_name["zero.wrl"] and "UTF-16" not in by_name["zero.wrl"]
    assert "labels.csv" in by_name["a.ply"] and "100000000000000000000" in by_name["a.ply"]
    assert rep.frames_checked == 5  # a b c d e; a and b without their bad intensity
    r = CliRunner().invoke(
        app, ["inspect", str(root), "--source", "meshdir"], env={"COLUMNS": "400"}
    )
    assert r.exit_code == 0, r.output
    assert "5 loaded" in r.output and f"{len(expected)} errors" in r.output
    for name, kind in expected.items():
        line = next((ln for ln in r.output.splitlines() if name in ln), "")
        assert kind in line, (name, kind, r.output)


def test_build_records_each_bad_file_and_builds_the_rest(tmp_path: Path) -> None:
    """The same folder through `mvdata build` (a real subprocess): each bad mesh is a failed
    sample naming its file, the good ones are built, the exit is 0."""
    import subprocess
    import sys

    import polars as pl

    root = tmp_path / "meshes"
    _bad_meshdir(root)
    out = tmp_path / "out"
    args = ["build", str(root), str(out), "--source", "meshdir", "--image-size", "32"]
    args += ["--max-failed-fraction", "0.9"]
    r = subprocess.run(
        [sys.executable, "-m", "cli.mvdata_app", *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    rows = pl.concat([pl.read_parquet(p) for p in sorted((out / "data").glob("*.parquet"))])
    failed = rows.filter(pl.col("status") == "failed")
    messages = " ".join(failed["error_message"].to_list())
    for name in ("huge.ply", "faces.ply", "offbyone.ply", "half.obj", "zero.wrl", "bomb.png"):
        assert name in messages, (name, messages)
    assert len(rows.filter(pl.col("status") == "ok")) == 5


def test_landmarks_beyond_float32_are_a_read_error(tmp_path: Path) -> None:
    """A landmark of 1e300 (finite as text) became inf once stored as float32 and threw the
    normalisation, and the face, out of the frame; it is a "nan" error naming the .bnd."""
    from mvdata.formats.landmarks import write_bnd

    m = _tri()
    (tmp_path / "a.ply").write_bytes(ply_bytes(m))
    pts = np.zeros((83, 3))
    pts[0, 0] = 1e300
    write_bnd(tmp_path / "a.bnd", pts, np.arange(83))
    item = get_source("meshdir").scan(tmp_path).items[0]
    with pytest.raises(MeshReadError) as ei:
        get_source("meshdir").load_frame(item, 0)
    assert ei.value.kind == "nan" and str(ei.value).startswith(str(tmp_path / "a.bnd"))


def test_synthetic_missing_texture_or_index_names_the_file(tmp_path: Path) -> None:
    """The synthetic reader let a bare FileNotFoundError (no file named) escape for a missing
    texture, and a polars error for an index deleted after the scan."""
    from mvdata.synth.writer import write_synth

    cfg = SynthConfig(num_identities=1, expressions=("neutral",), texture_size=16)
    root = write_synth(cfg, procedural_face(16, 12), tmp_path / "s").out_dir
    src = get_source("synthetic")
    item = src.scan(root).items[0]
    texture = root / item.frame_paths[0][1]
    texture.unlink()
    with pytest.raises(MeshReadError) as ei:
        src.load_frame(item, 0)
    assert ei.value.kind == "missing" and str(ei.value).startswith(str(texture.resolve()))
    other = write_synth(cfg, procedural_face(16, 12), tmp_path / "t").out_dir
    item = src.scan(other).items[0]
    (other / "metadata.parquet").unlink()  # after the scan, before the load
    with pytest.raises(MeshReadError) as ei:
        src.load_frame(item, 0)
    assert ei.value.kind == "index" and "metadata.parquet" in str(ei.value)


def test_meshdir_label_rows_and_key_collisions(tmp_path: Path) -> None:
    """Label values are stripped; 3.0 is intensity 3 and NaN none; a second row for a path
    that disagrees is an error (the first is used); two files whose keys would be equal both
    get a hash of their path, so neither is lost."""
    import polars as pl

    m = _tri()
    for rel in ("a/b.obj", "a_b.obj", "x.obj", "x.ply"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".ply"):
            (tmp_path / rel).write_bytes(ply_bytes(m))
        else:
            write_obj(tmp_path / rel, m)
    pl.DataFrame(
        {
            "path": ["a/b.obj", "a_b.obj", "x.obj", "x.ply", "x.ply"],
            "subject": [" s1 ", "s1", "s2", "s2", "s3"],
            "intensity": [3.0, None, float("nan"), 4.0, 4.0],
        }
    ).write_parquet(tmp_path / "labels.parquet")
    res = get_source("meshdir").scan(tmp_path)
    assert [(e.path, e.kind) for e in res.errors] == [("x.ply", "labels")]
    assert "disagrees" in res.errors[0].message
    by = {it.frame_paths[0][0]: it for it in res.items}
    assert len(by) == 4 and len({it.key for it in res.items}) == 4
    assert len({it.meta.sequence for it in res.items}) == 4
    assert by["a/b.obj"].meta.subject == "s1" and by["a/b.obj"].meta.intensity == 3
    assert by["a_b.obj"].meta.intensity is None and by["x.obj"].meta.intensity is None
    assert by["x.ply"].meta.subject == "s2" and by["x.ply"].meta.intensity == 4
    assert all(k.startswith(("meshdir_a_b-", "meshdir_x-")) for k in (it.key for it in res.items))
    bad = tmp_path / "labels.parquet"
    pl.DataFrame({"path": ["x.obj"], "subject": ["s2"], "intensity": [2.5]}).write_parquet(bad)
    errs = get_source("meshdir").scan(tmp_path).errors
    assert ("x.obj", "labels") in [(e.path, e.kind) for e in errs]
