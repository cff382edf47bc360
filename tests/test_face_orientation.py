"""The file-axes check (``mvdata inspect --check``): in a file's own axes the face must look
along +z with +y up, as the renderer assumes for scans without landmarks named by meaning. It
must hold on the synthetic faces as written, name the convention when the same faces are
written in another one, not take the back of a head or a flat sheet for a nose, and read
millimetres and metres alike. The texture relation built on it ("lips below nose") must hold
as read and fail with v flipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mvdata.core import Mesh
from mvdata.sources.face_orientation import (
    AS_READ,
    AXIS_CONVENTIONS,
    add_orientation,
    axis_verdict,
    face_extent,
    nose_tip,
    orientation_tally,
    orientation_verdicts,
    upright_frame,
)
from mvdata.sources.inspect import inspect_dataset
from mvdata.sources.texture_orientation import texture_verdicts
from mvdata.synth.facemodel import FaceModel
from mvdata.synth.generate import SynthConfig, iter_synth
from mvdata.synth.writer import write_synth
from tests.faces import facescape_set, store_images_upside_down


def _faces(model: FaceModel, jitter: float = 10.0) -> list[Mesh]:
    cfg = SynthConfig(
        num_identities=3,
        expressions=("neutral", "happiness", "surprise", "anger"),
        intensities=(3, 4),
        pose_jitter_deg=jitter,
        noise_mm=0.2,
        seed=5,
    )
    return [sm.mesh for sm in iter_synth(cfg, model)]


def _written_as(mesh: Mesh, convention: str, scale: float = 1.0) -> Mesh:
    """The mesh as a file in ``convention`` would hold it: renderer = R @ file, so file = R^T @
    renderer (rows: ``v @ R``)."""
    rot = AXIS_CONVENTIONS[convention]
    return Mesh(
        (mesh.vertices.astype(np.float64) @ rot * scale).astype(np.float32),
        mesh.faces,
        uvs=mesh.uvs,
        uv_faces=mesh.uv_faces,
        texture=mesh.texture,
    )


@pytest.mark.parametrize("convention", list(AXIS_CONVENTIONS))
def test_each_convention_is_recognised(any_model: FaceModel, convention: str) -> None:
    """The same faces written in each convention: that convention fits the most frames (and
    as read only when it is the renderer's), and most frames fit it."""
    faces = _faces(any_model)
    tally = orientation_tally()
    for k, mesh in enumerate(faces):
        add_orientation(tally, f"f{k}", _written_as(mesh, convention))
    verdict, best = axis_verdict(tally)
    assert best == convention
    assert verdict == ("agrees" if convention == AS_READ else "differs")
    assert tally.all_held[convention] >= 0.6 * len(faces)
    others = [tally.all_held[g] for g in AXIS_CONVENTIONS if g != convention]
    assert max(others) <= 0.5 * tally.all_held[convention]


def test_millimetres_and_metres_read_alike(procedural_model: FaceModel) -> None:
    """FLAME/CoMA meshes are in metres: every threshold is a fraction of the face's extent."""
    for mesh in _faces(procedural_model)[:8]:
        assert orientation_verdicts(_written_as(mesh, AS_READ, 0.001)) == orientation_verdicts(mesh)


def test_a_dense_scan_is_read_through_every_kth_vertex(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan over MAX_VERTICES is thinned to every k-th vertex. A dense procedural face (30k
    vertices, a 1 mm grid) read through every 4th vertex: the nose is still found on every face,
    and in no convention does a relation turn from held to failed or back (the procedural
    face's borderline profile may turn undetermined)."""
    import mvdata.sources.face_orientation as fo
    from mvdata.synth.facemodel import procedural_face

    faces = _faces(procedural_face(193, 157), jitter=3.0)
    full = [orientation_verdicts(m) for m in faces]
    monkeypatch.setattr(fo, "MAX_VERTICES", faces[0].num_vertices // 4)
    thinned = [orientation_verdicts(m) for m in faces]
    assert all(t is not None and t[AS_READ]["front"] for t in thinned)
    for a, b in zip(full, thinned, strict=True):
        assert a is not None and b is not None
        for convention in AXIS_CONVENTIONS:
            for relation, verdict in a[convention].items():
                other = b[convention][relation]
                assert verdict is None or other is None or verdict == other


def test_a_stray_vertex_does_not_make_a_nose(procedural_model: FaceModel) -> None:
    """One spike of scanner noise far in front of the face does not become the tip (the medoid
    of the five points of largest z), so the face still shows a frontal nose."""
    for mesh in _faces(procedural_model, jitter=3.0)[:6]:
        v = mesh.vertices.astype(np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        spiked = v.copy()
        spiked[0] = [lo[0], hi[1], hi[2] + 30.0]  # a corner, far in front
        moved = np.linalg.norm(nose_tip(spiked) - nose_tip(v))
        assert moved < 0.03 * face_extent(v)
        got = orientation_verdicts(Mesh(spiked.astype(np.float32), mesh.faces))
        assert got is not None and got[AS_READ]["front"] is True


def test_a_floating_island_of_noise_changes_nothing(any_model: FaceModel) -> None:
    """Scans often carry a few stray vertices away from the face (a floating island 40 cm to the
    side): the face's box is read from percentiles, so the verdicts stay as they were."""
    for mesh in _faces(any_model, jitter=3.0)[:8]:
        v = mesh.vertices.astype(np.float64)
        island = v[:12] + np.array([400.0, 150.0, -50.0])
        noisy = Mesh(np.concatenate([v, island]).astype(np.float32), mesh.faces)
        assert orientation_verdicts(noisy) == orientation_verdicts(mesh)


def test_a_head_seen_from_behind_and_a_flat_sheet_have_no_nose() -> None:
    """The back of a head (a sphere's cap facing the camera) protrudes too little, a flat sheet
    not at all: "front" fails and "upright" is not read; too few vertices: not counted."""
    n = 60
    theta, phi = np.meshgrid(np.linspace(0, np.pi / 2, n), np.linspace(0, 2 * np.pi, n))
    r = 90.0
    cap = np.stack(
        [r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)],
        axis=-1,
    ).reshape(-1, 3)
    xs, ys = np.meshgrid(np.linspace(-80, 80, n), np.linspace(-100, 100, n))
    sheet = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).reshape(-1, 3)
    faces = np.zeros((1, 3), np.int64)
    for pts in (cap, sheet):
        got = orientation_verdicts(Mesh(pts.astype(np.float32), faces))
        assert got is not None and got[AS_READ] == {"front": False, "upright": None}
        assert upright_frame(pts) is None
    assert orientation_verdicts(Mesh(cap[:10].astype(np.float32), faces)) is None


def test_lips_below_nose_as_read_not_flipped(any_model: FaceModel) -> None:
    """Without landmarks, the reddest vertices near the nose lie below it through the UVs as
    read on most faces counted, and above it with v flipped on most; the landmark relations
    are not read. Only faces with a frontal, upright nose in some axis convention are counted
    (most SFM faces; on the procedural face, whose profile is near-symmetric, fewer). The same
    faces stored z up are read in that convention where it is the only one that fits, with the
    same verdicts: the texture is tested against the geometry whatever the files' axes."""
    faces = _faces(any_model, jitter=3.0)
    got = [texture_verdicts(_written_as(m, AS_READ)) for m in faces]
    counted = [g for g in got if g is not None]
    assert len(counted) >= (0.8 if any_model.name.startswith("sfm") else 0.3) * len(faces)
    assert all(set(g["as read"]) == {"lips below nose"} for g in counted)
    held = sum(g["as read"]["lips below nose"] is True for g in counted)
    failed_flipped = sum(g["v flipped"]["lips below nose"] is False for g in counted)
    assert held >= 0.9 * len(counted) and failed_flipped >= 0.9 * len(counted)
    z_up = [texture_verdicts(_written_as(m, "z up, facing -y")) for m in faces]
    read = [(a, b) for a, b in zip(got, z_up, strict=True) if b is not None]
    assert len(read) >= 0.4 * len(faces)  # a frame that also fits "facing -z" is not read
    assert all(a == b for a, b in read)


def test_upright_frame_reads_the_files_axes_first(any_model: FaceModel) -> None:
    """Where the file's own axes show a frontal nose they decide: faces stored y up are read as
    read or not at all, never "upside down" on a profile that cannot tell; faces stored y down
    are not read (the axes check flags them). Faces stored z up are read in that convention or
    not at all."""
    faces = _faces(any_model, jitter=3.0)
    sfm = any_model.name.startswith("sfm")
    counts = {}
    for stored, allowed in (
        (AS_READ, {AS_READ, None}),
        # the procedural face's near-symmetric profile reads upright either way up on some
        ("upside down (y down)", {None} if sfm else {AS_READ, None}),
        ("z up, facing +y", {"z up, facing +y", None}),
    ):
        found = [upright_frame(_written_as(m, stored).vertices) for m in faces]
        assert {f.convention if f else None for f in found} <= allowed, stored
        counts[stored] = sum(f is not None for f in found)
    assert counts[AS_READ] >= 0.3 * len(faces) and counts["z up, facing +y"] >= 0.3 * len(faces)
    assert counts["upside down (y down)"] <= counts[AS_READ]


def _rewrite_obj_vertices(path: Path, convention: str) -> None:
    """Rewrite the ``v`` lines of an OBJ as a file in ``convention`` would hold them."""
    rot = AXIS_CONVENTIONS[convention]
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            p = np.array([float(t) for t in line.split()[1:4]]) @ rot
            line = "v " + " ".join(f"{c:.6f}" for c in p)
        out.append(line)
    path.write_text("\n".join(out) + "\n")


def test_inspect_names_the_axes_and_the_texture_of_files_without_landmarks(
    procedural_model: FaceModel, tmp_path: Path
) -> None:
    """FaceScape-layout OBJs (no landmarks): as written, inspect says the axes and the texture v
    agree; with the vertices stored z up, it names that convention; with the textures stored
    upside down, it says the texture v disagrees (exit 0: it reports)."""
    from cli.mvdata_app import app

    root = facescape_set(procedural_model, tmp_path / "fs")
    runner = CliRunner()

    def inspect() -> str:
        r = runner.invoke(app, ["inspect", str(root), "-s", "facescape"], env={"COLUMNS": "300"})
        assert r.exit_code == 0, r.output
        return " ".join(r.output.split())

    rep = inspect_dataset(root, "facescape", check=True)
    n = rep.frames_checked
    assert n > 0 and rep.face_orientation.frames[AS_READ] == n
    assert axis_verdict(rep.face_orientation) == ("agrees", AS_READ)
    tex = rep.texture_orientation
    counted = tex.frames["as read"]
    assert counted > n // 2 and tex.held[("as read", "lips below nose")] == counted
    out = inspect()
    assert "the facescape reader's axes agree with these files" in out
    assert "the facescape reader's texture v agrees with these files" in out
    # --json: the whole report, to attach to an issue; counts and verdicts as printed
    r = runner.invoke(
        app, ["inspect", str(root), "-s", "facescape", "--json", str(tmp_path / "i.json")]
    )
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "i.json").read_text())
    assert got["source"] == "facescape" and got["frames_checked"] == n
    axes = got["checks"]["face_orientation"]
    assert axes["verdict"] == "agrees" and axes["best_convention"] == AS_READ
    assert axes["tally"][AS_READ]["frames"] == n
    assert axes["tally"][AS_READ]["relations"]["front"]["held"] == n
    texture = got["checks"]["texture_orientation"]
    assert texture["verdict"] == "agrees"
    assert set(texture["tally"]["as read"]["relations"]) == {"lips below nose"}
    assert got["checks"]["landmark_layout"] == {"tally": {}, "disagreeing": {}}
    assert {c["topic"] for c in got["conventions"]} >= {"axes", "texture v", "layout"}
    assert got["errors"] == [] and not list(tmp_path.glob(".i.json.*"))  # atomic: no temp left

    store_images_upside_down(root, "*.jpg", "JPEG")
    rep = inspect_dataset(root, "facescape", check=True)
    assert rep.texture_orientation.held[("v flipped", "lips below nose")] == counted
    assert rep.texture_orientation.held[("as read", "lips below nose")] == 0
    assert "the facescape reader's texture v disagrees with these files" in inspect()

    for obj in root.rglob("*.obj"):
        _rewrite_obj_vertices(obj, "z up, facing -y")
    rep = inspect_dataset(root, "facescape", check=True)
    assert axis_verdict(rep.face_orientation) == ("differs", "z up, facing -y")
    # the texture is still tested, against the face found upright in the other convention
    assert rep.texture_orientation.held[("v flipped", "lips below nose")] == counted
    out = inspect()
    assert "these files look z up, facing -y, not y up facing +z" in out
    assert "the facescape reader's texture v disagrees with these files" in out


def test_frames_turned_by_their_landmarks_are_not_counted(
    procedural_model: FaceModel, tmp_path: Path
) -> None:
    """Bosphorus scans carry labelled landmarks the normaliser turns them upright by, so their
    file axes do not reach the views and inspect does not test them; BU scans' ``.bnd`` rows
    are read only as a set, so theirs do and it does."""
    cfg = SynthConfig(
        num_identities=1, expressions=("neutral", "happiness"), texture_size=32, seed=4
    )
    bos = write_synth(cfg, procedural_model, tmp_path / "bos", fmt="bosphorus").out_dir
    rep = inspect_dataset(bos, "bosphorus", check=True)
    assert rep.frames_checked > 0 and not rep.face_orientation.frames
    bu = write_synth(cfg, procedural_model, tmp_path / "bu", fmt="bu3dfe").out_dir
    rep = inspect_dataset(bu, "bu3dfe", check=True)
    assert rep.frames_checked > 0 and rep.face_orientation.frames[AS_READ] == rep.frames_checked
