"""Action-unit proxies from canonical landmarks, and relative features against a reference.

The paper (arXiv 2505.09336) speaks of pseudo-labels only; the geometric prior is this project's
design (docs/method.md, "Geometric prior"). Everything here is label-free: no function reads an
expression label.

Proxies
-------
Each proxy is a distance or a height divided by the inter-ocular distance (IOD: outer eye
corners; inner corners times :data:`OUTER_TO_INNER_EYE_RATIO` as a fallback), measured in a
face frame built from the landmarks themselves (:func:`face_frame`), so that every proxy is
invariant to a similarity transform (translation, rotation, scale) of the landmarks. Heights are
taken along the face's "up" axis, distances in 3D. A proxy whose points are missing is NaN
(masked), never 0.

Relative features
-----------------
``relative = proxies - reference``. method.md measured the prior against the subject's *neutral*
scan, but training may not read labels, so the "subject" reference here is label-free
(:func:`subject_reference`): among all frames of one subject, the one from which the others line
up best in rays ("rays": the scans of one expression at several intensities lie on a ray from the
neutral face), or the one closest to the subject's per-proxy median ("median", weaker: the
median sits among the weak expressions when every expression moves a proxy the same way).
Sequences use their first frame (BU-4DFE sequences start neutral); otherwise the population
mean. See :func:`relative_features`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.landmarks import CANONICAL_LANDMARKS, canonical_index

__all__ = [
    "NOSE_TILT_DEG",
    "OUTER_TO_INNER_EYE_RATIO",
    "PROXIES",
    "ClipAggregate",
    "BrowReference",
    "ReferenceMode",
    "SubjectReferenceMethod",
    "aggregate_clip",
    "canonical_array",
    "compute_proxies",
    "face_frame",
    "nan_norm",
    "proxies_from_canonical",
    "relative_features",
    "robust_scale",
    "subject_reference",
]

FloatArray = NDArray[np.float64]
ReferenceMode = Literal["auto", "subject", "sequence-first-frame", "population"]
SubjectReferenceMethod = Literal["rays", "median"]
BrowReference = Literal["eye_corners", "upper_lid"]
ClipAggregate = Literal["peak", "mean"]

#: The action-unit proxies, in column order (docs/method.md's list plus a nose-wrinkle proxy).
#: Signs: every height is "point y - reference y" with y up, so raising a point increases it.
PROXIES: tuple[str, ...] = (
    "mouth_width",  # corner to corner (AU12, AU20 widen; AU23/24 narrow)
    "mouth_corner_height",  # mean corner y - nose base y (AU12 up, AU15 down)
    "lip_opening",  # inner lip gap, else outer (AU25/26/27)
    "brow_height",  # mid-brow y - eye-corner centre y (or upper lid y) (AU1+2 up, AU4 down)
    "inner_brow_height",  # inner-brow y - the same eye reference (AU1 up, AU4 down)
    "inner_brow_gap",  # inner brow to inner brow (AU4 draws the brows together)
    "eye_opening",  # upper lid to lower lid (AU5 opens; AU6/AU7 narrow)
    "upper_lip_height",  # upper lip outer middle y - nose base y (AU10 raises it)
    "lip_height",  # outer top to outer bottom of the lips (AU23/24 thin; AU26 parts them)
    "nose_wrinkle",  # mean ala y - eye-corner centre y (AU9 pulls the alae up)
)

#: Outer / inner eye-corner distance on the Surrey Face Model (mean of 8 synthetic identities,
#: sd 0.11): turns the inner-corner distance into an outer-corner equivalent when the outer
#: corners are missing, so both IODs give proxies on one scale.
OUTER_TO_INNER_EYE_RATIO = 2.56

#: Backward tilt (degrees) of the line from a nose reference up to the eye midpoint in a frontal
#: face; adding it back turns "up along the nose" into the face's vertical. Subnasale and tip
#: are the values of ``mvdata``'s renderer normalisation (so that on shard landmarks the face
#: frame is the shard frame); the alae value was measured the same way (8 SFM identities).
NOSE_TILT_DEG: dict[str, float] = {"subnasale": 21.7, "alae": 18.0, "nose_tip": 47.3}

_C = {name: i for i, name in enumerate(CANONICAL_LANDMARKS)}
_P = {name: i for i, name in enumerate(PROXIES)}


# --------------------------------------------------------------------------- canonical points
def canonical_array(landmarks: ArrayLike, names: Sequence[str]) -> FloatArray:
    """Landmarks ``[S, L, 3]`` (or ``[L, 3]``) with shared ``names`` -> ``[S, C, 3]`` canonical
    points in the order of :data:`CANONICAL_LANDMARKS`, NaN where a point is missing."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[-1] != 3:
        raise ValueError(f"landmarks must be [S, L, 3] or [L, 3], got shape {lm.shape}")
    if lm.shape[1] != len(names):
        raise ValueError(f"{lm.shape[1]} landmarks but {len(names)} names")
    out = np.full((lm.shape[0], len(CANONICAL_LANDMARKS), 3), np.nan)
    for canon, row in canonical_index(names).items():
        out[:, _C[canon]] = lm[:, row]
    return out


def _pt(points: FloatArray, name: str) -> FloatArray:
    """``[S, 3]`` positions of one canonical point (NaN rows where missing)."""
    return points[:, _C[name]]


def _nanmean_stack(*arrays: FloatArray) -> FloatArray:
    """Element-wise mean of the finite values among ``arrays`` (NaN where none is finite).

    A point counts only when all its coordinates are finite."""
    stack = np.stack(arrays)  # [n, S, ...]
    ok = np.isfinite(stack)
    if stack.ndim == 3:  # points [n, S, 3]: a point is usable only as a whole
        ok = np.repeat(ok.all(axis=-1, keepdims=True), 3, axis=-1)
    count = ok.sum(axis=0)
    total = np.where(ok, stack, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: FloatArray = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean


def _nanmean_rows(x: FloatArray) -> FloatArray:
    """Column means of ``[N, F]`` over finite entries; NaN for a column with none (no warning)."""
    ok = np.isfinite(x)
    count = ok.sum(axis=0)
    total = np.where(ok, x, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: FloatArray = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean


def _nanmedian_rows(x: FloatArray) -> FloatArray:
    """Column medians of ``[N, F]`` over finite entries; NaN for a column with none."""
    out = np.full(x.shape[1], np.nan)
    for j in range(x.shape[1]):
        col = x[:, j][np.isfinite(x[:, j])]
        if col.size:
            out[j] = float(np.median(col))
    return out


def _first_finite(*arrays: FloatArray) -> FloatArray:
    """Per sample, the first of ``arrays`` (points ``[S, 3]`` or values ``[S]``) that is finite."""
    out = np.full_like(arrays[0], np.nan)
    for arr in arrays:
        ok = np.isfinite(arr)
        if arr.ndim == 2:
            ok = np.repeat(ok.all(axis=-1, keepdims=True), 3, axis=-1)
        todo = ~np.isfinite(out)
        out = np.where(todo & ok, arr, out)
    return out


def _unit(v: FloatArray) -> FloatArray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        u: FloatArray = np.where(n > 1e-12, v / n, np.nan)
    return u


# --------------------------------------------------------------------------- face frame
def face_frame(points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per sample a rotation, an origin and the IOD, all from the canonical points ``[S, C, 3]``.

    Returns ``(rot [S, 3, 3], origin [S, 3], iod [S])``; ``rot`` has the face's right-to-left,
    up and forward axes as rows (the canonical frame of the shards): x from the subject's right
    eye centre to the left eye centre; y from the nose base (subnasale, else the alae's mean, else
    the nose tip) up to the eye midpoint, made orthogonal to x and tilted forward by
    :data:`NOSE_TILT_DEG` (the nose line leans back in a frontal face); z = x cross y. Without a
    nose point the given y axis is used (orthogonalised), without both eyes the given axes: the
    proxies of such samples are then invariant to translation and scale only. The origin is the
    eye midpoint (the mean of the available points if an eye is missing); ``iod`` is NaN when no
    eye-corner pair is complete, which makes every proxy of the sample NaN.
    """
    s = points.shape[0]
    right_eye = _nanmean_stack(_pt(points, "eye_outer_right"), _pt(points, "eye_inner_right"))
    left_eye = _nanmean_stack(_pt(points, "eye_outer_left"), _pt(points, "eye_inner_left"))
    eye_mid = (right_eye + left_eye) / 2
    finite_pts: NDArray[np.bool_] = np.asarray(np.isfinite(points).all(axis=-1))
    n_pts = finite_pts.sum(axis=1)[:, None]
    centroid = np.where(finite_pts[..., None], points, 0.0).sum(axis=1) / np.maximum(n_pts, 1)
    centroid = np.where(n_pts > 0, centroid, np.nan)
    origin = _first_finite(eye_mid, centroid)

    x = _unit(left_eye - right_eye)
    x = np.where(np.isfinite(x).all(axis=-1, keepdims=True), x, np.array([1.0, 0.0, 0.0]))

    alae = _nanmean_stack(_pt(points, "nose_ala_right"), _pt(points, "nose_ala_left"))
    y = np.full((s, 3), np.nan)
    tilt = np.zeros(s)
    for name, nose in (
        ("subnasale", _pt(points, "subnasale")),
        ("alae", alae),
        ("nose_tip", _pt(points, "nose_tip")),
    ):
        v = eye_mid - nose
        v = _unit(v - x * (x * v).sum(axis=-1, keepdims=True))
        use = ~np.isfinite(y).all(axis=-1) & np.isfinite(v).all(axis=-1)
        y[use] = v[use]
        tilt[use] = math.radians(NOSE_TILT_DEG[name])
    given_y = np.array([0.0, 1.0, 0.0])
    fallback = _unit(given_y - x * (x @ given_y)[:, None])
    fallback = np.where(np.isfinite(fallback), fallback, given_y)
    no_nose = ~np.isfinite(y).all(axis=-1)
    y[no_nose] = fallback[no_nose]
    z = np.cross(x, y)
    c, sn = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    y, z = c * y + sn * z, c * z - sn * y
    rot = np.stack([x, y, z], axis=1)

    outer = np.linalg.norm(_pt(points, "eye_outer_left") - _pt(points, "eye_outer_right"), axis=-1)
    inner = np.linalg.norm(_pt(points, "eye_inner_left") - _pt(points, "eye_inner_right"), axis=-1)
    iod = _first_finite(
        np.where(outer > 1e-12, outer, np.nan),
        np.where(inner > 1e-12, inner * OUTER_TO_INNER_EYE_RATIO, np.nan),
    )
    return rot, origin, iod


# --------------------------------------------------------------------------- proxies
def proxies_from_canonical(
    points: FloatArray, *, brow_reference: BrowReference = "eye_corners"
) -> FloatArray:
    """``[S, C, 3]`` canonical points -> ``[S, F]`` proxies (:data:`PROXIES`), NaN = undefined.

    ``brow_reference``: what the two brow heights are measured from. method.md says the upper
    eyelid; the default here is the eye-corner centre (the upper lid where a corner pair is
    missing), because the corners are fixed to the skull while the lid moves with AU5/6/7: a
    lid-referenced brow height mixes lid and brow actions (surprise's AU5 raises the lid and
    hides part of AU1+2; anger's AU7 narrows the eye and hides AU4). The lid motion is kept in
    ``eye_opening`` alone. On the synthetic SFM set "upper_lid" scored lower (0.84 vs 0.93
    zero-shot with the neutral scan as reference, 40 identities), which agrees with that reading.
    """
    rot, origin, iod = face_frame(points)
    # Into the face frame, in IOD units: heights are then q[..., 1], distances plain norms.
    q = np.einsum("sij,scj->sci", rot, points - origin[:, None, :]) / iod[:, None, None]

    def p(name: str) -> FloatArray:
        return q[:, _C[name]]

    def dist(a: FloatArray, b: FloatArray) -> FloatArray:
        d: FloatArray = np.linalg.norm(a - b, axis=-1)
        return d

    alae = _nanmean_stack(p("nose_ala_right"), p("nose_ala_left"))
    nose_base = _first_finite(p("subnasale"), alae)
    eye_r = _nanmean_stack(p("eye_outer_right"), p("eye_inner_right"))
    eye_l = _nanmean_stack(p("eye_outer_left"), p("eye_inner_left"))
    up_r = _first_finite(
        p("upper_lid_right"), _nanmean_stack(p("upper_lid_outer_right"), p("upper_lid_inner_right"))
    )
    up_l = _first_finite(
        p("upper_lid_left"), _nanmean_stack(p("upper_lid_outer_left"), p("upper_lid_inner_left"))
    )
    lo_r = _first_finite(
        p("lower_lid_right"), _nanmean_stack(p("lower_lid_outer_right"), p("lower_lid_inner_right"))
    )
    lo_l = _first_finite(
        p("lower_lid_left"), _nanmean_stack(p("lower_lid_outer_left"), p("lower_lid_inner_left"))
    )
    if brow_reference == "upper_lid":  # method.md's wording
        ref_r, ref_l = _first_finite(up_r, eye_r), _first_finite(up_l, eye_l)
    elif brow_reference == "eye_corners":
        ref_r, ref_l = _first_finite(eye_r, up_r), _first_finite(eye_l, up_l)
    else:
        raise ValueError(f"unknown brow reference {brow_reference!r}: use eye_corners or upper_lid")

    out = np.full((points.shape[0], len(PROXIES)), np.nan)
    mc_r, mc_l = p("mouth_corner_right"), p("mouth_corner_left")
    out[:, _P["mouth_width"]] = dist(mc_r, mc_l)
    out[:, _P["mouth_corner_height"]] = _nanmean_stack(mc_r[:, 1], mc_l[:, 1]) - nose_base[:, 1]
    out[:, _P["lip_opening"]] = _first_finite(
        dist(p("upper_lip_inner"), p("lower_lip_inner")),
        dist(p("upper_lip_outer"), p("lower_lip_outer")),
    )
    out[:, _P["brow_height"]] = _nanmean_stack(
        p("brow_mid_right")[:, 1] - ref_r[:, 1], p("brow_mid_left")[:, 1] - ref_l[:, 1]
    )
    out[:, _P["inner_brow_height"]] = _nanmean_stack(
        p("brow_inner_right")[:, 1] - ref_r[:, 1], p("brow_inner_left")[:, 1] - ref_l[:, 1]
    )
    out[:, _P["inner_brow_gap"]] = dist(p("brow_inner_right"), p("brow_inner_left"))
    out[:, _P["eye_opening"]] = _nanmean_stack(dist(up_r, lo_r), dist(up_l, lo_l))
    out[:, _P["upper_lip_height"]] = p("upper_lip_outer")[:, 1] - nose_base[:, 1]
    out[:, _P["lip_height"]] = dist(p("upper_lip_outer"), p("lower_lip_outer"))
    out[:, _P["nose_wrinkle"]] = alae[:, 1] - ((eye_r + eye_l) / 2)[:, 1]
    return out


def compute_proxies(
    landmarks: ArrayLike, names: Sequence[str], *, brow_reference: BrowReference = "eye_corners"
) -> FloatArray:
    """Landmarks ``[S, L, 3]`` (or ``[L, 3]``) with shared ``names`` -> proxies ``[S, F]``."""
    return proxies_from_canonical(canonical_array(landmarks, names), brow_reference=brow_reference)


# --------------------------------------------------------------------------- statistics
def robust_scale(values: ArrayLike, *, quantile: float = 0.9, floor: float = 1e-6) -> FloatArray:
    """Per-column robust spread of ``[N, F]``: the ``quantile`` of ``|x - median|`` divided by
    the same quantile for a standard normal (so it estimates the standard deviation of Gaussian
    data; ``quantile=0.5`` is the classic 1.4826 x MAD). NaN where a column has no finite value
    or no spread above ``floor``.

    Why 0.9 and not the MAD: across a dataset's relative features, each proxy is moved by one or
    two of the six emotions only, so the central half of its distribution is the residual noise
    of the others and the expression signal sits in the tails. A MAD measures that noise and
    blows up the proxies that rarely move; a high quantile measures the signal while still
    ignoring the most extreme 10 % (e.g. failed landmarks). On the synthetic SFM set the MAD
    made sadness and anger collapse (this project's measurement, see tests/test_prior.py).
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError("quantile must lie in (0, 1)")
    gauss = NormalDist().inv_cdf((1.0 + quantile) / 2.0)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be [N, F], got shape {x.shape}")
    out = np.full(x.shape[1], np.nan)
    for j in range(x.shape[1]):
        col = x[:, j][np.isfinite(x[:, j])]
        if col.size == 0:
            continue
        spread = float(np.quantile(np.abs(col - np.median(col)), quantile)) / gauss
        if spread > floor:
            out[j] = spread
    return out


def nan_norm(values: ArrayLike) -> FloatArray:
    """Euclidean norm over the last axis counting finite entries only (0 when none is)."""
    x = np.asarray(values, dtype=np.float64)
    n: FloatArray = np.sqrt(np.where(np.isfinite(x), x * x, 0.0).sum(axis=-1))
    return n


def _ray_score(z: FloatArray, r: int, near: float = 0.2) -> float:
    """How well the other rows of ``z`` line up in rays from row ``r``: the mean over rows i of
    the largest cosine between the direction r->i and a direction r->j of another row j.

    Rows closer to r than ``near`` x the median distance carry no direction (repeats of the
    reference) and are left out; a partner j must not be a near-repeat of i (``|z_i - z_j| >
    near x min(|z_i - z_r|, |z_j - z_r|)``), or a cluster of repeated frames far from r would
    look like a perfect ray. -inf with fewer than two usable rows.
    """
    d = np.where(np.isfinite(z - z[r]), z - z[r], 0.0)
    d = np.delete(d, r, axis=0)
    dist = np.linalg.norm(d, axis=1)
    if len(dist) < 2 or not (dist > 1e-12).any():
        return -np.inf
    keep = dist > max(near * float(np.median(dist)), 1e-12)
    if keep.sum() < 2:
        return -np.inf
    d, dist = d[keep], dist[keep]
    u = d / dist[:, None]
    g = u @ u.T
    gap = np.linalg.norm(d[:, None, :] - d[None, :, :], axis=-1)
    partner = gap > near * np.minimum(dist[:, None], dist[None, :])
    np.fill_diagonal(partner, False)
    best = np.where(partner, g, -np.inf).max(axis=1)
    best = best[np.isfinite(best)]
    return float(best.mean()) if best.size else -np.inf


def subject_reference(
    frames: ArrayLike,
    scale: ArrayLike | None = None,
    *,
    method: SubjectReferenceMethod = "rays",
    max_rows: int = 256,
    min_rays_rows: int = 5,
) -> tuple[FloatArray, int]:
    """The label-free reference of one subject: ``(proxies, row)`` of one row of ``frames``
    ``[N, F]``. This project's design, in place of method.md's neutral scan (which needs a
    label). Proxies are divided by ``scale`` (the population's robust spread, so that every
    proxy weighs the same); NaN entries are left out.

    * ``"rays"`` (default): the row from which the other rows line up best in rays, i.e. that
      maximises the mean over rows i of max_j cos(x_i - x_r, x_j - x_r). The neutral face is the
      common origin of the expressions: the scans of one expression at several intensities (as
      BU-3DFE's four levels) lie on one ray from it, and from any other scan they do not. Needs
      several scans per expression; with one scan per expression the choice is weak (an
      assumption that holds for BU-3DFE-like static sets, not for every dataset).
    * ``"median"``: the row closest to the per-proxy median (mean squared standardised
      difference over the proxies finite in both). Simple, but with expressions that move a
      proxy the same way (every SFM expression widens the mouth) the median sits among the weak
      expressions, not at the neutral face.

    ``max_rows`` caps the rows searched by "rays" (cubic cost): larger pools are subsampled at
    even strides, deterministically. Ties go to the first row. With fewer than ``min_rays_rows``
    rows holding a finite proxy, rays mean little and "median" is used.
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty [N, F] array, got shape {x.shape}")
    if method not in ("rays", "median"):
        raise ValueError(f"unknown subject reference method {method!r}: use rays or median")
    sc = np.ones(x.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
    sc = np.where(np.isfinite(sc) & (sc > 0), sc, np.nan)
    z = x / sc
    if method == "rays" and int(np.isfinite(z).any(axis=1).sum()) >= max(min_rays_rows, 3):
        rows = np.arange(len(x))
        if len(x) > max_rows:
            rows = np.unique(np.linspace(0, len(x) - 1, max_rows).round().astype(np.int64))
        scores = [_ray_score(z[rows], r) for r in range(len(rows))]
        if np.isfinite(scores).any():
            row = int(rows[int(np.argmax(scores))])
            return x[row].copy(), row
    med = _nanmedian_rows(z)
    d = z - med
    ok = np.isfinite(d)
    count = ok.sum(axis=1)
    msd = np.where(count > 0, np.where(ok, d * d, 0.0).sum(axis=1) / np.maximum(count, 1), np.inf)
    row = int(np.argmin(msd))
    ref: FloatArray = x[row].copy()
    return ref, row


# --------------------------------------------------------------------------- relative features
def relative_features(
    per_sample: Sequence[FloatArray],
    *,
    subjects: Sequence[str],
    sequences: Sequence[str],
    kinds: Sequence[str],
    frames: Sequence[Sequence[int]] | None = None,
    carried: Sequence[tuple[int, FloatArray] | None] | None = None,
    mode: ReferenceMode = "auto",
    subject_method: SubjectReferenceMethod = "rays",
    min_subject_frames: int = 3,
    fit: Sequence[bool] | None = None,
) -> tuple[list[FloatArray], list[str]]:
    """Proxies minus a reference, per sample and frame.

    ``fit`` marks the samples whose statistics may be pooled (the training subjects): the
    population mean and the robust scale come from them only (all samples when None or when
    none is marked), then apply to every sample, so a held-out subject's geometry shapes no
    training sample's features. A subject's own reference uses that subject's scans only.

    ``per_sample[i]`` is the ``[T_i, F]`` proxies of sample i's clip frames; ``subjects``,
    ``sequences`` and ``kinds`` ("static"|"sequence") say where each comes from (group by
    dataset too by passing ``"dataset/subject"``), ``frames`` the source frame index of each clip
    frame (default ``0..T-1``), ``carried`` per sample an optional ``(source frame, [F] proxies)``
    of a reference frame the sample carries but does not show (a sequence's first frame, schema
    1.1). Returns the relative ``[T_i, F]`` arrays and, per sample, the mode actually used:

    * ``"subject"``: one frame among the subject's frames, chosen without labels by
      :func:`subject_reference` (``subject_method``: "rays" or "median"); static samples choose
      among the subject's static scans, sequence samples among the subject's sequence frames;
    * ``"sequence-first-frame"``: for sequence samples, the frame with the smallest source index
      (and some defined proxy) among all clips of that (subject, sequence) and the reference
      frames they carry; static samples fall back to "population". Shards built since schema 1.1
      carry the sequence's frame 0, so a clip cut by ``--clip-sampling motion`` (around the peak)
      is measured from the start of the sequence. Older shards without it fall back to the
      earliest frame a clip holds, which under motion sampling is already part-way into the
      expression (source frames 8-18 of 50 on the benchmark; clip prior naming 50.6 % against
      93.9 % on static scans, 2026-12-02): rebuild such shards;
    * ``"population"``: the mean over samples of each sample's mean proxies;
    * ``"auto"``: sequences -> sequence-first-frame; static samples -> subject when the subject
      has at least ``min_subject_frames`` frames, else population.

    A proxy undefined in the sample or in its reference stays NaN.
    """
    n = len(per_sample)
    if not (len(subjects) == len(sequences) == len(kinds) == n):
        raise ValueError("per_sample, subjects, sequences and kinds must have one entry each")
    if mode not in ("auto", "subject", "sequence-first-frame", "population"):
        raise ValueError(f"unknown reference mode {mode!r}")
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1, len(PROXIES)) for a in per_sample]
    src_frames = [
        list(range(len(a))) if frames is None else list(frames[i]) for i, a in enumerate(arrays)
    ]
    for i, (a, f) in enumerate(zip(arrays, src_frames, strict=True)):
        if len(a) != len(f):
            raise ValueError(f"sample {i}: {len(a)} proxy rows but {len(f)} frame indices")
    extra: list[tuple[int, FloatArray] | None] = [None] * n if carried is None else list(carried)
    if len(extra) != n:
        raise ValueError(f"carried has {len(extra)} entries for {n} samples")
    if n == 0:
        return [], []

    if fit is not None and len(fit) != n:
        raise ValueError(f"fit has {len(fit)} entries for {n} samples")
    fitted = [i for i in range(n) if fit is None or fit[i]] or list(range(n))
    sample_means = np.stack([_nanmean_rows(arrays[i]) for i in fitted])
    population = _nanmean_rows(sample_means)
    pooled = np.concatenate([arrays[i] for i in fitted], axis=0)
    scale = robust_scale(pooled)

    # Subject pools: static scans with static scans, sequence frames with sequence frames (a
    # sequence's many near-identical neutral frames would swamp a subject's few static scans).
    by_subject: dict[tuple[str, bool], list[int]] = defaultdict(list)
    by_sequence: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in range(n):
        by_subject[(subjects[i], kinds[i] == "sequence")].append(i)
        by_sequence[(subjects[i], sequences[i])].append(i)

    subject_refs: dict[tuple[str, bool], FloatArray] = {}
    for pool, members in by_subject.items():
        rows = np.concatenate([arrays[i] for i in members], axis=0)
        if len(rows):
            subject_refs[pool] = subject_reference(rows, scale, method=subject_method)[0]
    first_refs: dict[tuple[str, str], FloatArray] = {}
    for seq, members in by_sequence.items():
        candidates: list[tuple[int, int, int, FloatArray]] = []  # (source frame, sample, row, x)
        for i in members:
            candidates += [(src, i, t, arrays[i][t]) for t, src in enumerate(src_frames[i])]
            held = extra[i]
            if held is not None:  # carried: row -1, so it wins a tie with a shown frame
                candidates.append((int(held[0]), i, -1, np.asarray(held[1], dtype=np.float64)))
        # a frame without landmarks (no finite proxy) cannot be the reference
        usable = [c for c in candidates if np.isfinite(c[3]).any()]
        if usable:
            first_refs[seq] = min(usable, key=lambda c: c[:3])[3]

    def pool_of(i: int) -> tuple[str, bool]:
        return subjects[i], kinds[i] == "sequence"

    out: list[FloatArray] = []
    used: list[str] = []
    for i in range(n):
        use = mode
        if mode == "auto":
            if kinds[i] == "sequence":
                use = "sequence-first-frame"
            elif sum(len(arrays[j]) for j in by_subject[pool_of(i)]) >= min_subject_frames:
                use = "subject"
            else:
                use = "population"
        if use == "sequence-first-frame" and kinds[i] != "sequence":
            use = "population"
        if use == "subject":
            ref = subject_refs.get(pool_of(i), population)
        elif use == "sequence-first-frame":
            ref = first_refs.get((subjects[i], sequences[i]), population)
        else:
            ref = population
        out.append(arrays[i] - ref[None, :])
        used.append(use)
    return out, used


def aggregate_clip(
    relative: ArrayLike, how: ClipAggregate = "peak", scale: ArrayLike | None = None
) -> tuple[FloatArray, int]:
    """One ``[F]`` vector for a clip's ``[T, F]`` relative features, and the frame it came from.

    ``"peak"``: the frame of largest expression (largest norm of the relative features, each
    divided by ``scale`` when given; NaN entries count as 0); ``"mean"``: the per-proxy mean over
    frames (NaN-aware), frame -1.
    """
    x = np.asarray(relative, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if len(x) == 0:
        return np.full(x.shape[1], np.nan), -1
    if how == "mean":
        return _nanmean_rows(x), -1
    if how != "peak":
        raise ValueError(f"unknown clip aggregate {how!r}: use peak or mean")
    z = x if scale is None else x / np.asarray(scale, dtype=np.float64)
    t = int(np.argmax(nan_norm(z)))
    return x[t].copy(), t
