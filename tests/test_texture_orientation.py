"""The texture-orientation check (``mvdata inspect --check``): the lips redder and the eyes
darker than the bridge of the nose, sampled through the reader's UVs. It must hold on the
synthetic faces as read and not with v flipped, and say so when a file's texture is upside
down against its UVs (the mistake a wrong "texture v" guess makes)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mvdata.core import Mesh
from mvdata.sources.inspect import inspect_dataset
from mvdata.sources.texture_orientation import TEXTURE_CHECKS, texture_verdicts
from mvdata.synth.facemodel import FaceModel
from mvdata.synth.generate import SynthConfig, iter_synth
from mvdata.synth.writer import write_synth
from tests.faces import store_images_upside_down


def _faces(model: FaceModel) -> list[Mesh]:
    cfg = SynthConfig(num_identities=4, pose_jitter_deg=20.0, noise_mm=0.2, seed=2)
    return [sm.mesh for sm in iter_synth(cfg, model)]


def test_lips_and_eyes_sample_where_they_are_only_as_read(any_model: FaceModel) -> None:
    """As read, the lips are redder than the bridge on every face and the eyes never lighter;
    with v flipped the lips never pass (the eyes land elsewhere on the face)."""
    faces = _faces(any_model)
    got = [texture_verdicts(m) for m in faces]
    assert all(g is not None for g in got)
    as_read = [g["as read"] for g in got if g is not None]
    flipped = [g["v flipped"] for g in got if g is not None]
    assert all(v["lips"] is True for v in as_read)
    assert all(v["eyes"] is not False for v in as_read)
    assert sum(v["eyes"] is True for v in as_read) >= len(as_read) // 2
    assert not any(v["lips"] is True for v in flipped)
    assert set(as_read[0]) == {"lips", "eyes"} < set(TEXTURE_CHECKS)  # not "lips below nose"


def test_frames_it_cannot_test_are_not_counted(procedural_model: FaceModel) -> None:
    mesh = _faces(procedural_model)[0]
    assert texture_verdicts(Mesh(mesh.vertices, mesh.faces)) is None  # no texture
    no_bridge = [n if n != "ibug28" else "x" for n in mesh.landmark_names]
    bare = Mesh(
        mesh.vertices,
        mesh.faces,
        uvs=mesh.uvs,
        uv_faces=mesh.uv_faces,
        texture=mesh.texture,
        landmarks=mesh.landmarks,
        landmark_names=tuple(no_bridge),
    )
    # the bridge of the nose is the landmarks' reference: without it the frame is read by
    # colour and shape ("lips below nose", tests/test_face_orientation.py) or not at all
    got = texture_verdicts(bare)
    assert got is None or all(set(v) == {"lips below nose"} for v in got.values())


def test_inspect_says_when_a_texture_is_upside_down(
    procedural_model: FaceModel, tmp_path: Path
) -> None:
    """BU-3DFE files whose .bmp is stored upside down against their UVs: as read the lips are
    never redder than the bridge, flipped they are on every frame, and `mvdata inspect` says
    the reader's texture v disagrees (exit 0: it reports)."""
    from cli.mvdata_app import app

    cfg = SynthConfig(
        num_identities=2, expressions=("neutral", "happiness"), texture_size=128, seed=4
    )
    root = write_synth(cfg, procedural_model, tmp_path / "bu", fmt="bu3dfe").out_dir
    rep = inspect_dataset(root, "bu3dfe", check=True)
    n = rep.frames_checked
    tex = rep.texture_orientation
    assert n > 0 and tex.frames == {"as read": n, "v flipped": n}
    assert tex.held[("as read", "lips")] == n and tex.failed[("as read", "eyes")] == 0
    assert tex.undetermined[("as read", "lips below nose")] == 0  # read through landmarks only
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", str(root), "-s", "bu3dfe"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "the bu3dfe reader's texture v agrees with these files" in r.output

    store_images_upside_down(root, "*.bmp", "BMP")
    rep = inspect_dataset(root, "bu3dfe", check=True)
    tex = rep.texture_orientation
    assert tex.held[("as read", "lips")] == 0 and tex.held[("v flipped", "lips")] == n
    r = runner.invoke(app, ["inspect", str(root), "-s", "bu3dfe"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "texture v disagrees with these files" in r.output


def test_the_verdict_weighs_as_read_against_flipped() -> None:
    """More frames hold flipped: "flipped"; more as read (and more held than failed):
    "agrees"; textures that show nothing either way: "unclear"."""
    from mvdata.sources.texture_orientation import texture_tally, texture_verdict

    def tally(as_read: list[bool | None], flipped: list[bool | None]) -> str:
        t = texture_tally()
        for k, (a, f) in enumerate(zip(as_read, flipped, strict=True)):
            t.add_verdicts("as read", f"f{k}", {"lips": a, "eyes": a})
            t.add_verdicts("v flipped", f"f{k}", {"lips": f, "eyes": f})
        return texture_verdict(t)

    assert tally([True, True, None], [None, None, True]) == "agrees"
    assert tally([None, None, True], [True, True, None]) == "flipped"
    assert tally([None, None, None], [None, None, None]) == "unclear"
    assert tally([True, False, False], [None, None, None]) == "unclear"
