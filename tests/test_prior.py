"""The geometric prior: canonical landmarks, proxies, references, FACS prior, prior table."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from mvmodel.prior.facs import (
    CLASSES,
    cosine_to_prototypes,
    geometric_prior,
    prototype_matrix,
)
from mvmodel.prior.features import (
    NOSE_TILT_DEG,
    PROXIES,
    aggregate_clip,
    canonical_array,
    compute_proxies,
    face_frame,
    relative_features,
    robust_scale,
    subject_reference,
)
from mvmodel.prior.table import (
    PROXY_COLUMNS,
    PriorIndex,
    lookup,
    prior_table,
    prob_columns,
    read_prior_table,
    write_prior_table,
)
from schemas.landmarks import (
    BND_TO_CANONICAL,
    BOSPHORUS_LABELS,
    BOSPHORUS_TO_CANONICAL,
    CANONICAL_LANDMARKS,
    IBUG_TO_CANONICAL,
    canonical_index,
    canonical_name,
    ibug_id,
)

P = {name: i for i, name in enumerate(PROXIES)}
IOD = 90.0
SFM_IBUG = [9, *range(18, 61), 62, 63, 64, 66, 67, 68]  # the 50 ids the Surrey Face Model defines


# --------------------------------------------------------------------------- a hand-made face
def frontal_face() -> dict[int, np.ndarray]:
    """ibug id -> position (mm) of a frontal face in the canonical frame: x from the subject's
    right eye to the left one, y up, looking along +z; outer eye corners 90 mm apart. The nose
    base sits forward of the eyes by the tilt the face frame assumes, so that the frame built
    from these landmarks is the identity."""

    def lean(nose: str, drop: float) -> float:  # z of a nose point ``drop`` mm below the eyes
        return drop * math.tan(math.radians(NOSE_TILT_DEG[nose]))

    pts = {
        37: (-45.0, 0.0, 0.0),
        40: (-15.0, 0.0, 0.0),
        43: (15.0, 0.0, 0.0),
        46: (45.0, 0.0, 0.0),
        38: (-35.0, 5.0, 1.0),
        39: (-25.0, 5.0, 1.0),
        41: (-25.0, -4.0, 1.0),
        42: (-35.0, -4.0, 1.0),
        44: (25.0, 5.0, 1.0),
        45: (35.0, 5.0, 1.0),
        47: (35.0, -4.0, 1.0),
        48: (25.0, -4.0, 1.0),
        18: (-50.0, 18.0, -2.0),
        20: (-32.0, 22.0, 0.0),
        22: (-12.0, 18.0, 2.0),
        23: (12.0, 18.0, 2.0),
        25: (32.0, 22.0, 0.0),
        27: (50.0, 18.0, -2.0),
        28: (0.0, 5.0, 8.0),
        31: (0.0, -35.0, lean("nose_tip", 35.0)),
        34: (0.0, -50.0, lean("subnasale", 50.0)),
        32: (-14.0, -47.0, lean("alae", 47.0)),
        36: (14.0, -47.0, lean("alae", 47.0)),
        49: (-25.0, -75.0, 10.0),
        55: (25.0, -75.0, 10.0),
        52: (0.0, -67.0, 18.0),
        63: (0.0, -73.0, 16.0),
        67: (0.0, -76.0, 16.0),
        58: (0.0, -83.0, 16.0),
        9: (0.0, -120.0, 5.0),
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in pts.items()}


def as_arrays(face: Mapping[int, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    ids = sorted(face)
    return np.stack([face[i] for i in ids]), [f"ibug{i}" for i in ids]


def proxies_of(face: Mapping[int, np.ndarray]) -> np.ndarray:
    lm, names = as_arrays(face)
    return compute_proxies(lm, names)[0]


def moved(
    face: Mapping[int, np.ndarray], **moves: tuple[float, float, float]
) -> dict[int, np.ndarray]:
    """A copy of ``face`` with points ``p<id>`` moved by the given offsets (mm)."""
    out = {k: v.copy() for k, v in face.items()}
    for key, delta in moves.items():
        out[int(key[1:])] += np.asarray(delta, dtype=np.float64)
    return out


def random_similarity(rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q, float(rng.uniform(0.01, 20.0)), rng.normal(0, 500, 3)


# --------------------------------------------------------------------------- canonical mapping
def test_mapping_tables_name_canonical_points_once() -> None:
    assert len(set(CANONICAL_LANDMARKS)) == len(CANONICAL_LANDMARKS)
    for table in (IBUG_TO_CANONICAL, BND_TO_CANONICAL, BOSPHORUS_TO_CANONICAL):
        values = list(table.values())
        assert set(values) <= set(CANONICAL_LANDMARKS)
        assert len(set(values)) == len(values), "two source points map to one canonical point"
    assert {lab.lower() for lab in BOSPHORUS_LABELS} == set(BOSPHORUS_TO_CANONICAL)


def test_canonical_index_ibug_sfm_subset() -> None:
    names = [f"ibug{i}" for i in SFM_IBUG]
    idx = canonical_index(names)
    assert names[idx["eye_outer_right"]] == "ibug37"  # subject's right eye = ibug 37-42
    assert names[idx["eye_outer_left"]] == "ibug46"
    assert names[idx["mouth_corner_right"]] == "ibug49"
    assert names[idx["subnasale"]] == "ibug34"
    assert names[idx["upper_lip_inner"]] == "ibug63"
    assert names[idx["chin"]] == "ibug9"
    # Lid midpoints are not ibug points; the SFM's two points per lid are there instead.
    assert "upper_lid_right" not in idx
    assert names[idx["upper_lid_outer_right"]] == "ibug38"
    # Canonical points the list lacks are absent, never row 0.
    partial = canonical_index(["ibug1", "ibug37", " IBUG46 ", "Ibug61"])
    assert partial == {"eye_outer_right": 1, "eye_outer_left": 2}


def test_canonical_index_bnd_guess() -> None:
    names = [f"bnd{i:02d}" for i in range(83)]
    idx = canonical_index(names)
    assert idx["eye_outer_right"] == 0
    assert idx["eye_outer_left"] == 12
    assert idx["mouth_corner_right"] == 48
    assert idx["mouth_corner_left"] == 54
    assert idx["chin"] == 75
    assert "subnasale" not in idx and "nose_tip" not in idx
    assert canonical_index(["bnd48", "bnd54"]) == {"mouth_corner_right": 0, "mouth_corner_left": 1}


def test_canonical_index_bosphorus_words() -> None:
    names = [
        "  outer LEFT eye   corner",
        "Chin middle",
        "Nose tip",
        "Outer right eye corner",
        "Left mouth corner",
        "Right mouth corner",
        "Lower lip outer middle",
        "Some other point",
    ]
    idx = canonical_index(names)
    # Bosphorus "left" (smaller x) is read as the subject's right.
    assert idx["eye_outer_right"] == 0
    assert idx["eye_outer_left"] == 3
    assert idx["mouth_corner_right"] == 4
    assert idx["mouth_corner_left"] == 5
    assert idx["chin"] == 1 and idx["nose_tip"] == 2 and idx["lower_lip_outer"] == 6
    assert "upper_lip_outer" not in idx and "eye_inner_right" not in idx
    assert canonical_name("Some other point") is None
    assert len(canonical_index(list(BOSPHORUS_LABELS))) == 22


def test_ibug_id_reads_only_ibug_names() -> None:
    assert ibug_id("ibug37") == 37 and ibug_id(" IBUG9 ") == 9
    assert ibug_id("bnd37") is None and ibug_id("ibug") is None and ibug_id("ibug3x") is None


def test_first_duplicate_wins_and_order_is_canonical() -> None:
    idx = canonical_index(["ibug49", "ibug37", "ibug37"])
    assert idx == {"eye_outer_right": 1, "mouth_corner_right": 0}
    assert list(idx) == [c for c in CANONICAL_LANDMARKS if c in idx]


# --------------------------------------------------------------------------- proxies
def test_face_frame_is_identity_on_a_canonical_face() -> None:
    lm, names = as_arrays(frontal_face())
    rot, origin, iod = face_frame(canonical_array(lm, names))
    np.testing.assert_allclose(rot[0], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(origin[0], [0.0, 0.0, 0.0], atol=1e-9)
    assert iod[0] == pytest.approx(IOD)
    # The same with the alae or the nose tip as the nose reference.
    for drop in ((34,), (34, 32, 36)):
        lm, names = as_arrays({k: v for k, v in frontal_face().items() if k not in drop})
        np.testing.assert_allclose(
            face_frame(canonical_array(lm, names))[0][0], np.eye(3), atol=1e-9
        )


def test_proxies_known_geometry() -> None:
    face = frontal_face()
    x = proxies_of(face)
    assert x[P["mouth_width"]] == pytest.approx(50 / IOD)
    assert x[P["mouth_corner_height"]] == pytest.approx((-75 + 50) / IOD)
    assert x[P["lip_opening"]] == pytest.approx(3 / IOD)
    assert x[P["brow_height"]] == pytest.approx(22 / IOD)  # from the eye-corner centre
    assert x[P["inner_brow_height"]] == pytest.approx(18 / IOD)
    assert x[P["inner_brow_gap"]] == pytest.approx(24 / IOD)
    assert x[P["eye_opening"]] == pytest.approx(9 / IOD)
    assert x[P["upper_lip_height"]] == pytest.approx((-67 + 50) / IOD)
    assert x[P["lip_height"]] == pytest.approx(math.hypot(16, 2) / IOD)
    assert x[P["nose_wrinkle"]] == pytest.approx(-47 / IOD)
    lid = compute_proxies(*as_arrays(face), brow_reference="upper_lid")[0]
    assert lid[P["brow_height"]] == pytest.approx(17 / IOD)


def test_proxy_changes_match_the_motion() -> None:
    face = frontal_face()
    base = proxies_of(face)
    step = 0.05 * IOD
    # Widen the mouth by 10 % of the IOD.
    d = proxies_of(moved(face, p49=(-step, 0, 0), p55=(step, 0, 0))) - base
    assert d[P["mouth_width"]] == pytest.approx(0.1)
    assert np.allclose(np.delete(d, P["mouth_width"]), 0.0)
    # Corners up (AU12) by 5 % of the IOD.
    d = proxies_of(moved(face, p49=(0, step, 0), p55=(0, step, 0))) - base
    assert d[P["mouth_corner_height"]] == pytest.approx(0.05)
    # Inner brows up and together (AU1+4).
    d = proxies_of(moved(face, p22=(step, step, 0), p23=(-step, step, 0))) - base
    assert d[P["inner_brow_height"]] == pytest.approx(0.05)
    assert d[P["inner_brow_gap"]] == pytest.approx(-0.1)
    assert d[P["brow_height"]] == pytest.approx(0.0)
    # Jaw drop: the lower lip goes down.
    d = proxies_of(moved(face, p67=(0, -step, 0), p58=(0, -step, 0))) - base
    assert d[P["lip_opening"]] == pytest.approx(0.05)
    assert d[P["lip_height"]] > 0.04
    # Upper lip raised (AU10) and alae raised (AU9).
    d = proxies_of(moved(face, p52=(0, step, 0), p32=(0, step, 0), p36=(0, step, 0))) - base
    assert d[P["upper_lip_height"]] == pytest.approx(0.05)
    assert d[P["nose_wrinkle"]] == pytest.approx(0.05)


def test_proxies_invariant_to_similarity_transforms() -> None:
    rng = np.random.default_rng(7)
    lm, names = as_arrays(frontal_face())
    faces = [lm + rng.normal(0, 1.5, lm.shape) for _ in range(5)]
    base = compute_proxies(np.stack(faces), names)
    for _ in range(4):
        rot, scale, shift = random_similarity(rng)
        moved_faces = np.stack([scale * f @ rot.T + shift for f in faces])
        np.testing.assert_allclose(compute_proxies(moved_faces, names), base, atol=1e-9)


def test_inner_corner_iod_fallback_keeps_the_scale() -> None:
    face = frontal_face()
    full = proxies_of(face)
    no_outer = {k: v for k, v in face.items() if k not in (37, 46)}
    x = proxies_of(no_outer)
    # Inner corners 30 mm apart x 2.56 stand in for the 90 mm outer distance.
    np.testing.assert_allclose(x[P["mouth_width"]], full[P["mouth_width"]] * IOD / (30 * 2.56))


def test_missing_points_give_nan_never_zero() -> None:
    face = frontal_face()
    no_mouth = {k: v for k, v in face.items() if k not in (49, 55)}
    x = proxies_of(no_mouth)
    assert np.isnan(x[P["mouth_width"]]) and np.isnan(x[P["mouth_corner_height"]])
    others = np.delete(x, [P["mouth_width"], P["mouth_corner_height"]])
    assert np.isfinite(others).all()
    # No inner lips: the lip opening falls back to the outer gap.
    no_inner = {k: v for k, v in face.items() if k not in (63, 67)}
    assert proxies_of(no_inner)[P["lip_opening"]] == pytest.approx(math.hypot(16, 2) / IOD)
    # No eye corner pair: no scale, every proxy undefined.
    no_eyes = {k: v for k, v in face.items() if k not in (37, 40, 43, 46)}
    assert np.isnan(proxies_of(no_eyes)).all()
    # NaN coordinates count as missing.
    lm, names = as_arrays(face)
    lm[names.index("ibug52")] = np.nan
    x = compute_proxies(lm, names)[0]
    assert np.isnan(x[P["upper_lip_height"]]) and np.isnan(x[P["lip_height"]])
    assert np.isfinite(x[P["mouth_width"]])


def test_bosphorus_words_give_the_same_proxies_where_defined() -> None:
    face = frontal_face()
    words = {
        37: "Outer left eye corner",
        40: "Inner left eye corner",
        43: "Inner right eye corner",
        46: "Outer right eye corner",
        20: "Middle left eyebrow",
        22: "Inner left eyebrow",
        23: "Inner right eyebrow",
        25: "Middle right eyebrow",
        31: "Nose tip",
        49: "Left mouth corner",
        55: "Right mouth corner",
        52: "Upper lip outer middle",
        63: "Upper lip inner middle",
        67: "Lower lip inner middle",
        58: "Lower lip outer middle",
        32: "Left nose peak",
        36: "Right nose peak",
    }
    lm = np.stack([face[k] for k in words])
    x = compute_proxies(lm, list(words.values()))[0]
    assert np.isnan(x[P["eye_opening"]])  # Bosphorus has no eyelid points
    for name in PROXIES:
        if name in ("eye_opening", "mouth_corner_height", "upper_lip_height"):
            continue  # no lids; nose base = the alae here, the subnasale with ibug
        assert x[P[name]] == pytest.approx(proxies_of(face)[P[name]])


# --------------------------------------------------------------------------- references
def test_robust_scale() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2.0, (20000, 2))
    x[:, 1] = 5.0
    x[:100, 0] = 1e6  # outliers (0.5 %) do not move it
    sc = robust_scale(x)
    assert sc[0] == pytest.approx(2.0, rel=0.05)
    assert np.isnan(sc[1])
    assert robust_scale(x, quantile=0.5)[0] == pytest.approx(2.0, rel=0.05)


def test_subject_reference_rays_finds_the_common_origin() -> None:
    rng = np.random.default_rng(3)
    neutral = rng.normal(0, 1, 10)
    directions = rng.normal(0, 1, (6, 10)) + np.array([2.0] + [0.0] * 9)  # all widen proxy 0
    rows = [neutral + w * d for d in directions for w in (0.75, 1.0)]
    rows.insert(5, neutral)
    rows = np.stack(rows) + rng.normal(0, 0.01, (13, 10))
    ref, row = subject_reference(rows)
    assert row == 5
    np.testing.assert_array_equal(ref, rows[5])
    # The median is pulled away from the neutral row by the shared direction.
    assert subject_reference(rows, method="median")[1] != 5
    # Repeated frames (several neutral scans, or a sequence's still frames) are no rays.
    repeats = np.vstack([rows, np.repeat(rows[5:6], 3, axis=0) + rng.normal(0, 0.01, (3, 10))])
    assert subject_reference(repeats)[1] in (5, 13, 14, 15)
    far = np.vstack([rows, np.repeat(rows[:1], 4, axis=0) + rng.normal(0, 0.01, (4, 10))])
    assert subject_reference(far)[1] == 5
    # Too few rows for rays: the median rule.
    assert subject_reference(rows[:4])[1] == subject_reference(rows[:4], method="median")[1]


def test_relative_features_reference_modes() -> None:
    f = len(PROXIES)
    a = np.full((1, f), 1.0)
    b = np.full((1, f), 3.0)
    seq_late = np.stack([np.full(f, 5.0), np.full(f, 6.0)])
    seq_early = np.stack([np.full(f, 2.0), np.full(f, 4.0)])
    per_sample = [a, b, seq_late, seq_early]
    kw: dict[str, Any] = dict(
        subjects=["s1", "s1", "s1", "s1"],
        sequences=["a", "b", "q", "q"],
        kinds=["static", "static", "sequence", "sequence"],
        frames=[[0], [0], [7, 9], [1, 3]],
    )
    rel, used = relative_features(per_sample, mode="population", **kw)
    population = np.mean([1.0, 3.0, 5.5, 3.0])
    assert used == ["population"] * 4
    np.testing.assert_allclose(rel[0], 1.0 - population)
    rel, used = relative_features(per_sample, mode="sequence-first-frame", **kw)
    assert used == ["population", "population", "sequence-first-frame", "sequence-first-frame"]
    np.testing.assert_allclose(rel[2], seq_late - 2.0)  # frame 1 of the other clip is first
    rel, used = relative_features(per_sample, mode="auto", min_subject_frames=2, **kw)
    assert used == ["subject", "subject", "sequence-first-frame", "sequence-first-frame"]
    assert np.isfinite(rel[0]).all() and (rel[0] * rel[1] <= 0).all()  # one of the two scans
    rel, used = relative_features(per_sample, mode="auto", min_subject_frames=99, **kw)
    assert used[:2] == ["population", "population"]
    # NaN in the reference leaves the proxy undefined.
    nan_first = [np.array([[np.nan] + [0.0] * (f - 1)]), np.zeros((1, f))]
    rel, _ = relative_features(
        nan_first,
        subjects=["x", "y"],
        sequences=["a", "a"],
        kinds=["sequence"] * 2,
        mode="sequence-first-frame",
    )
    assert np.isnan(rel[0][0, 0]) and np.isfinite(rel[1]).all()


def test_a_carried_reference_frame_wins_over_the_clips_frames() -> None:
    """A clip cut around the peak (source frames 7, 9) carries its sequence's frame 0: that is
    the reference, not the clip's earliest frame; a carried frame without any proxy is skipped;
    without carried frames the old rule (earliest frame held) still holds."""
    f = len(PROXIES)
    clip = np.stack([np.full(f, 5.0), np.full(f, 6.0)])
    kw: dict[str, Any] = dict(
        subjects=["s1"],
        sequences=["q"],
        kinds=["sequence"],
        frames=[[7, 9]],
        mode="sequence-first-frame",
    )
    rel, _ = relative_features([clip], carried=[(0, np.full(f, 1.0))], **kw)
    np.testing.assert_allclose(rel[0], clip - 1.0)
    rel, _ = relative_features([clip], carried=[(0, np.full(f, np.nan))], **kw)
    np.testing.assert_allclose(rel[0], clip - 5.0)
    rel, _ = relative_features([clip], **kw)
    np.testing.assert_allclose(rel[0], clip - 5.0)
    with pytest.raises(ValueError, match="carried"):
        relative_features([clip], carried=[], **kw)


def test_prior_table_measures_a_peak_clip_from_its_carried_first_frame() -> None:
    """The 2026-12-02 flaw: a clip holding only the apex and the release, measured from its own
    first frame, gets the movement with the wrong sign; with the sequence's neutral frame 0
    carried in its json (schema 1.1) it names surprise at the full opening."""
    others = [s for s in hand_samples() if s["key"] != "clip"]  # the population's scale
    full = hand_samples()[3]
    neutral, surprise = full["landmarks"][0], full["landmarks"][1]
    clip = NoLabels(full, key="late", frames=[10, 20], landmarks=[surprise, neutral])

    def row(sample: dict[str, Any]) -> dict[str, Any]:
        df = prior_table([*others, sample], reference="auto")
        return next(r for r in df.iter_rows(named=True) if r["key"] == "late")

    old = row(clip)
    assert old["rel_lip_opening"] == pytest.approx(-0.1)  # measured from the apex: wrong sign
    new = row(NoLabels(clip, reference_frame=0, reference_landmarks=neutral))
    assert new["frame"] == 0 and new["rel_lip_opening"] == pytest.approx(0.1)
    assert CLASSES[int(np.argmax([new[c] for c in prob_columns()]))] == "surprise"


def test_aggregate_clip_peak_and_mean() -> None:
    clip = np.array([[0.0, 0.0], [0.1, np.nan], [0.0, -0.5]])
    vec, t = aggregate_clip(clip, "peak")
    assert t == 2
    np.testing.assert_array_equal(vec, clip[2])
    vec, t = aggregate_clip(clip, "peak", scale=[0.01, 1.0])  # proxy 0 counts 100x more
    assert t == 1
    vec, t = aggregate_clip(clip, "mean")
    assert t == -1
    np.testing.assert_allclose(vec, [0.1 / 3, -0.25])


# --------------------------------------------------------------------------- FACS prior
def test_cosine_leaves_nan_proxies_out_of_both_vectors() -> None:
    w = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    z = np.array([[2.0, np.nan, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    cos = cosine_to_prototypes(z, w)
    assert cos[0, 0] == pytest.approx(1.0)  # [2, -, 0] vs [1, -, 0]
    assert cos[0, 1] == pytest.approx(0.0)
    np.testing.assert_array_equal(cos[1], [0.0, 0.0])
    assert cos[2, 0] == pytest.approx(2 / (math.sqrt(3) * math.sqrt(2)))


def test_prototypes_cover_the_classes_and_proxies() -> None:
    w = prototype_matrix()
    assert w.shape == (len(CLASSES), len(PROXIES))
    assert (np.abs(w).sum(axis=1) > 0).all()
    happy = w[CLASSES.index("happiness")]
    assert happy[P["mouth_width"]] > 0 and happy[P["mouth_corner_height"]] > 0
    sad = w[CLASSES.index("sadness")]
    assert sad[P["mouth_corner_height"]] < 0 and sad[P["inner_brow_height"]] > 0


def test_geometric_prior_rows() -> None:
    w = prototype_matrix()
    rel = np.vstack([w, np.zeros(len(PROXIES)), np.full(len(PROXIES), np.nan)])
    p = geometric_prior(rel, scale=np.ones(len(PROXIES)))
    assert p.shape == (8, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p[:6].argmax(axis=1) == np.arange(6)).all()  # each prototype is its own class
    np.testing.assert_allclose(p[6:], 1 / 6)  # at the reference / undefined: uniform
    pn = geometric_prior(rel, scale=np.ones(len(PROXIES)), neutral=True)
    assert pn.shape == (8, 7)
    assert pn[6].argmax() == 6  # neutral wins at the reference
    assert (pn[:6].argmax(axis=1) == np.arange(6)).all()
    sharper = geometric_prior(rel[:6], scale=np.ones(len(PROXIES)), temperature=0.01)
    assert (sharper.max(axis=1) > p[:6].max(axis=1)).all()


# --------------------------------------------------------------------------- table
class NoLabels(dict[str, Any]):
    """A sample json that fails the test if anything reads its labels."""

    def __getitem__(self, key: str) -> Any:
        assert key != "labels", "the prior read the labels"
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        assert key != "labels", "the prior read the labels"
        return super().get(key, default)


def hand_samples() -> list[dict[str, Any]]:
    face = frontal_face()
    lm, names = as_arrays(face)
    step = 0.1 * IOD
    smile = as_arrays(moved(face, p49=(-step, step, 0), p55=(step, step, 0)))[0]
    sad = as_arrays(
        moved(face, p49=(0, -step, 0), p55=(0, -step, 0), p22=(3, 3, 0), p23=(-3, 3, 0))
    )[0]
    surprise = as_arrays(
        moved(
            face,
            p20=(0, step, 0),
            p25=(0, step, 0),
            p22=(0, step, 0),
            p23=(0, step, 0),
            p67=(0, -step, 0),
            p58=(0, -step, 0),
            p41=(0, -2, 0),
            p42=(0, -2, 0),
            p47=(0, -2, 0),
            p48=(0, -2, 0),
        )
    )[0]
    base = dict(dataset="hand", subject="S1", landmark_names=names, labels={"expression": "x"})
    out = [
        NoLabels(base, key="n", sequence="n", kind="static", frames=[0], landmarks=[lm.tolist()]),
        NoLabels(
            base, key="h", sequence="h", kind="static", frames=[0], landmarks=[smile.tolist()]
        ),
        NoLabels(base, key="s", sequence="s", kind="static", frames=[0], landmarks=[sad.tolist()]),
        NoLabels(
            base,
            key="clip",
            sequence="su",
            kind="sequence",
            frames=[0, 10, 20],
            landmarks=[lm.tolist(), surprise.tolist(), lm.tolist()],
        ),
        NoLabels(base, key="none", sequence="z", kind="static", frames=[0], landmarks=None),
    ]
    return out


def test_prior_table_rows_and_round_trip(tmp_path: Path) -> None:
    df = prior_table(hand_samples(), reference="auto")
    assert df["key"].to_list() == ["n", "h", "s", "clip", "none"]
    assert set(PROXY_COLUMNS) <= set(df.columns) and set(prob_columns()) <= set(df.columns)
    row = {r["key"]: r for r in df.iter_rows(named=True)}
    assert row["clip"]["reference"] == "sequence-first-frame"
    assert row["clip"]["frame"] == 1  # the peak frame
    assert row["n"]["reference"] == "subject"
    assert row["none"]["num_landmarks_found"] == 0
    assert row["n"]["num_landmarks_found"] == len(
        canonical_index(hand_samples()[0]["landmark_names"])
    )
    assert row["none"]["rel_mouth_width"] is None  # undefined, not 0
    assert row["clip"]["rel_lip_opening"] == pytest.approx(0.1)
    p = df.select(prob_columns()).to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[4], 1 / 6)
    assert CLASSES[int(p[3].argmax())] == "surprise"
    assert row["h"]["rel_mouth_width"] == pytest.approx(0.2)

    path = write_prior_table(df, tmp_path / "sub" / "prior.parquet")
    assert sorted(os.listdir(path.parent)) == ["prior.parquet"]  # no temporary file left
    back = read_prior_table(path)
    assert back.equals(df)
    with pytest.raises(ValueError, match="not a prior table"):
        pl.DataFrame({"key": ["a"]}).write_parquet(tmp_path / "bad.parquet")
        read_prior_table(tmp_path / "bad.parquet")


def test_prior_table_population_mode_and_duplicates() -> None:
    df = prior_table(hand_samples(), reference="population", neutral=True)
    assert set(df["reference"]) == {"population"}
    assert "p_neutral" in df.columns
    with pytest.raises(ValueError, match="duplicate"):
        prior_table(hand_samples() + hand_samples()[:1])


def test_prior_table_pools_only_the_fit_samples() -> None:
    """``fit_keys`` (the training samples): the scales and the population mean come from them
    only, so another subject's landmarks, however they change, leave every fitted row's
    p_geo bit-identical; pooled with everyone (None), they do move it."""
    train = [NoLabels(s, subject="S1") for s in hand_samples()]

    def held_out(gain: float) -> list[dict[str, Any]]:
        out = []
        for s in hand_samples():
            lm = s["landmarks"]
            if lm is not None:  # exaggerate S2's expressions around its neutral scan
                base = np.asarray(hand_samples()[0]["landmarks"][0])
                lm = [(base + gain * (np.asarray(f) - base)).tolist() for f in lm]
            out.append(NoLabels(s, key=f"S2-{s['key']}", subject="S2", landmarks=lm))
        return out

    def p_train(extra: list[dict[str, Any]], fit: set[str] | None, reference: str) -> np.ndarray:
        df = prior_table(train + extra, reference=reference, fit_keys=fit)  # type: ignore[arg-type]
        keys = [s["key"] for s in train]
        return df.filter(pl.col("key").is_in(keys)).select(prob_columns()).to_numpy()

    fit = {s["key"] for s in train}
    for reference in ("auto", "population"):
        a, b = p_train(held_out(1.0), fit, reference), p_train(held_out(3.0), fit, reference)
        assert np.array_equal(a, b), reference
        assert np.array_equal(a, p_train([], None, reference)), reference
        pooled_a, pooled_b = (
            p_train(held_out(1.0), None, reference),
            p_train(held_out(3.0), None, reference),
        )
        assert not np.allclose(pooled_a, pooled_b), reference  # the test can tell


def test_lookup_uniform_and_counted_for_missing_keys() -> None:
    df = prior_table(hand_samples())
    index = PriorIndex(df)
    got = index(["h", "missing", "n"])
    assert got.dtype == np.float32 and got.shape == (3, 6)
    want = df.filter(pl.col("key") == "h").select(prob_columns()).to_numpy()[0]
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    np.testing.assert_allclose(got[1], 1 / 6)
    assert index.missing == 1
    np.testing.assert_allclose(lookup(df, ["h"]), got[:1])
    np.testing.assert_allclose(lookup(df, ["n", "x"]), got[[2, 1]])
    assert lookup(index, []).shape == (0, 6)


# --------------------------------------------------------------------------- synthetic faces
def _synth_modules() -> tuple[Any, Any, Any]:
    """load_sfm, SynthConfig, iter_synth: the generator is moving to mvdata.synth.* ."""
    try:
        from mvdata.synth.facemodel import load_sfm
        from mvdata.synth.generate import SynthConfig, iter_synth
    except ImportError:
        try:
            from mvdata.facemodel import load_sfm  # type: ignore[no-redef]  # noqa: I001
            from mvdata.synth import SynthConfig, iter_synth  # type: ignore[no-redef,attr-defined]
        except ImportError as exc:
            pytest.skip(f"synthetic generator not importable: {exc}")
    return load_sfm, SynthConfig, iter_synth


def _synthetic_samples(
    num_ids: int, seed: int, as_bnd: bool = False
) -> Iterator[tuple[dict[str, Any], str]]:
    """Sample jsons of synthetic SFM faces with their expressions; ``as_bnd``: the landmarks as
    the 83 BU ``.bnd`` rows the synthetic BU writer puts in files (the guessed order)."""
    from mvdata.synth.native import bnd_rows

    load_sfm, synth_config, iter_synth = _synth_modules()
    directory = Path(os.environ.get("MVDATA_FACE_MODEL_DIR", "/nonexistent"))
    if not (directory / "sfm_shape_3448.bin").is_file():
        pytest.skip("Surrey Face Model files not available (set MVDATA_FACE_MODEL_DIR)")
    model = load_sfm(directory)
    cfg = synth_config(
        num_identities=num_ids,
        intensities=(3, 4),
        seed=seed,
        texture_size=16,
        pose_jitter_deg=3.0,
        noise_mm=0.2,
    )
    for sm in iter_synth(cfg, model):
        lm, names = sm.mesh.landmarks, list(sm.mesh.landmark_names)
        if as_bnd:
            lm, names = bnd_rows(sm.mesh)[0], [f"bnd{i:02d}" for i in range(83)]
        sample = dict(
            key=f"{sm.sequence}",
            dataset="synth",
            subject=sm.subject,
            sequence=sm.sequence,
            kind="static",
            frames=[0],
            landmarks=[lm.tolist()],
            landmark_names=names,
        )
        yield sample, sm.expression


def test_prior_zero_shot_on_synthetic_sfm_faces() -> None:
    """Zero-shot accuracy of argmax p_geo against the generator's expression (a measurement;
    labels are used here only, never by the prior). 12 identities (seed 1, not the seed the
    prototypes were looked at with), neutral + 6 expressions at intensities 3-4, 3 degree pose
    jitter; the neutral scans are in the set (as in BU-3DFE) and out of the score."""
    pairs = list(_synthetic_samples(12, seed=1))
    samples = [s for s, _ in pairs]
    label = {s["key"]: e for s, e in pairs}
    acc: dict[str, float] = {}
    for name, kw in {
        "subject-rays": dict(reference="subject", subject_method="rays"),
        "subject-median": dict(reference="subject", subject_method="median"),
        "population": dict(reference="population"),
    }.items():
        df = prior_table(samples, **kw)
        pred = np.asarray(CLASSES)[df.select(prob_columns()).to_numpy().argmax(axis=1)]
        truth = np.asarray([label[k] for k in df["key"]])
        keep = truth != "neutral"
        acc[name] = float((pred[keep] == truth[keep]).mean())
    print(f"zero-shot accuracy on 12 SFM identities: {acc}")
    assert acc["subject-rays"] >= 0.8  # measured 0.93
    assert acc["subject-rays"] > acc["population"] + 0.1
    assert acc["population"] > 2 / 6  # chance is 1/6


def test_prior_zero_shot_through_the_bnd_mapping() -> None:
    """The same faces with their landmarks written as BU ``.bnd`` rows in the guessed order
    (what `mvdata synth --format bu3dfe` writes): the prior reads them through
    ``BND_TO_CANONICAL``, which has no nose tip or subnasale and lid midpoints only, and still
    names the expressions (measured 0.93 through ibug and 0.93 through bnd on seed 1; 0.90 and
    0.85 on seed 2). Before the writer used the guessed order, this path read other points."""
    pairs = list(_synthetic_samples(12, seed=1, as_bnd=True))
    samples = [s for s, _ in pairs]
    label = {s["key"]: e for s, e in pairs}
    df = prior_table(samples, reference="subject", subject_method="rays")
    pred = np.asarray(CLASSES)[df.select(prob_columns()).to_numpy().argmax(axis=1)]
    truth = np.asarray([label[k] for k in df["key"]])
    keep = truth != "neutral"
    assert float((pred[keep] == truth[keep]).mean()) >= 0.85
