"""Test a reader's axis convention on the scans themselves: does the face look along +z with +y
up, as the renderer assumes?

A scan without landmarks the normaliser can read by meaning (no landmarks at all, or BU ``.bnd``
rows, which count only as an unordered set) is rendered in its file's own axes: the bounding
box gives centre and scale, the rotation is the identity (:mod:`mvdata.render.normalise`). So
every such reader guesses the dataset's axes (BP4D, CoMA, FaceScape and plain mesh folders:
none checked on a real file here). A wrong guess fails no read: it renders every view of every
face from below, from behind or upside down. Faces have one mark the axes cannot hide, the
nose: the point nearest a frontal camera is the nose tip, in the middle of the face, with the
surface falling away around it; and below the tip the surface falls away fast (the short
columella, then the upper lip) while above it falls slowly (the long bridge).

``mvdata inspect --check`` tests both relations on every loaded frame in the file's axes and in
the other common conventions (:data:`AXIS_CONVENTIONS`), and says which one most frames fit.
Frames with landmarks named by meaning (ibug, Bosphorus) are turned upright by those landmarks,
so inspect does not count them. Hand-written: no mesh library knows where a face's
nose is. Thresholds are fractions of the face's extent, so millimetres and metres (FLAME/CoMA)
read alike; a scan turned far from frontal (a 45-90 degree Bosphorus pose) is undetermined or
fails, and the verdict is the majority of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh
from mvdata.sources.relations import RelationTally

__all__ = [
    "AS_READ",
    "AXIS_CONVENTIONS",
    "FaceLooks",
    "ORIENTATION_CHECKS",
    "add_orientation",
    "axis_verdict",
    "face_extent",
    "face_looks",
    "nose_tip",
    "UprightFrame",
    "upright_frame",
    "orientation_tally",
    "orientation_verdicts",
]

#: Each relation tested, with what it asks of the geometry.
ORIENTATION_CHECKS: dict[str, str] = {
    "front": "the point nearest a frontal camera (largest z) is a nose tip: in the middle of "
    "the face's width and height, with the surface around it falling away",
    "upright": "the surface falls away faster below that tip than above it (short columella, "
    "long bridge)",
}

#: The axis conventions tried: name -> the rotation taking the file's coordinates to the
#: renderer's (+y up, the face looking along +z). All proper rotations, so a right/left mirror
#: is not among them (the landmark layout's "sides" relation tests that).
AXIS_CONVENTIONS: dict[str, NDArray[np.float64]] = {
    "as read (y up, facing +z)": np.eye(3),
    "upside down (y down)": np.diag([-1.0, -1.0, 1.0]),
    "facing -z": np.diag([-1.0, 1.0, -1.0]),
    "z up, facing -y": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    "z up, facing +y": np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]]),
}
#: The files' own axes, the convention the renderer assumes.
AS_READ = next(iter(AXIS_CONVENTIONS))
_UPSIDE_DOWN = "upside down (y down)"

#: The tip must lie within this fraction of the face's width (x) and height (y) from the
#: middle of its bounding box. Measured on synthetic faces: at most 0.06 / 0.12 at 3 degrees of
#: pose jitter, 0.27 / 0.44 at 20 degrees; a face crop seen from behind puts its largest z on the
#: rim (0.23-0.49 from the middle in x).
TIP_CENTRAL_X = 0.2
TIP_CENTRAL_Y = 0.3
#: The mean depth of the ring at 8-10 % of the face's extent around the tip, as a fraction of the
#: extent, must lie between these: a nose (synthetic faces: median 0.11, 10th percentile
#: 0.07-0.10), not the back of a head facing the camera (a sphere the size of a head: about 0.01)
#: nor the rim of a face seen edge-on from above or below (median 0.5-0.65).
PROTRUSION_RANGE = (0.03, 0.3)
#: Upright holds when the mean depth below the tip (within 8 % of the extent, in a band 3 %
#: either side of the tip's x) exceeds the mean depth above it by this ratio, fails at the
#: inverse. Measured: SFM faces median 2.8-3.0 (5th percentile 1.6-1.9); the procedural face,
#: whose nose is a near-symmetric bump, median 1.4 (5th percentile 0.8), so on it the relation
#: is undetermined or fails on some frames; upside down the ratio is the inverse.
UPRIGHT_RATIO = 1.15

#: Scans with more vertices are read through every k-th vertex (k the smallest that leaves at
#: most this many): the relations are means over rings and bands, a 100k-vertex face still has
#: points every millimetre or two, and a 500k-vertex scan took 1.2 s a frame in full (0.4 s
#: so; both beside a training run on 2 cores).
MAX_VERTICES = 100_000

_RING = (0.08, 0.10)
_PROFILE_REACH = 0.08
_PROFILE_BAND = 0.03


def _finite(vertices: NDArray[np.floating]) -> NDArray[np.float64]:
    """The finite vertices as float64, thinned to at most :data:`MAX_VERTICES`."""
    v = np.asarray(vertices)
    if len(v) > MAX_VERTICES:
        v = v[:: -(-len(v) // MAX_VERTICES)]
    v = v.astype(np.float64)
    return v[np.isfinite(v).all(axis=1)]


def nose_tip(vertices: NDArray[np.floating]) -> NDArray[np.float64]:
    """The point of largest z, robustly: of the five vertices of largest z, the one nearest the
    other four (their medoid), so one stray vertex of a noisy scan does not pick it."""
    v = np.asarray(vertices, np.float64)
    top = v[np.argpartition(v[:, 2], -5)[-5:]] if len(v) > 5 else v
    spread = np.linalg.norm(top[:, None, :] - top[None, :, :], axis=-1).sum(axis=1)
    return np.asarray(top[int(spread.argmin())], np.float64)


def _box(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The face's box: the 0.5th and 99.5th percentiles per axis, so a few stray vertices of
    a noisy scan (a floating island 40 cm away) neither stretch it nor move its middle."""
    lo, hi = np.percentile(v, [0.5, 99.5], axis=0)
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def face_extent(vertices: NDArray[np.floating]) -> float:
    """The larger of the face's width and height (its box in x and y, see :func:`_box`)."""
    lo, hi = _box(np.asarray(vertices, np.float64))
    return float((hi[:2] - lo[:2]).max())


def _front(v: NDArray[np.float64], tip: NDArray[np.float64], extent: float) -> bool:
    """ "front": the tip lies in the middle of the face's box and stands out of the ring around
    it by a nose's depth (see :data:`TIP_CENTRAL_X`, :data:`PROTRUSION_RANGE`). A cluster of
    five or more stray vertices in front of the face takes the tip and fails it: one frame,
    outvoted by the others."""
    lo, hi = _box(v)
    size = np.maximum(hi - lo, 1e-12)
    off = np.abs(tip - (lo + hi) / 2) / size
    if off[0] > TIP_CENTRAL_X or off[1] > TIP_CENTRAL_Y:
        return False
    d = np.hypot(v[:, 0] - tip[0], v[:, 1] - tip[1])
    ring = (d >= _RING[0] * extent) & (d <= _RING[1] * extent)
    if not ring.any():
        return False
    depth = float((tip[2] - v[ring, 2]).mean()) / extent
    return PROTRUSION_RANGE[0] <= depth <= PROTRUSION_RANGE[1]


def _upright(v: NDArray[np.float64], tip: NDArray[np.float64], extent: float) -> bool | None:
    """ "upright": in a band along the tip's x, the mean depth below the tip against that above
    it (:data:`UPRIGHT_RATIO`); None when either side has fewer than three points or the
    ratio is in between."""
    band = np.abs(v[:, 0] - tip[0]) <= _PROFILE_BAND * extent
    dy = v[band, 1] - tip[1]
    depth = tip[2] - v[band, 2]
    reach = _PROFILE_REACH * extent
    above = depth[(dy > 0) & (dy <= reach)]
    below = depth[(dy < 0) & (dy >= -reach)]
    if len(above) < 3 or len(below) < 3:
        return None
    a, b = float(above.mean()), float(below.mean())
    if b > UPRIGHT_RATIO * max(a, 1e-12):
        return True
    if a > UPRIGHT_RATIO * max(b, 1e-12):
        return False
    return None


@dataclass(frozen=True)
class UprightFrame:
    """A frame's face found upright: the rotation taking the file's coordinates to the
    renderer's (one of :data:`AXIS_CONVENTIONS`), and in those rotated coordinates the nose
    tip and the face's extent."""

    convention: str
    rotation: NDArray[np.float64]
    tip: NDArray[np.float64]
    extent: float


@dataclass(frozen=True)
class _Look:
    """The face seen under one axis convention: its rotated vertices, nose tip and extent,
    and whether "front" holds."""

    name: str
    rotation: NDArray[np.float64]
    vertices: NDArray[np.float64]
    tip: NDArray[np.float64]
    extent: float
    front: bool

    @cached_property
    def upright(self) -> bool | None:
        return _upright(self.vertices, self.tip, self.extent) if self.front else None


@dataclass(frozen=True)
class FaceLooks:
    """One frame's face under every convention of :data:`AXIS_CONVENTIONS`, in order: measured
    once (:func:`face_looks`) and read by both the axes check (:meth:`verdicts`) and the
    texture check without landmarks (:meth:`upright_frame`)."""

    looks: tuple[_Look, ...]

    def verdicts(self) -> dict[str, dict[str, bool | None]]:
        """Each relation of :data:`ORIENTATION_CHECKS` under each convention: True (holds),
        False (fails), None (undetermined; "upright" is undetermined where "front" fails, as
        there is no nose tip to read it from)."""
        return {k.name: {"front": k.front, "upright": k.upright} for k in self.looks}

    def upright_frame(self) -> UprightFrame | None:
        """The axes in which the face shows a frontal, upright nose, else None: what a check
        that reads "below the nose" needs first, whatever the files' axes turn out to be. Where
        the file's own axes show a frontal nose they decide (used when it is upright, None when
        it is upside down or cannot tell: y-down files are flagged by the axes check, and
        trying "upside down" on a profile that cannot tell would read "below" on the ratio's
        noise). Otherwise the one other convention under which both relations hold, None when
        none or two do (a face stored z up can also fit "facing -z", seen edge-on)."""
        as_read = self.looks[0]
        if as_read.front:
            return _upright_frame(as_read) if as_read.upright else None
        # "upside down" shares the file's own tip, which showed no frontal nose
        fits = [k for k in self.looks[1:] if k.name != _UPSIDE_DOWN and k.front and k.upright]
        return _upright_frame(fits[0]) if len(fits) == 1 else None


def _upright_frame(look: _Look) -> UprightFrame:
    return UprightFrame(look.name, look.rotation, look.tip, look.extent)


def face_looks(vertices: NDArray[np.floating]) -> FaceLooks | None:
    """The face under each convention of :data:`AXIS_CONVENTIONS`; None for fewer than 20
    finite vertices or no extent."""
    v = _finite(vertices)
    if len(v) < 20:
        return None
    out = []
    for name, rot in AXIS_CONVENTIONS.items():
        r = v @ rot.T
        extent = face_extent(r)
        if extent <= 0:
            return None
        tip = nose_tip(r)
        out.append(_Look(name, rot, r, tip, extent, _front(r, tip, extent)))
    return FaceLooks(tuple(out))


def upright_frame(vertices: NDArray[np.floating]) -> UprightFrame | None:
    """:meth:`FaceLooks.upright_frame` of ``vertices`` (None where they cannot be measured)."""
    looks = face_looks(vertices)
    return None if looks is None else looks.upright_frame()


def orientation_verdicts(mesh: Mesh) -> dict[str, dict[str, bool | None]] | None:
    """:meth:`FaceLooks.verdicts` of the mesh; None for a frame with fewer than 20 vertices or
    no extent."""
    looks = face_looks(mesh.vertices)
    return None if looks is None else looks.verdicts()


def orientation_tally() -> RelationTally:
    """An empty tally of :data:`ORIENTATION_CHECKS`, grouped by axis convention."""
    return RelationTally(ORIENTATION_CHECKS)


def add_orientation(
    tally: RelationTally, where: str, mesh: Mesh, looks: FaceLooks | None = None
) -> None:
    """Count one frame's orientation relations in ``tally`` (frames it cannot test are
    skipped); ``looks``: the frame's :func:`face_looks` where the caller measured them."""
    looks = looks or face_looks(mesh.vertices)
    if looks is not None:
        for convention, v in looks.verdicts().items():
            tally.add_verdicts(convention, where, v)


def axis_verdict(tally: RelationTally) -> tuple[str, str]:
    """(verdict, best convention). A convention's fit is the number of frames on which both
    relations held under it. ``"differs"`` when another convention fits more frames than the
    files' own axes (named as the best); ``"agrees"`` when no other fits more and the files'
    axes fit more than half the frames; else ``"unclear"`` (most frames show no frontal,
    upright nose: far-turned scans, a face model with a symmetric nose, or not faces)."""
    fits = {g: tally.all_held[g] for g in tally.groups()}
    if not fits:
        return "unclear", AS_READ
    best = max(fits, key=lambda g: (fits[g], g == AS_READ))
    frames = tally.frames[AS_READ]
    if best != AS_READ and fits[best] > fits.get(AS_READ, 0):
        return "differs", best
    if fits.get(AS_READ, 0) * 2 > frames:
        return "agrees", AS_READ
    return "unclear", best
