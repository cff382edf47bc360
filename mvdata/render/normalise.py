"""Bring a face into the canonical frame: ``x' = scale * R @ (x - centre)`` from its landmarks
(eye corners for scale, nose-to-eyes for upright), or from its bounding box when it has none.
Landmarks are found by meaning, whatever the dataset calls them: ibug-68 ids (synthetic) and
Bosphorus label texts map to the canonical names of :mod:`schemas.landmarks`.

The canonical frame is right-handed, +y up, the face looking along +z (towards a frontal
camera), +x towards the subject's left. One canonical unit is about one millimetre of an average
adult face: the outer eye-corner distance maps to :data:`CANONICAL_EYE_DISTANCE` units, so views
are comparable across datasets whatever the scan's size or pose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh
from schemas.landmarks import SEMANTIC_SCHEMES, canonical_name, naming_scheme
from schemas.models import Normalisation

#: Outer eye-corner (ibug 37 to 46, Bosphorus "Outer left/right eye corner") distance in
#: canonical units (~mm of an average adult face).
CANONICAL_EYE_DISTANCE = 90.0

#: Inner eye-corner (ibug 40 to 43) distance in canonical units, used when outer corners are missing.
CANONICAL_INNER_EYE_DISTANCE = 32.0

#: RMS distance of landmarks to their mean in canonical units; a rough fallback scale when no
#: pair of eye corners is present (a full ibug-68 set on an average face is about this spread).
CANONICAL_LANDMARK_SPREAD = 45.0

#: Largest bounding-box extent of a mesh without landmarks, in canonical units (a face crop).
CANONICAL_BBOX_EXTENT = 220.0


# --------------------------------------------------------------------------- normalisation
# The landmark naming schemes the normaliser reads by meaning: schemas.landmarks.SEMANTIC_SCHEMES
# (stated there, beside the mappings, so `mvdata inspect` can tell which frames it turns).


def _landmark_lookup(
    mesh: Mesh,
) -> tuple[dict[str, NDArray[np.float64]], list[NDArray[np.float64]]]:
    """The mesh's usable landmarks: canonical name -> position (schemes in
    :data:`SEMANTIC_SCHEMES`), and every finite landmark of a known scheme in file order (the
    unordered set behind the centre and spread fallbacks). Unknown names are ignored."""
    by_canon: dict[str, NDArray[np.float64]] = {}
    points: list[NDArray[np.float64]] = []
    if mesh.landmarks is None or not mesh.landmark_names:
        return by_canon, points
    for name, pos in zip(mesh.landmark_names, mesh.landmarks, strict=True):
        scheme = naming_scheme(name)
        if scheme is None or not np.isfinite(pos).all():
            continue
        p = pos.astype(np.float64)
        points.append(p)
        canon = canonical_name(name) if scheme in SEMANTIC_SCHEMES else None
        if canon is not None:
            # the last row of a name wins, as the ibug-only lookup before it did
            by_canon[canon] = p
    return by_canon, points


def _mean_of(
    lm: dict[str, NDArray[np.float64]], names: Iterable[str]
) -> NDArray[np.float64] | None:
    pts = [lm[n] for n in names if n in lm]
    return np.mean(pts, axis=0) if pts else None


#: The points of each role, in the order they are averaged (canonical names; ibug ids and
#: Bosphorus labels in the comments). The order is kept from the ibug-only normaliser so that
#: ibug-named faces normalise to the same bits.
CENTRE_POINTS = (
    "eye_outer_right",  # ibug 37, Bosphorus "Outer left eye corner"
    "eye_inner_right",  # ibug 40, "Inner left eye corner"
    "eye_inner_left",  # ibug 43, "Inner right eye corner"
    "eye_outer_left",  # ibug 46, "Outer right eye corner"
    "nose_tip",  # ibug 31, "Nose tip"
)
RIGHT_EYE_POINTS = ("eye_outer_right", "eye_inner_right")
LEFT_EYE_POINTS = ("eye_inner_left", "eye_outer_left")

#: Backward tilt (degrees) of the line from the nose reference up to the eye midpoint, in a
#: frontal face, per nose landmark: the subnasale (ibug 34) is preferred (rigid, little
#: protrusion), the nose tip (ibug 31, Bosphorus "Nose tip") is the fallback. Measured on the
#: Surrey Face Model's synthetic identities (mean over 8 identities x 7 expressions;
#: per-identity spread ~3.5 degrees): adding it back makes a frontal face look along +z instead
#: of up into the camera. Bosphorus marks no subnasale, so its scans use the nose-tip tilt.
NOSE_TILT_DEG = {"subnasale": 21.7, "nose_tip": 47.3}


def _upright_rotation(lm: dict[str, NDArray[np.float64]]) -> NDArray[np.float64] | None:
    """Rotation whose rows are the face's right, up and forward axes, or None if undetermined.

    x: from the subject's right eye (ibug 37/40) to the left eye (43/46); y: from the nose
    (subnasale, else nose tip; see :data:`NOSE_TILT_DEG`) to the eye midpoint, made orthogonal
    to x and tilted forward by :data:`NOSE_TILT_DEG`; z = x cross y (out of the face). Needs both
    eyes and a nose point. The mouth is NOT used, although it would fix "up" more directly: it
    moves with the expression (eye-to-mouth "up" varied 12.7 vs 5.2 degrees between a neutral
    and a happy scan of one identity), and the head pose must not depend on the expression.
    """
    right_eye = _mean_of(lm, RIGHT_EYE_POINTS)
    left_eye = _mean_of(lm, LEFT_EYE_POINTS)
    nose = next((n for n in NOSE_TILT_DEG if n in lm), None)
    if right_eye is None or left_eye is None or nose is None:
        return None
    x = left_eye - right_eye
    y = (right_eye + left_eye) / 2 - lm[nose]
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        return None
    x = x / nx
    y = y - x * float(x @ y)
    ny = np.linalg.norm(y)
    if ny < 1e-9:
        return None
    y = y / ny
    z = np.cross(x, y)
    tilt = math.radians(NOSE_TILT_DEG[nose])
    y, z = math.cos(tilt) * y + math.sin(tilt) * z, math.cos(tilt) * z - math.sin(tilt) * y
    rot: NDArray[np.float64] = np.stack([x, y, z])
    return rot


def _distance(lm: dict[str, NDArray[np.float64]], a: str, b: str) -> float | None:
    """Distance between two named points, or None when one is missing or they coincide."""
    if a not in lm or b not in lm:
        return None
    d = float(np.linalg.norm(lm[b] - lm[a]))
    return d if d > 1e-9 else None


def normalise(mesh: Mesh) -> Normalisation:
    """The similarity transform ``x' = scale * R @ (x - centre)`` into the canonical frame.

    Landmarks are read by their canonical meaning (:mod:`schemas.landmarks`), so ibug-named
    (synthetic) and Bosphorus-labelled scans use the same anatomical points; BU ``.bnd`` rows
    only as an unordered set (see :data:`SEMANTIC_SCHEMES`). The centre is the mean of the eye
    corners and the nose tip that are present (:data:`CENTRE_POINTS`; all landmarks if none
    are); the scale maps the outer eye-corner distance to :data:`CANONICAL_EYE_DISTANCE`
    (inner corners, or the landmark spread, as fallbacks); the rotation levels the eye line and
    turns the face to +z (see :func:`_upright_rotation`), identity when the eyes or the nose are
    missing. Without usable landmarks the mesh's bounding box gives centre and scale (largest
    extent -> :data:`CANONICAL_BBOX_EXTENT`) and the rotation is the identity (``method="bbox"``).
    """
    lm, points = _landmark_lookup(mesh)
    scale: float | None = None
    centre: NDArray[np.float64] | None = None
    if points:
        centre = _mean_of(lm, CENTRE_POINTS)
        if centre is None:
            centre = np.mean(points, axis=0)
        outer = _distance(lm, "eye_outer_right", "eye_outer_left")
        inner = _distance(lm, "eye_inner_right", "eye_inner_left")
        if outer is not None:
            scale = CANONICAL_EYE_DISTANCE / outer
        elif inner is not None:
            scale = CANONICAL_INNER_EYE_DISTANCE / inner
        elif len(points) >= 3:
            pts = np.stack(points)
            spread = float(np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean()))
            if spread > 1e-9:
                scale = CANONICAL_LANDMARK_SPREAD / spread
    if scale is not None and centre is not None:
        rot = _upright_rotation(lm)
        return Normalisation(
            method="landmarks",
            centre=[float(c) for c in centre],
            scale=scale,
            rotation=(np.eye(3) if rot is None else rot).tolist(),
        )
    verts = mesh.vertices.astype(np.float64)
    if len(verts) == 0:
        raise ValueError("cannot normalise an empty mesh")
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    extent = float((hi - lo).max())
    return Normalisation(
        method="bbox",
        centre=[float(c) for c in (lo + hi) / 2],
        scale=CANONICAL_BBOX_EXTENT / extent if extent > 1e-9 else 1.0,
        rotation=np.eye(3).tolist(),
    )


def apply_normalisation(points: NDArray[Any], norm: Normalisation) -> NDArray[np.float64]:
    """Map ``(N, 3)`` points (mesh frame, mm) into the canonical frame of ``norm``."""
    rot = np.asarray(norm.rotation, dtype=np.float64)
    centre = np.asarray(norm.centre, dtype=np.float64)
    out: NDArray[np.float64] = norm.scale * (np.asarray(points, np.float64) - centre) @ rot.T
    return out
