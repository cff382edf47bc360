"""The synthetic source: determinism, expression sanity on landmarks, 4D timing, bad input."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mvdata.sources.synthetic import read_synth_metadata
from mvdata.synth.facemodel import FaceModelError, download_sfm, load_sfm, resolve_face_model
from mvdata.synth.generate import SynthConfig, iter_synth, sequence_weights
from mvdata.synth.writer import write_synth

from .conftest import sfm_dir


def _lm(sm, ibug: int) -> np.ndarray:
    return sm.mesh.landmarks[sm.mesh.landmark_names.index(f"ibug{ibug}")]


def _mouth_width(sm) -> float:
    return float(np.linalg.norm(_lm(sm, 49) - _lm(sm, 55)))


def _corner_height(sm) -> float:
    return float((_lm(sm, 49)[1] + _lm(sm, 55)[1]) / 2 - _lm(sm, 34)[1])  # relative to nose base


def _jaw_opening(sm) -> float:
    return float(_lm(sm, 63)[1] - _lm(sm, 67)[1]) + float(_lm(sm, 34)[1] - _lm(sm, 9)[1])


def _by_label(meshes):
    return {(m.subject, m.expression, m.intensity): m for m in meshes if m.kind == "static"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path, any_model):
    cfg = SynthConfig(
        num_identities=2,
        expressions=("neutral", "happiness"),
        intensities=(2, 4),
        sequences=True,
        num_frames=12,
        seed=7,
    )
    a = write_synth(cfg, any_model, tmp_path / "a")
    b = write_synth(cfg, any_model, tmp_path / "b")
    da, db = _tree_digest(a.out_dir), _tree_digest(b.out_dir)
    assert da == db and len(da) > 10
    c = write_synth(SynthConfig(**{**cfg.__dict__, "seed": 8}), any_model, tmp_path / "c")
    dc = _tree_digest(c.out_dir)
    assert dc["static/S0001/S0001_HA04.ply"] != da["static/S0001/S0001_HA04.ply"]


def test_identity_independent_of_set_size(any_model):
    small = _by_label(iter_synth(SynthConfig(num_identities=1, seed=3), any_model))
    big = _by_label(iter_synth(SynthConfig(num_identities=3, seed=3), any_model))
    for key, m in small.items():
        np.testing.assert_array_equal(m.mesh.vertices, big[key].mesh.vertices)


def test_expression_sanity_on_landmarks(any_model):
    meshes = _by_label(iter_synth(SynthConfig(num_identities=4, seed=11), any_model))
    for subj in ("S0001", "S0002", "S0003", "S0004"):
        neutral = meshes[(subj, "neutral", 0)]
        widths = [_mouth_width(meshes[(subj, "happiness", k)]) for k in (1, 2, 3, 4)]
        corners = [_corner_height(meshes[(subj, "happiness", k)]) for k in (1, 2, 3, 4)]
        jaws = [_jaw_opening(meshes[(subj, "surprise", k)]) for k in (1, 2, 3, 4)]
        # Happiness widens the mouth and raises its corners, more at higher intensity.
        assert widths[0] > _mouth_width(neutral) + 0.5
        assert corners[0] > _corner_height(neutral) + 0.2
        assert all(b > a for a, b in zip(widths, widths[1:], strict=False)), widths
        assert all(b > a for a, b in zip(corners, corners[1:], strict=False)), corners
        # Surprise opens the jaw, more at higher intensity.
        assert jaws[0] > _jaw_opening(neutral) + 1.0
        assert all(b > a for a, b in zip(jaws, jaws[1:], strict=False)), jaws
        assert widths[-1] - _mouth_width(neutral) > 5.0  # a visible smile at level 4


def test_expressions_vary_per_identity(any_model):
    meshes = _by_label(iter_synth(SynthConfig(num_identities=2, seed=5), any_model))
    d1 = (
        meshes[("S0001", "happiness", 4)].mesh.vertices
        - meshes[("S0001", "neutral", 0)].mesh.vertices
    )
    d2 = (
        meshes[("S0002", "happiness", 4)].mesh.vertices
        - meshes[("S0002", "neutral", 0)].mesh.vertices
    )
    assert np.abs(d1 - d2).max() > 0.05 * np.abs(d1).max()  # not one shared displacement field


def test_sequence_timing_and_neutral_moves_nothing(any_model):
    cfg = SynthConfig(
        num_identities=1,
        expressions=("neutral", "happiness"),
        sequences=True,
        num_frames=40,
        seed=2,
    )
    meshes = list(iter_synth(cfg, any_model))
    neutral = next(m for m in meshes if m.expression == "neutral")
    seq = [m for m in meshes if m.kind == "sequence"]
    assert [m.frame for m in seq] == list(range(40))
    assert all(m.fps == 25.0 for m in seq)
    # Neutral at both ends: identical to the neutral scan; the apex lies strictly inside.
    np.testing.assert_allclose(seq[0].mesh.vertices, neutral.mesh.vertices, atol=1e-5)
    np.testing.assert_allclose(seq[-1].mesh.vertices, neutral.mesh.vertices, atol=1e-5)
    widths = np.array([_mouth_width(m) for m in seq])
    apex = int(np.argmax(widths))
    assert 0 < apex < 39 and seq[apex].phase == "apex"
    assert widths[apex] > widths[0] + 3.0
    order = {"neutral": 0, "onset": 1, "apex": 2, "offset": 3}
    ph = [order[m.phase] for m in seq]
    first_off = ph.index(3)
    assert ph[: ph.index(1)] == [0] * ph.index(1) and ph.index(1) < ph.index(2) < first_off
    assert all(p == 0 for p in ph[first_off:] if p != 3) and ph[-1] == 0


def test_sequence_timing_is_jittered():
    rng = np.random.default_rng(0)
    onsets = {int(np.argmax(sequence_weights(100, rng)[0] > 0)) for _ in range(10)}
    assert len(onsets) > 2
    for _ in range(20):
        w, phases = sequence_weights(60, rng)
        assert w[0] == 0 and w[-1] == 0 and w.max() == 1.0 and phases[0] == phases[-1] == "neutral"


def test_scan_like_frames_have_no_correspondence(sfm_model):
    cfg = SynthConfig(
        num_identities=1,
        expressions=("happiness",),
        static=False,
        sequences=True,
        registered=False,
        num_frames=10,
        seed=1,
    )
    seq = list(iter_synth(cfg, sfm_model))
    a, b = seq[0].mesh, seq[-1].mesh  # both neutral frames
    assert a.num_vertices == b.num_vertices
    assert np.abs(a.vertices - b.vertices).max() > 20.0  # shuffled order: vertex i is elsewhere
    a.validate()
    b.validate()
    # The surfaces still agree: every vertex of b lies near some vertex of a, and landmarks match.
    d = np.linalg.norm(b.vertices[:200, None] - a.vertices[None], axis=2).min(axis=1)
    assert np.median(d) < 3.0
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-4)


def test_pose_jitter_and_noise(procedural_model):
    base = _by_label(iter_synth(SynthConfig(num_identities=1, seed=4), procedural_model))
    jit = _by_label(
        iter_synth(
            SynthConfig(num_identities=1, seed=4, pose_jitter_deg=5, noise_mm=0.3), procedural_model
        )
    )
    k = ("S0001", "neutral", 0)
    diff = np.abs(base[k].mesh.vertices - jit[k].mesh.vertices)
    assert 0.05 < np.median(diff) < 15.0


def _boundary_outline(model) -> np.ndarray:
    """The mean shape's boundary vertices (edges of one triangle), xy, ordered by angle."""
    f = model.faces.astype(np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    edges, count = np.unique(e, axis=0, return_counts=True)
    xy = model.mean[np.unique(edges[count == 1]), :2].astype(np.float64)
    centred = xy - xy.mean(axis=0)
    return xy[np.argsort(np.arctan2(centred[:, 1], centred[:, 0]))]


def test_procedural_face_is_oval(procedural_model):
    """The fallback face a new user sees first: an oval outline (no square corners sticking out
    above the forehead like ears), and an empty frontal silhouette corner above the eyes."""
    from scipy.spatial import ConvexHull

    from mvdata.core import Mesh
    from mvdata.render.gl import Renderer

    xy = _boundary_outline(procedural_model)
    nxt = np.roll(xy, -1, axis=0)
    area = 0.5 * abs(np.sum(xy[:, 0] * nxt[:, 1] - nxt[:, 0] * xy[:, 1]))
    assert area / ConvexHull(xy).volume > 0.99  # convex (2-D "volume" is the area)
    # an ellipse fills pi/4 = 0.785 of its bounding box, a square all of it
    assert 0.70 < area / np.prod(xy.max(axis=0) - xy.min(axis=0)) < 0.82
    step = nxt - xy
    angle = np.arctan2(step[:, 1], step[:, 0])
    turn = np.degrees(np.abs((np.diff(np.r_[angle, angle[0]]) + np.pi) % (2 * np.pi) - np.pi))
    assert turn.max() < 15.0  # smooth: no corner anywhere on the outline

    m = procedural_model
    lm = np.stack([m.mean[v] for v in m.landmarks.values()])
    names = tuple(f"ibug{i}" for i in m.landmarks)
    mesh = Mesh(m.mean, m.faces, landmarks=lm, landmark_names=names)
    with Renderer(64, ((0.0, 0.0),), ("depth",)) as r:
        sil = r.render(mesh)["depth"][0] > 0
    rows, cols = np.nonzero(sil)
    top, left, right = rows.min(), cols.min(), cols.max()
    h, w = int(0.15 * (rows.max() - top + 1)), int(0.15 * (right - left + 1))
    assert h >= 5 and w >= 4
    assert not sil[top : top + h, left : left + w].any()  # above the subject's right eye
    assert not sil[top : top + h, right - w + 1 : right + 1].any()  # above the left eye


def test_metadata_table_and_files(tmp_path, any_model):
    cfg = SynthConfig(
        num_identities=2,
        expressions=("neutral", "anger", "surprise"),
        intensities=(1, 3),
        sequences=True,
        num_frames=12,
    )
    s = write_synth(cfg, any_model, tmp_path / "set")
    df = read_synth_metadata(s.out_dir)
    assert len(df) == s.num_meshes == 2 * (1 + 2 * 2 + 2 * 12)
    assert set(df["face_model"]) == {any_model.name}
    assert df.filter(pl.col("kind") == "static").group_by("expression").len().sort("expression")[
        "len"
    ].to_list() == [4, 2, 4]
    for rel in df["mesh_path"].to_list()[:5] + df["texture_path"].unique().to_list():
        assert (s.out_dir / rel).is_file()
    from plyfile import PlyData

    ply = PlyData.read(str(s.out_dir / df["mesh_path"][0]))
    assert ply["vertex"].count == df["num_vertices"][0]
    assert {"red", "s", "t"} <= {p.name for p in ply["vertex"].properties}


def test_obj_output(tmp_path, procedural_model):
    s = write_synth(
        SynthConfig(num_identities=1, expressions=("neutral",)),
        procedural_model,
        tmp_path / "o",
        mesh_format="obj",
    )
    obj = next((s.out_dir / "static").rglob("*.obj"))
    text = obj.read_text()
    assert (
        "mtllib S0001_NE00.mtl" in text
        and "map_Kd ../../textures/S0001.png" in obj.with_suffix(".mtl").read_text()
    )


# --------------------------------------------------------------------------- bad input
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.mvdata_app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_cli_bad_inputs(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = _cli("synth", str(out), "-n", "1", "--face-model", "procedural")
    assert (
        r.returncode == 2 and "not empty" in r.stderr and (out / "keep.txt").read_text() == "mine"
    )
    r = _cli("synth", str(tmp_path / "y"), "--expressions", "joy", "--face-model", "procedural")
    assert r.returncode == 2 and "unknown expressions" in r.stderr and not (tmp_path / "y").exists()
    r = _cli("synth", str(tmp_path / "z"), "--intensities", "5", "--face-model", "procedural")
    assert r.returncode == 2 and "intensities" in r.stderr
    r = _cli("synth", str(tmp_path / "z"), "--face-model", "clay")
    assert r.returncode == 2 and "unknown face model" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _cli("synth", str(blocker / "sub"), "--face-model", "procedural")
    assert r.returncode == 2 and str(blocker) in r.stderr
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind


def test_missing_model_falls_back_and_says_so(tmp_path):
    env = {
        "MVDATA_FACE_MODEL_DIR": str(tmp_path / "none"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    r = _cli("synth", str(tmp_path / "s"), "-n", "1", "--expressions", "neutral", env=env)
    assert r.returncode == 0, r.stderr
    assert "mvdata face-model download" in r.stderr and "procedural" in r.stderr
    assert '"face_model": "procedural"' in (tmp_path / "s" / "synth.json").read_text()
    r = _cli("synth", str(tmp_path / "t"), "--face-model", "sfm", env=env)
    assert r.returncode == 2 and "not found" in r.stderr and not (tmp_path / "t").exists()


@pytest.mark.skipif(sfm_dir() is None, reason="SFM files not available")
def test_corrupt_model_is_an_error(tmp_path):
    bad = tmp_path / "sfm"
    shutil.copytree(sfm_dir(), bad)  # a temporary copy for the test only, never in the repo
    data = bytearray((bad / "sfm_shape_3448.bin").read_bytes())
    data[1000] ^= 0xFF
    (bad / "sfm_shape_3448.bin").chmod(0o644)
    (bad / "sfm_shape_3448.bin").write_bytes(bytes(data))
    with pytest.raises(FaceModelError, match="checksum"):
        load_sfm(bad)
    r = _cli("synth", str(tmp_path / "s"), "--face-model-dir", str(bad))
    assert r.returncode == 2 and "sfm_shape_3448.bin" in r.stderr and not (tmp_path / "s").exists()


@pytest.mark.skipif(sfm_dir() is None, reason="SFM files not available")
def test_download_from_local_server(tmp_path):
    """The downloader against a local HTTP server standing in for the upstream repository."""
    src = sfm_dir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(src), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lines: list[str] = []
        where = download_sfm(
            tmp_path / "dl", base_url=f"http://127.0.0.1:{server.server_port}", echo=lines.append
        )
    finally:
        server.shutdown()
    assert "NON-COMMERCIAL" in lines[0]
    model = resolve_face_model("auto", where, echo=lambda m: None)
    assert model.name == "sfm_shape_3448" and not list(where.glob("*.part"))


# --------------------------------------------------------------------------- issue 11: options
# that cannot make a valid set are refused, naming the option; counts are what was written


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--noise", "inf"], "--noise"),
        (["--noise", "1e300"], "--noise"),
        (["--fps", "nan", "--sequences", "--frames", "10"], "--fps"),
        (["--pose-jitter", "-inf"], "--pose-jitter"),
        (["--seed", "-1"], "--seed"),
        (["--identities", "0"], "--identities"),
        (["--sequences", "--frames", "3"], "--frames"),
        (["--texture-size", "8"], "--texture-size"),
    ],
)
def test_cli_option_errors_name_the_option(tmp_path, args, option):
    """`--noise inf` wrote NaN meshes with exit 0, `--fps nan` invalid JSON, `--seed -1` an
    error without the option's name. Each is refused before anything is written."""
    from typer.testing import CliRunner

    from cli.mvdata_app import app

    out = tmp_path / "s"
    r = CliRunner().invoke(app, ["synth", str(out), "--face-model", "procedural", *args])
    assert r.exit_code == 2, r.output
    assert f"error: {option}: " in r.output, r.output
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_config_is_finite_and_names_fields():
    from pydantic import ValidationError

    for field, value in (("noise_mm", float("inf")), ("fps", float("nan")), ("seed", -1)):
        with pytest.raises(ValidationError) as ei:
            SynthConfig(**{field: value})
        assert ei.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError, match="nothing to generate"):
        SynthConfig(static=False, sequences=True, expressions=("neutral",))


def test_native_format_that_holds_nothing_is_refused(tmp_path, procedural_model):
    """`--format bu4dfe|coma` without `--sequences` reported 50 meshes and wrote none."""
    from typer.testing import CliRunner

    from cli.mvdata_app import app

    static_only = SynthConfig(num_identities=1, expressions=("neutral", "anger"))
    for fmt in ("bu4dfe", "coma"):
        with pytest.raises(ValueError, match="sequences only"):
            write_synth(static_only, procedural_model, tmp_path / fmt, fmt=fmt)
        assert not (tmp_path / fmt).exists()
    seq_only = SynthConfig(num_identities=1, static=False, sequences=True, num_frames=10)
    for fmt in ("bu3dfe", "bosphorus", "facescape"):
        with pytest.raises(ValueError, match="static scans only"):
            write_synth(seq_only, procedural_model, tmp_path / fmt, fmt=fmt)
    with pytest.raises(ValueError, match="at most 1000 subjects"):
        write_synth(
            SynthConfig(num_identities=1001), procedural_model, tmp_path / "b", fmt="bosphorus"
        )
    r = CliRunner().invoke(
        app, ["synth", str(tmp_path / "c"), "--face-model", "procedural", "--format", "coma"]
    )
    assert r.exit_code == 2 and "--format coma" in r.output and "--sequences" in r.output
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind


def test_native_counts_are_the_meshes_written(tmp_path):
    """`--format facescape` reported 50 meshes and wrote 14: the count is now what was written
    (FaceScape keeps one scan per subject and expression), in the summary and in synth.json."""
    import json

    from mvdata.synth.facemodel import procedural_face

    model = procedural_face(16, 12)
    cfg = SynthConfig(
        num_identities=1,
        expressions=("neutral", "happiness"),
        intensities=(1, 2),
        sequences=True,
        num_frames=10,
        texture_size=16,
    )
    files = {"facescape": "*.obj", "bu3dfe": "*.wrl", "bu4dfe": "*.wrl", "coma": "*.ply"}
    files |= {"bosphorus": "*.bnt", "meshdir": "*.ply"}
    for fmt, pattern in files.items():
        s = write_synth(cfg, model, tmp_path / fmt, fmt=fmt)
        written = len(list((tmp_path / fmt).rglob(pattern)))
        assert s.num_meshes == written > 0, fmt
        assert json.loads((tmp_path / fmt / "synth.json").read_text())["num_meshes"] == written
        assert s.num_generated == 3 + 10
    assert len(list((tmp_path / "facescape").rglob("*.obj"))) == 2
