"""Bring a face into the canonical frame: ``x' = scale * R @ (x - centre)`` from its landmarks
(eye corners for scale, nose-to-eyes for upright), or from its bounding box when it has none.

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
from schemas.models import Normalisation

#: Outer eye-corner (ibug 37 to 46) distance in canonical units (~mm of an average adult face).
CANONICAL_EYE_DISTANCE = 90.0

#: Inner eye-corner (ibug 40 to 43) distance in canonical units, used when outer corners are missing.
CANONICAL_INNER_EYE_DISTANCE = 32.0

#: RMS distance of landmarks to their mean in canonical units; a rough fallback scale when no
#: pair of eye corners is present (a full ibug-68 set on an average face is about this spread).
CANONICAL_LANDMARK_SPREAD = 45.0

#: Largest bounding-box extent of a mesh without landmarks, in canonical units (a face crop).
CANONICAL_BBOX_EXTENT = 220.0


# --------------------------------------------------------------------------- normalisation
def _landmark_lookup(mesh: Mesh) -> dict[int, NDArray[np.float64]]:
    """ibug index (1-based) -> position, for the mesh's landmarks named ``ibugNN``."""
    out: dict[int, NDArray[np.float64]] = {}
    if mesh.landmarks is None or not mesh.landmark_names:
        return out
    for name, pos in zip(mesh.landmark_names, mesh.landmarks, strict=True):
        if name.startswith("ibug") and name[4:].isdigit() and np.isfinite(pos).all():
            out[int(name[4:])] = pos.astype(np.float64)
    return out


def _mean_of(lm: dict[int, NDArray[np.float64]], ids: Iterable[int]) -> NDArray[np.float64] | None:
    pts = [lm[i] for i in ids if i in lm]
    return np.mean(pts, axis=0) if pts else None


#: Backward tilt (degrees) of the line from the nose reference up to the eye midpoint, in a
#: frontal face, per nose landmark: subnasale 34 is preferred (rigid, little protrusion), the nose
#: tip 31 is the fallback. Measured on the Surrey Face Model's synthetic identities (mean over 8
#: identities x 7 expressions; per-identity spread ~3.5 degrees): adding it back makes a frontal
#: face look along +z instead of up into the camera.
NOSE_TILT_DEG = {34: 21.7, 31: 47.3}


def _upright_rotation(lm: dict[int, NDArray[np.float64]]) -> NDArray[np.float64] | None:
    """Rotation whose rows are the face's right, up and forward axes, or None if undetermined.

    x: from the subject's right eye (ibug 37/40) to the left eye (43/46); y: from the nose
    (subnasale 34, else tip 31) to the eye midpoint, made orthogonal to x and tilted forward by
    :data:`NOSE_TILT_DEG`; z = x cross y (out of the face). Needs both eyes and a nose point.
    The mouth is NOT used, although it would fix "up" more directly: it moves with the
    expression (eye-to-mouth "up" varied 12.7 vs 5.2 degrees between a neutral and a happy
    scan of one identity), and the head pose must not depend on the expression.
    """
    right_eye = _mean_of(lm, (37, 40))
    left_eye = _mean_of(lm, (43, 46))
    nose_id = next((i for i in (34, 31) if i in lm), None)
    if right_eye is None or left_eye is None or nose_id is None:
        return None
    x = left_eye - right_eye
    y = (right_eye + left_eye) / 2 - lm[nose_id]
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
    tilt = math.radians(NOSE_TILT_DEG[nose_id])
    y, z = math.cos(tilt) * y + math.sin(tilt) * z, math.cos(tilt) * z - math.sin(tilt) * y
    rot: NDArray[np.float64] = np.stack([x, y, z])
    return rot


def normalise(mesh: Mesh) -> Normalisation:
    """The similarity transform ``x' = scale * R @ (x - centre)`` into the canonical frame.

    With ibug landmarks (names ``"ibugNN"``, any subset): the centre is the mean of the eye
    corners (37, 40, 43, 46) and the nose tip (31) that are present (all landmarks if none of
    those are); the scale maps the outer eye-corner distance to
    :data:`CANONICAL_EYE_DISTANCE` (inner corners or the landmark spread as fallbacks); the
    rotation levels the eye line and turns the face to +z (see :func:`_upright_rotation`),
    identity when the eyes or the nose are missing. Without usable landmarks the mesh's
    bounding box gives centre and scale (largest extent -> :data:`CANONICAL_BBOX_EXTENT`) and the
    rotation is the identity (``method="bbox"``).
    """
    lm = _landmark_lookup(mesh)
    scale: float | None = None
    centre: NDArray[np.float64] | None = None
    if lm:
        centre = _mean_of(lm, (37, 40, 43, 46, 31))
        if centre is None:
            centre = np.mean(list(lm.values()), axis=0)
        if 37 in lm and 46 in lm and np.linalg.norm(lm[46] - lm[37]) > 1e-9:
            scale = CANONICAL_EYE_DISTANCE / float(np.linalg.norm(lm[46] - lm[37]))
        elif 40 in lm and 43 in lm and np.linalg.norm(lm[43] - lm[40]) > 1e-9:
            scale = CANONICAL_INNER_EYE_DISTANCE / float(np.linalg.norm(lm[43] - lm[40]))
        elif len(lm) >= 3:
            pts = np.stack(list(lm.values()))
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
