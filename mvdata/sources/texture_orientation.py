"""Test a reader's texture-coordinate convention on the scans themselves: do the lips come out
red and the eyes dark through the UVs the reader produced?

Whether a format's ``v`` grows up or down the image rows is a guess for most readers (VRML and
OBJ by their specs, PLY by MeshLab's habit; none checked on a real file here). A wrong guess
does not fail any read: it renders every face with a texture upside down. Faces have two marks
a texture cannot hide: the lips are redder than the skin, and the eyes (iris, pupil, lashes)
darker. ``mvdata inspect
--check`` samples the texture at the UV of each landmark's nearest vertex, as the renderer
would (texture row ``(1 - v) * H``, :mod:`mvdata.core`), and compares the lips and the eyes with
the bridge of the nose, both as read and with ``v`` flipped: a wrong convention shows as the
relations failing as read and holding flipped. Hand-written: no texture or mesh library knows
where a face's lips are.

With landmarks that name the lips, eyes and nose bridge (BU ``.bnd`` through its guessed
order, Bosphorus ``.lm3``, ibug names) it reads the lips and eyes there. Without them (BP4D,
FaceScape, plain mesh folders) it finds the lips by colour and the nose by shape: the reddest
1 % of the face's vertices (texture sampled at each vertex's UV) must lie below the nose tip,
which :mod:`.face_orientation` finds in the axes that show a frontal, upright nose (the
file's own where they show a frontal nose at all, else the one other convention that fits); a
frame where none does is not counted ("below" would mean nothing). It tests the texture against
the geometry, whatever the files' axes. Frames with no texture are not counted. Fair skin
under red light, closed eyes or a beard can make a relation undetermined (within the
tolerance) on some frames; a wrong orientation fails it on most. The brows are not used: light
brows on dark skin are lighter than the skin, so "brows are dark" is not a fact about faces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh
from mvdata.sources.face_orientation import FaceLooks, face_looks
from mvdata.sources.landmark_layout import canonical_points
from mvdata.sources.relations import RelationTally

__all__ = [
    "ORIENTATIONS",
    "TEXTURE_CHECKS",
    "add_texture",
    "texture_tally",
    "texture_verdict",
    "texture_verdicts",
]

#: Each relation tested, with what it asks of the texture.
TEXTURE_CHECKS: dict[str, str] = {
    "lips": "the lips (between each lip's outer and inner midpoints) are redder than the bridge "
    "of the nose",
    "eyes": "the eyes (the centre of each eye's corners and lids) are darker than the bridge of "
    "the nose",
    "lips below nose": "without landmarks: the reddest 1 % of the face's vertices near the nose "
    "tip lie below it",
}

#: The relations read through landmarks (the rest are read without them).
_LANDMARK_CHECKS = ("lips", "eyes")

#: The texture orientations tried: the reader's, and ``v`` flipped (``1 - v``).
ORIENTATIONS = ("as read", "v flipped")

#: Redness is ``(R - G) / (R + G + B)``: lips hold when redder than the bridge by more than
#: this, fail when less red by more than this (skin is about 0.08, lips 0.15-0.25).
REDNESS_TOLERANCE = 0.02

#: Eyes hold when their luminance is under this fraction of the bridge's and fail when above
#: the bridge's own (closed or light eyes fall between: undetermined).
DARK_EYE_RATIO = 0.85

#: "lips below nose": the reddest :data:`REDDEST_SHARE` of the vertices within
#: :data:`LIPS_REACH` of the face's extent from the nose tip (in x and y; the lips lie about 0.2
#: below it, the eyes as far above) must have their median height below the tip by more than
#: :data:`LIPS_MARGIN` of the extent, and fail above it by as much. Synthetic faces: median
#: -0.17 to -0.24 as read, +0.20 to +0.26 with v flipped.
REDDEST_SHARE = 0.01
LIPS_REACH = 0.3
LIPS_MARGIN = 0.03

_BRIDGE = ("nose_saddle", "nose_saddle_right", "nose_saddle_left")
#: The points around each eye; the eye's centre is the mean of their UVs.
_EYES = (
    (
        "eye_outer_right",
        "eye_inner_right",
        "upper_lid_right",
        "lower_lid_right",
        "upper_lid_outer_right",
        "upper_lid_inner_right",
        "lower_lid_inner_right",
        "lower_lid_outer_right",
    ),
    (
        "eye_outer_left",
        "eye_inner_left",
        "upper_lid_left",
        "lower_lid_left",
        "upper_lid_outer_left",
        "upper_lid_inner_left",
        "lower_lid_inner_left",
        "lower_lid_outer_left",
    ),
)
_LIPS = (("upper_lip_outer", "upper_lip_inner"), ("lower_lip_outer", "lower_lip_inner"))


def _landmark_uvs(mesh: Mesh) -> dict[str, NDArray[np.float64]]:
    """Canonical name -> the UV of the mesh vertex nearest that landmark (the first finite row of
    a name; a vertex on a UV seam takes the UV of the last triangle corner naming it)."""
    assert mesh.landmarks is not None and mesh.uvs is not None and mesh.uv_faces is not None
    points = canonical_points(mesh.landmark_names, mesh.landmarks)
    if not points:
        return {}
    uv_of_vertex = _vertex_uvs(mesh)
    verts = mesh.vertices.astype(np.float64)
    # one point at a time: a [points, vertices] distance matrix of a 500k-vertex scan is GBs
    nearest = {
        n: uv_of_vertex[int(((verts - p) ** 2).sum(axis=1).argmin())] for n, p in points.items()
    }
    uvs = mesh.uvs.astype(np.float64)
    return {n: uvs[k] for n, k in nearest.items() if k >= 0}


def _colour(texture: NDArray[np.uint8], uv: NDArray[np.float64], flip: bool) -> NDArray[np.float64]:
    """Mean RGB of a small patch around ``uv`` (OpenGL convention; ``flip`` reads ``1 - v``)."""
    h, w = texture.shape[:2]
    u, v = float(uv[0]), float(uv[1])
    if flip:
        v = 1.0 - v
    col = int(np.clip(u * w, 0, w - 1))
    row = int(np.clip((1.0 - v) * h, 0, h - 1))
    r = max(1, round(min(h, w) / 200))
    patch = texture[max(0, row - r) : row + r + 1, max(0, col - r) : col + r + 1]
    return np.asarray(patch.reshape(-1, 3).mean(axis=0), np.float64)


def _redness(rgb: NDArray[np.float64]) -> float:
    return float((rgb[0] - rgb[1]) / max(float(rgb.sum()), 1e-6))


def _luminance(rgb: NDArray[np.float64]) -> float:
    return float(rgb @ np.array([0.2126, 0.7152, 0.0722]))


def _mean_colour(
    texture: NDArray[np.uint8], uvs: Sequence[NDArray[np.float64]], flip: bool
) -> NDArray[np.float64] | None:
    cols = [_colour(texture, uv, flip) for uv in uvs]
    return np.mean(cols, axis=0) if cols else None


def _vertex_uvs(mesh: Mesh) -> NDArray[np.int64]:
    """Vertex -> the index of its UV (the last triangle corner naming it), -1 for none."""
    assert mesh.uv_faces is not None
    uv_of_vertex = np.full(mesh.num_vertices, -1, np.int64)
    uv_of_vertex[mesh.faces.ravel()] = mesh.uv_faces.ravel()
    return uv_of_vertex


def _lips_below_nose(
    mesh: Mesh, looks: FaceLooks | None
) -> dict[str, dict[str, bool | None]] | None:
    """The "lips below nose" relation per orientation for a frame without landmarks, "below"
    read in :meth:`FaceLooks.upright_frame` (measured here unless the caller passes
    ``looks``); None when no axes show a frontal, upright nose or too few vertices carry a
    UV."""
    assert mesh.texture is not None and mesh.uvs is not None and mesh.uv_faces is not None
    looks = looks or face_looks(mesh.vertices)
    found = None if looks is None else looks.upright_frame()
    if found is None:
        return None
    tip, extent = found.tip, found.extent
    uv_of_vertex = _vertex_uvs(mesh)
    verts = mesh.vertices.astype(np.float64) @ found.rotation.T
    near = (uv_of_vertex >= 0) & (
        np.hypot(verts[:, 0] - tip[0], verts[:, 1] - tip[1]) <= LIPS_REACH * extent
    )
    count = max(10, round(REDDEST_SHARE * int(near.sum())))
    if int(near.sum()) < 2 * count:
        return None
    heights = verts[near, 1] - tip[1]
    uvs = mesh.uvs.astype(np.float64)[uv_of_vertex[near]]
    h, w = mesh.texture.shape[:2]
    cols = np.clip((uvs[:, 0] * w).astype(np.int64), 0, w - 1)
    out: dict[str, dict[str, bool | None]] = {}
    for orientation in ORIENTATIONS:
        v = 1.0 - uvs[:, 1] if orientation == "v flipped" else uvs[:, 1]
        rows = np.clip(((1.0 - v) * h).astype(np.int64), 0, h - 1)
        rgb = mesh.texture[rows, cols, :3].astype(np.float64)
        redness = (rgb[:, 0] - rgb[:, 1]) / np.maximum(rgb.sum(axis=1), 1e-6)
        reddest = np.argpartition(redness, -count)[-count:]
        where = float(np.median(heights[reddest])) / extent
        out[orientation] = {
            "lips below nose": True
            if where < -LIPS_MARGIN
            else False
            if where > LIPS_MARGIN
            else None
        }
    return out


def texture_verdicts(
    mesh: Mesh, looks: FaceLooks | None = None
) -> dict[str, dict[str, bool | None]] | None:
    """Relations of :data:`TEXTURE_CHECKS` per orientation of :data:`ORIENTATIONS`: True
    (holds), False (fails), None (undetermined). "lips" and "eyes" for a frame with landmarks
    naming the nose bridge; "lips below nose" for one without (see the module's docstring;
    ``looks``: the frame's :func:`~.face_orientation.face_looks` where the caller measured
    them). None for a frame without a texture or UVs, or one neither way can read."""
    if mesh.texture is None or mesh.uvs is None or mesh.uv_faces is None:
        return None
    if mesh.landmarks is None or not mesh.landmark_names:
        return _lips_below_nose(mesh, looks)
    uv = _landmark_uvs(mesh)
    bridge_uvs = [uv[n] for n in _BRIDGE if n in uv]
    if not bridge_uvs:  # landmarks that name no nose bridge (unknown names): read by colour
        return _lips_below_nose(mesh, looks)
    eye_uvs = []
    for ring in _EYES:
        pts = [uv[n] for n in ring if n in uv]
        if len(pts) >= 2:  # a centre needs two points at least (the corners)
            eye_uvs.append(np.mean(pts, axis=0))
    lip_uvs = []
    for outer, inner in _LIPS:
        if outer in uv and inner in uv:
            lip_uvs.append((uv[outer] + uv[inner]) / 2)
        elif outer in uv:
            lip_uvs.append(uv[outer])
    out: dict[str, dict[str, bool | None]] = {}
    for orientation in ORIENTATIONS:
        flip = orientation == "v flipped"
        bridge = _mean_colour(mesh.texture, bridge_uvs, flip)
        assert bridge is not None
        verdicts: dict[str, bool | None] = dict.fromkeys(_LANDMARK_CHECKS)
        lips = _mean_colour(mesh.texture, lip_uvs, flip)
        if lips is not None:
            margin = _redness(lips) - _redness(bridge)
            verdicts["lips"] = (
                True
                if margin > REDNESS_TOLERANCE
                else False
                if margin < -REDNESS_TOLERANCE
                else None
            )
        eyes = _mean_colour(mesh.texture, eye_uvs, flip)
        if eyes is not None:
            le, ln = _luminance(eyes), _luminance(bridge)
            verdicts["eyes"] = True if le < DARK_EYE_RATIO * ln else False if le > ln else None
        out[orientation] = verdicts
    return out


def texture_tally() -> RelationTally:
    """An empty tally of :data:`TEXTURE_CHECKS`, grouped by orientation."""
    return RelationTally(TEXTURE_CHECKS)


def add_texture(
    tally: RelationTally, where: str, mesh: Mesh, looks: FaceLooks | None = None
) -> None:
    """Count one frame's texture relations in ``tally`` (frames it cannot test are skipped)."""
    verdicts = texture_verdicts(mesh, looks)
    if verdicts is not None:
        for orientation, v in verdicts.items():
            tally.add_verdicts(orientation, where, v)


def texture_verdict(tally: RelationTally) -> str:
    """The files' verdict on the reader's texture convention: ``"agrees"`` when the relations
    hold on more frames as read than with v flipped and hold more than fail as read,
    ``"flipped"`` when they hold on more frames flipped, else ``"unclear"`` (textures that show
    no lips or eyes where any orientation puts them)."""
    as_read = sum(tally.held[("as read", r)] for r in tally.relations)
    flipped = sum(tally.held[("v flipped", r)] for r in tally.relations)
    failed = sum(tally.failed[("as read", r)] for r in tally.relations)
    if flipped > as_read:
        return "flipped"
    if as_read > flipped and as_read > failed:
        return "agrees"
    return "unclear"
