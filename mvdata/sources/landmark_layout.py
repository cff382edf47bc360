"""Test a landmark mapping on the scans themselves: does each file's geometry agree with what
:mod:`schemas.landmarks` says its rows are?

The BU ``.bnd`` row order and the side of Bosphorus's "left" are guesses (see
:mod:`schemas.landmarks`); nobody on this project has seen a real file. Anatomy does not guess:
in every face the upper lid lies above the lower lid, each eye's outer corner lies farther from
the midline than its inner corner, the brows lie above the eyes, the chin below the lips, and
the nose stands out in front of the eyes. ``mvdata inspect --check`` measures these relations on
every loaded frame, through the mapping, so a wrong guess shows as relations that fail on most
files instead of as quietly wrong pseudo-labels. Hand-written: no mesh or landmark library
states anatomical relations between named landmarks.

The frame is built from the mapped points themselves, so the test does not depend on the scan's
pose: x runs from the points mapped to the subject's right eye to those mapped to the left eye,
y from the mouth up to the brows (made orthogonal to x), z = x cross y. One relation, **sides**,
is not invariant to a mirror image: it asks whether the nose lies in front (+z) of the eyes,
which holds exactly when the points mapped to "right" are on the subject's right **and** the
file's coordinates are right-handed (VRML's are, by its spec; the other formats' are not
documented). A mapping that swaps right and left everywhere passes every other relation and fails
this one; a ring read in the wrong direction fails the eye-corner or lid relations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mvdata.sources.relations import RelationTally
from schemas.landmarks import CANONICAL_LANDMARKS, canonical_name, naming_scheme

__all__ = [
    "LAYOUT_CHECKS",
    "TOLERANCE",
    "add_layout",
    "canonical_points",
    "frame_scheme",
    "layout_tally",
    "layout_verdicts",
]

#: Each relation tested, with what it asks of the points the mapping names.
LAYOUT_CHECKS: dict[str, str] = {
    "sides": "the nose lies in front of the eyes in the frame built from the points mapped to "
    "the subject's right and left (fails when right and left are swapped, or the file's "
    "coordinates are left-handed)",
    "eye corners": "each eye's outer corner lies farther from the midline than its inner corner",
    "eyelids": "each upper-lid point lies above the lower-lid point of the same eye",
    "brows": "each brow lies above its eye, its outer end farther from the midline than its "
    "inner end",
    "mouth": "the right mouth corner lies on the right of the left one; the upper lip above the "
    "lower lip",
    "chin": "the chin lies below the lower lip, the mouth below the nose",
}

#: A relation holds or fails only by more than this fraction of the eye-centre distance
#: (about 1.8 mm of a 60 mm face): closed eyes and lips put lid and lip pairs within it, and
#: those count as undetermined, never as a failure.
TOLERANCE = 0.03

_RIGHT_EYE = ("eye_outer_right", "eye_inner_right")
_LEFT_EYE = ("eye_outer_left", "eye_inner_left")
_BROWS_RIGHT = ("brow_outer_right", "brow_mid_right", "brow_inner_right")
_BROWS_LEFT = ("brow_outer_left", "brow_mid_left", "brow_inner_left")
_MOUTH = tuple(
    n for n in CANONICAL_LANDMARKS if n.startswith(("mouth_corner", "upper_lip", "lower_lip"))
)
_NOSE = ("nose_tip", "subnasale", "nose_ala_right", "nose_ala_left")
#: (upper, lower) lid pairs of one eye, in canonical names (BU/Bosphorus midpoints, ibug pairs).
_LID_PAIRS = (
    ("upper_lid_right", "lower_lid_right"),
    ("upper_lid_left", "lower_lid_left"),
    ("upper_lid_outer_right", "lower_lid_outer_right"),
    ("upper_lid_inner_right", "lower_lid_inner_right"),
    ("upper_lid_outer_left", "lower_lid_outer_left"),
    ("upper_lid_inner_left", "lower_lid_inner_left"),
)

Point = NDArray[np.float64]


def _mean(lm: dict[str, Point], names: Sequence[str]) -> Point | None:
    pts = [lm[n] for n in names if n in lm]
    return np.mean(pts, axis=0) if pts else None


def _verdict(margins: Sequence[float]) -> bool | None:
    """All signed margins (positive = the relation holds) to one verdict: False if any fails by
    more than :data:`TOLERANCE`, True if none fails and one holds by more, else None."""
    if any(m < -TOLERANCE for m in margins):
        return False
    if any(m > TOLERANCE for m in margins):
        return True
    return None


def canonical_points(names: Sequence[str], points: NDArray[np.floating]) -> dict[str, Point]:
    """Canonical name -> position for the finite, mapped landmarks (the first row of a name)."""
    lm: dict[str, Point] = {}
    for name, pos in zip(names, np.asarray(points, dtype=np.float64), strict=True):
        canon = canonical_name(name)
        if canon is not None and canon not in lm and np.isfinite(pos).all():
            lm[canon] = pos
    return lm


def layout_verdicts(names: Sequence[str], points: NDArray[np.floating]) -> dict[str, bool | None]:
    """Each relation of :data:`LAYOUT_CHECKS` on one frame's landmarks: True (holds), False
    (fails) or None (undetermined: its points are missing, or the face is too flat there to
    tell). Every relation is None when an eye, the brows or the mouth is missing: the frame
    cannot be built without them."""
    verdicts: dict[str, bool | None] = dict.fromkeys(LAYOUT_CHECKS)
    lm = canonical_points(names, points)
    right_eye, left_eye = _mean(lm, _RIGHT_EYE), _mean(lm, _LEFT_EYE)
    brows, mouth = _mean(lm, _BROWS_RIGHT + _BROWS_LEFT), _mean(lm, _MOUTH)
    if right_eye is None or left_eye is None or brows is None or mouth is None:
        return verdicts
    scale = float(np.linalg.norm(left_eye - right_eye))
    if scale < 1e-9:
        return verdicts
    x = (left_eye - right_eye) / scale
    y = brows - mouth
    y = y - x * float(x @ y)
    if np.linalg.norm(y) < 1e-9 * scale:
        return verdicts
    y = y / np.linalg.norm(y)
    z = np.cross(x, y)
    origin = (right_eye + left_eye) / 2

    def at(name: str) -> Point | None:
        return (lm[name] - origin) @ np.stack([x, y, z]).T / scale if name in lm else None

    def coord(names_: Sequence[str], axis: int) -> float | None:
        p = _mean(lm, names_)
        return None if p is None else float((p - origin) @ (x, y, z)[axis]) / scale

    def pairs(specs: Sequence[tuple[str, str, int, float]]) -> bool | None:
        # (a, b, axis, sign): the relation holds when sign * (a - b) along axis is positive
        margins = []
        for a, b, axis, sign in specs:
            pa, pb = at(a), at(b)
            if pa is not None and pb is not None:
                margins.append(sign * float(pa[axis] - pb[axis]))
        return _verdict(margins)

    nose_z = coord(_NOSE, 2)
    verdicts["sides"] = None if nose_z is None else _verdict([nose_z])
    verdicts["eye corners"] = pairs(
        [
            ("eye_inner_right", "eye_outer_right", 0, 1.0),
            ("eye_outer_left", "eye_inner_left", 0, 1.0),
        ]
    )
    verdicts["eyelids"] = pairs([(up, low, 1, 1.0) for up, low in _LID_PAIRS])
    brow_margins = []
    for brow_names, eye_names, outer, inner, sign in (
        (_BROWS_RIGHT, _RIGHT_EYE, "brow_outer_right", "brow_inner_right", -1.0),
        (_BROWS_LEFT, _LEFT_EYE, "brow_outer_left", "brow_inner_left", 1.0),
    ):
        by, ey = coord(brow_names, 1), coord(eye_names, 1)
        if by is not None and ey is not None:
            brow_margins.append(by - ey)
        po, pi = at(outer), at(inner)
        if po is not None and pi is not None:
            brow_margins.append(sign * float(po[0] - pi[0]))
    verdicts["brows"] = _verdict(brow_margins)
    verdicts["mouth"] = pairs(
        [
            ("mouth_corner_left", "mouth_corner_right", 0, 1.0),
            ("upper_lip_outer", "lower_lip_outer", 1, 1.0),
            ("upper_lip_inner", "lower_lip_inner", 1, 1.0),
        ]
    )
    chin_margins = []
    chin, lower_lip = at("chin"), at("lower_lip_outer")
    if chin is not None and lower_lip is not None:
        chin_margins.append(float(lower_lip[1] - chin[1]))
    nose_y, mouth_y = coord(_NOSE, 1), coord(_MOUTH, 1)
    if nose_y is not None and mouth_y is not None:
        chin_margins.append(nose_y - mouth_y)
    verdicts["chin"] = _verdict(chin_margins)
    return verdicts


def frame_scheme(names: Sequence[str]) -> str | None:
    """The naming scheme of a frame's landmarks (``"bnd"``, ``"bosphorus"``, ``"ibug"``), the
    most common one when a file mixes them, or None when no name is known."""
    counts = Counter(s for s in map(naming_scheme, names) if s is not None)
    return counts.most_common(1)[0][0] if counts else None


def layout_tally() -> RelationTally:
    """An empty tally of :data:`LAYOUT_CHECKS`, grouped by landmark naming scheme."""
    return RelationTally(LAYOUT_CHECKS)


def add_layout(
    tally: RelationTally, where: str, names: Sequence[str], points: NDArray[np.floating]
) -> None:
    """Count one frame's landmark relations in ``tally`` under the frame's naming scheme
    (frames whose landmark names no mapping knows are skipped)."""
    scheme = frame_scheme(names)
    if scheme is not None:
        tally.add_verdicts(scheme, where, layout_verdicts(names, points))
