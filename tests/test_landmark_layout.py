"""The landmark layout check (``mvdata inspect --check``): anatomical relations measured through
a landmark mapping on the scans' own geometry. It must hold on correctly named faces in any pose,
and fail the relation a wrong mapping breaks: swapped sides, a mirrored file, a ring read
backwards or from the wrong start."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mvdata.core import Mesh
from mvdata.formats.landmarks import read_bnd, write_bnd
from mvdata.sources.inspect import inspect_dataset
from mvdata.sources.landmark_layout import (
    LAYOUT_CHECKS,
    add_layout,
    layout_tally,
    layout_verdicts,
)
from mvdata.sources.registry import get_source
from mvdata.synth.facemodel import FaceModel
from mvdata.synth.generate import SynthConfig, iter_synth
from mvdata.synth.native import BND_FROM_IBUG, bnd_rows
from mvdata.synth.writer import write_synth
from schemas.landmarks import BND_TO_CANONICAL, IBUG_TO_CANONICAL

ALL_HOLD = dict.fromkeys(LAYOUT_CHECKS, True)

#: ibug-68 id -> the id of the same point on the other side of the face (the midline maps to
#: itself): relabelling every point by it is a mapping that swaps right and left everywhere.
_MIRROR = {
    **{i: 18 - i for i in range(1, 18)},  # jaw 1-17
    **{i: 45 - i for i in range(18, 28)},  # brows 18-22 <-> 27-23
    **{i: i for i in range(28, 32)},  # nose bridge
    **{i: 68 - i for i in range(32, 37)},  # nose base 32-36
    **dict(zip(range(37, 49), (46, 45, 44, 43, 48, 47, 40, 39, 38, 37, 42, 41), strict=True)),
    **{49 + k: 49 + (6 - k) % 12 for k in range(12)},  # outer lip ring about 52 and 58
    **{61 + k: 61 + (4 - k) % 8 for k in range(8)},  # inner lip ring about 63 and 67
}


def _faces(model: FaceModel, n: int = 4) -> list[Mesh]:
    """Every expression of ``n`` identities in strong pose jitter (30 degrees) with noise."""
    cfg = SynthConfig(num_identities=n, pose_jitter_deg=30.0, noise_mm=0.2, seed=5)
    return [sm.mesh for sm in iter_synth(cfg, model)]


def _ibug_of(mesh: Mesh) -> tuple[list[str], np.ndarray]:
    assert mesh.landmarks is not None
    return list(mesh.landmark_names), mesh.landmarks


def test_every_relation_holds_on_correctly_named_faces(any_model: FaceModel) -> None:
    for mesh in _faces(any_model):
        names, pts = _ibug_of(mesh)
        assert layout_verdicts(names, pts) == ALL_HOLD


def test_a_mapping_that_swaps_the_sides_fails_only_the_sides(procedural_model: FaceModel) -> None:
    """A right/left swap everywhere keeps every in-plane relation (each 'outer' corner is still
    outside its 'inner' one) and puts the nose behind the eyes: only 'sides' can see it."""
    assert sorted(_MIRROR.values()) == sorted(_MIRROR)  # a permutation
    for mesh in _faces(procedural_model, 2):
        names, pts = _ibug_of(mesh)
        swapped = [f"ibug{_MIRROR[int(n[4:])]}" for n in names]
        assert layout_verdicts(swapped, pts) == {**ALL_HOLD, "sides": False}


def test_a_mirrored_file_fails_the_sides(procedural_model: FaceModel) -> None:
    """Right names on left-handed coordinates (x negated): the file, not the names, is wrong,
    and the same relation says so."""
    for mesh in _faces(procedural_model, 2):
        names, pts = _ibug_of(mesh)
        mirrored = pts * np.array([-1.0, 1.0, 1.0], np.float32)
        assert layout_verdicts(names, mirrored) == {**ALL_HOLD, "sides": False}


def test_the_written_bnd_rows_follow_the_guessed_layout(any_model: FaceModel) -> None:
    """The synthetic BU writer puts each ibug point in the row the guessed mapping names, so
    every relation holds through the ``bnd`` mapping, as on the ibug names."""
    for row, canon in BND_TO_CANONICAL.items():
        ids = BND_FROM_IBUG[row]
        sources = {IBUG_TO_CANONICAL.get(i) for i in ids}
        if canon.startswith(("upper_lid", "lower_lid")):  # a lid midpoint: its two ibug points
            side, lid = canon.rsplit("_", 1)[1], canon.split("_", 1)[0]
            assert sources == {f"{lid}_lid_outer_{side}", f"{lid}_lid_inner_{side}"}
        elif canon.startswith("nose_saddle_"):  # the bridge's side: midline and inner corner
            side = canon.rsplit("_", 1)[1]
            assert sources == {"nose_saddle", f"eye_inner_{side}"}
        else:
            assert sources == {canon}, (row, canon, ids)
    names = [f"bnd{i:02d}" for i in range(83)]
    for mesh in _faces(any_model, 2):
        pts, idx = bnd_rows(mesh)
        assert pts.shape == (83, 3) and idx.shape == (83,)
        assert layout_verdicts(names, pts) == ALL_HOLD


@pytest.mark.parametrize(
    ("wrong", "fails"),
    [
        # each eye ring read counter-clockwise: upper and lower lids trade rows
        ([0, 7, 6, 5, 4, 3, 2, 1, 8, 15, 14, 13, 12, 11, 10, 9], {"eyelids"}),
        # each eye ring started at its other corner: corners and lids trade rows
        ([4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11], {"eye corners", "eyelids"}),
        # 0-7 the subject's LEFT eye (the other reading of "left eye = 0-7"), the rest as
        # guessed: the eyes now say right-to-left runs the other way than the brows and mouth
        (
            [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7],
            {"eye corners", "sides", "brows", "mouth"},
        ),
    ],
)
def test_a_wrong_bnd_order_fails_the_relations_it_breaks(
    procedural_model: FaceModel, wrong: list[int], fails: set[str]
) -> None:
    names = [f"bnd{i:02d}" for i in range(83)]
    for mesh in _faces(procedural_model, 2):
        pts, _ = bnd_rows(mesh)
        reordered = pts.copy()
        reordered[:16] = pts[wrong]
        got = layout_verdicts(names, reordered)
        assert {c for c, v in got.items() if v is False} == fails, got


def test_missing_points_leave_relations_undetermined() -> None:
    """No eyes: no frame, nothing is claimed. Eyes, brows and mouth only: 'sides' (no nose)
    and 'chin' stay undetermined, never failed."""
    assert layout_verdicts([], np.zeros((0, 3))) == dict.fromkeys(LAYOUT_CHECKS)
    names = ["ibug37", "ibug40", "ibug43", "ibug46", "ibug20", "ibug25", "ibug49", "ibug55"]
    pts = np.array(
        [[-45, 0, 0], [-15, 0, 0], [15, 0, 0], [45, 0, 0], [-30, 20, 0], [30, 20, 0]]
        + [[-25, -60, 0], [25, -60, 0]],
        float,
    )
    got = layout_verdicts(names, pts)
    assert got["sides"] is None and got["chin"] is None and got["eyelids"] is None
    assert got["eye corners"] and got["brows"] and got["mouth"]
    pts[[0, 1, 6, 7]] = pts[[1, 0, 7, 6]]  # one eye's corners and the mouth corners swapped
    got = layout_verdicts(names, pts)
    assert got["eye corners"] is False and got["mouth"] is False and got["brows"]


def test_tally_counts_per_scheme_and_names_the_first_failing_file(
    procedural_model: FaceModel,
) -> None:
    tally = layout_tally()
    meshes = _faces(procedural_model, 1)
    for k, mesh in enumerate(meshes):
        names, pts = _ibug_of(mesh)
        add_layout(tally, f"good{k}", names, pts)
        add_layout(tally, f"mirrored{k}", names, pts * np.array([-1.0, 1.0, 1.0], np.float32))
    n = len(meshes)
    assert tally.groups() == ["ibug"] and tally.frames["ibug"] == 2 * n
    assert tally.failed[("ibug", "sides")] == n and tally.held[("ibug", "sides")] == n
    assert tally.first_failure == {("ibug", "sides"): "mirrored0"}
    assert tally.disagreeing("ibug") == []  # half the frames: not "most"
    add_layout(tally, "one-more-mirrored", names, pts * np.array([-1.0, 1.0, 1.0], np.float32))
    assert tally.disagreeing("ibug") == ["sides"]


def test_inspect_tests_the_bnd_guess_on_the_files(
    procedural_model: FaceModel, tmp_path: Path
) -> None:
    """`mvdata inspect` on BU-3DFE files in the guessed order says the mapping agrees; on the
    same files with the eye rings in the other order it fails 'sides' on every frame, names the
    first file and says the prior would be wrong, with exit 0 (inspect reports, it does not
    judge the files unreadable)."""
    from cli.mvdata_app import app

    cfg = SynthConfig(num_identities=2, expressions=("neutral", "happiness"), texture_size=16)
    good = write_synth(cfg, procedural_model, tmp_path / "good", fmt="bu3dfe").out_dir
    rep = inspect_dataset(good, "bu3dfe", check=True)
    n = rep.frames_checked
    assert n > 0 and rep.landmark_layout.frames == {"bnd": n}
    assert all(rep.landmark_layout.held[("bnd", c)] == n for c in LAYOUT_CHECKS)

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    for path in sorted(bad.rglob("*.bnd")):
        lm = read_bnd(path)
        assert lm.indices is not None
        order = [*range(8, 16), *range(8), *range(16, 83)]
        write_bnd(path, lm.points[order], lm.indices[order])
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", str(good), "-s", "bu3dfe"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "the bnd mapping agrees with these files' geometry" in r.output
    r = runner.invoke(app, ["inspect", str(bad), "-s", "bu3dfe"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert "the bnd mapping disagrees with these files' geometry" in r.output
    assert "sides" in r.output.split("disagrees", 1)[1].split("\n", 1)[0]
    first = min(str(p.with_suffix(".wrl")) for p in bad.rglob("*.bnd"))
    rep = inspect_dataset(bad, "bu3dfe", check=True)
    assert rep.landmark_layout.failed[("bnd", "sides")] == n
    assert rep.landmark_layout.first_failure[("bnd", "sides")] == first
    # the look a fresh `mvdata build` takes before rendering says the same at once
    from mvdata.sources.inspect import convention_warnings, spot_check

    def layout_warnings(root: Path) -> list[str]:
        items = get_source("bu3dfe").scan(root).items
        found = convention_warnings(spot_check(items, "bu3dfe"))
        return [w for w in found if "landmark mapping" in w]

    assert layout_warnings(good) == []
    (warning,) = layout_warnings(bad)
    assert warning.startswith("the bnd landmark mapping disagrees") and "sides" in warning
