"""Canonical semantic landmarks and the mapping from each dataset's own landmark names.

A contract, pure Python (no numpy): the geometric prior (:mod:`mvmodel.prior`) works on these
canonical names only, whatever the dataset wrote. This file is this project's design; the paper
(arXiv 2505.09336) says nothing about landmarks.

Left and right
--------------
In every canonical name, ``left``/``right`` are the **subject's** left and right (the way an
anatomist or a FACS coder says it), never the image's. In the canonical frame of the shards
(face looking along +z, y up, x from the subject's right eye to the left eye) the subject's right
side therefore has the *smaller* x. How each dataset's convention maps onto this:

* **ibug-68** (synthetic source, names ``"ibug1"`` .. ``"ibug68"``, 1-based ids): points 37-42
  are the subject's right eye, 18-22 the subject's right brow, 49 the subject's right mouth
  corner. *Verified*: the 300-W / ibug markup definition and the Surrey Face Model's
  ``ibug_to_sfm.txt`` (eos) agree, and the latter's comments say "right eye outer-corner" for 37
  and "from subject's perspective" for the lid points. The SFM defines 50 of the 68 points
  (9, 18-60, 62-64, 66-68: no jaw contour except the chin, no inner mouth corners 61/65).
* **BU-3DFE / BU-4DFE** ``.bnd`` (names ``"bnd00"`` .. ``"bnd82"``, 0-based rows): *an
  unverified guess*. The order has not been checked against a real file. The commonly cited
  layout is 0-7 one eye, 8-15 the other, 16-25 and 26-35 the brows, 36-47 nose, 48-67 mouth
  (48-59 outer lip, 60-67 inner lip), 68-82 face contour. Sources disagree on whether "left eye
  = 0-7" means the image's left (= the subject's right) or the subject's left; menpo's
  ``bu3dfe_83`` labelling calls 0-7 the *right* eye. Both readings agree if the BU
  documentation's "left" is the image's left, so this module takes **0-7 = the subject's right
  eye** (the eye on the image's left). Inside each contour, the order is a further guess: every
  ring is assumed to start at its image-leftmost point and run clockwise in the image (over the
  top first), as ibug's eye and outer-lip contours do. No nose tip or subnasale is mapped for
  BU (the 83 points name none for certain); the nose base falls back to the alae (42, 47).
* **Bosphorus** ``.lm3`` (22 labels in words, e.g. ``"Outer left eye corner"``): the label
  texts are *verified* (raw-formats.md lists those of a real file). Which side they mean is *a
  guess*: in the files seen, "left" points have the smaller x. Reading the scanner frame as a
  face seen from the front (looking along +z, x to the image's right), the smaller x is the
  image's left, i.e. the **subject's right**; so Bosphorus "left" is mapped to canonical
  ``*_right``. "Nose peak" is read as the ala (nostril wing) and "Nose saddle left/right" as the
  two sides of the nasal bridge: also guesses.

The project's own synthetic BU files (``mvdata synth --format bu3dfe|bu4dfe``) are written in
this guessed order (``mvdata.synth.native.BND_FROM_IBUG``), so they exercise the mapping end to
end but cannot confirm it. What can test it is the geometry of real files:
``mvdata inspect --check`` measures anatomical relations through the mapping on every frame
(``mvdata.sources.landmark_layout``: lids above lids, outer eye corners outside inner ones, the
nose in front of the eyes, ...) and says when the mapping disagrees with the scans.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "BND_TO_CANONICAL",
    "BOSPHORUS_LABELS",
    "BOSPHORUS_TO_CANONICAL",
    "CANONICAL_LANDMARKS",
    "IBUG_TO_CANONICAL",
    "MAPPING_STATUS",
    "SEMANTIC_SCHEMES",
    "canonical_index",
    "canonical_name",
    "ibug_id",
    "naming_scheme",
]

#: The canonical semantic landmarks, in a stable order (left/right = the subject's).
#: Lid points: ``upper_lid_<side>`` / ``lower_lid_<side>`` are the lid midpoints; ibug has no
#: midpoint but two points per lid, named ``*_outer_*`` / ``*_inner_*`` (the one nearer the outer
#: or the inner eye corner).
CANONICAL_LANDMARKS: tuple[str, ...] = (
    # eyes
    "eye_outer_right",
    "eye_inner_right",
    "eye_inner_left",
    "eye_outer_left",
    "upper_lid_right",
    "lower_lid_right",
    "upper_lid_left",
    "lower_lid_left",
    "upper_lid_outer_right",
    "upper_lid_inner_right",
    "lower_lid_inner_right",
    "lower_lid_outer_right",
    "upper_lid_inner_left",
    "upper_lid_outer_left",
    "lower_lid_outer_left",
    "lower_lid_inner_left",
    # brows
    "brow_outer_right",
    "brow_mid_right",
    "brow_inner_right",
    "brow_inner_left",
    "brow_mid_left",
    "brow_outer_left",
    # nose
    "nose_saddle",
    "nose_saddle_right",
    "nose_saddle_left",
    "nose_tip",
    "subnasale",
    "nose_ala_right",
    "nose_ala_left",
    # mouth and chin
    "mouth_corner_right",
    "mouth_corner_left",
    "upper_lip_outer",
    "upper_lip_inner",
    "lower_lip_inner",
    "lower_lip_outer",
    "chin",
)

#: ibug-68 id (1-based) -> canonical name. Verified (see the module docstring).
IBUG_TO_CANONICAL: dict[int, str] = {
    9: "chin",
    18: "brow_outer_right",
    20: "brow_mid_right",
    22: "brow_inner_right",
    23: "brow_inner_left",
    25: "brow_mid_left",
    27: "brow_outer_left",
    28: "nose_saddle",
    31: "nose_tip",
    32: "nose_ala_right",
    34: "subnasale",
    36: "nose_ala_left",
    37: "eye_outer_right",
    38: "upper_lid_outer_right",
    39: "upper_lid_inner_right",
    40: "eye_inner_right",
    41: "lower_lid_inner_right",
    42: "lower_lid_outer_right",
    43: "eye_inner_left",
    44: "upper_lid_inner_left",
    45: "upper_lid_outer_left",
    46: "eye_outer_left",
    47: "lower_lid_outer_left",
    48: "lower_lid_inner_left",
    49: "mouth_corner_right",
    52: "upper_lip_outer",
    55: "mouth_corner_left",
    58: "lower_lip_outer",
    63: "upper_lip_inner",
    67: "lower_lip_inner",
}

#: BU-3DFE/BU-4DFE ``.bnd`` row (0-based) -> canonical name. AN UNVERIFIED GUESS (module docstring):
#: rings start at their image-leftmost point and run clockwise in the image.
BND_TO_CANONICAL: dict[int, str] = {
    # eye on the image's left = subject's right: 0 outer corner, 1-3 upper lid, 4 inner, 5-7 lower
    0: "eye_outer_right",
    2: "upper_lid_right",
    4: "eye_inner_right",
    6: "lower_lid_right",
    # eye on the image's right = subject's left: 8 inner corner, 9-11 upper lid, 12 outer, 13-15
    8: "eye_inner_left",
    10: "upper_lid_left",
    12: "eye_outer_left",
    14: "lower_lid_left",
    # brows (10-point rings): 16 outer end, 17-20 upper edge, 21 inner end; 26 inner .. 31 outer
    16: "brow_outer_right",
    18: "brow_mid_right",
    21: "brow_inner_right",
    26: "brow_inner_left",
    28: "brow_mid_left",
    31: "brow_outer_left",
    # nose: 36-38 / 39-41 the two sides of the bridge (top first), 42-47 along the nose base
    36: "nose_saddle_right",
    39: "nose_saddle_left",
    42: "nose_ala_right",
    47: "nose_ala_left",
    # outer lip (12-point ring, as ibug 49-60): 48 corner, 51 upper middle, 54 corner, 57 lower
    48: "mouth_corner_right",
    51: "upper_lip_outer",
    54: "mouth_corner_left",
    57: "lower_lip_outer",
    # inner lip (8-point ring): 60 corner, 62 upper middle, 64 corner, 66 lower middle
    62: "upper_lip_inner",
    66: "lower_lip_inner",
    # face contour 68-82 (15 points, ear to ear): 75 the middle
    75: "chin",
}

#: The 22 Bosphorus labels of a real ``.lm3`` file, in their order (verified texts).
BOSPHORUS_LABELS: tuple[str, ...] = (
    "Outer left eyebrow",
    "Middle left eyebrow",
    "Inner left eyebrow",
    "Inner right eyebrow",
    "Middle right eyebrow",
    "Outer right eyebrow",
    "Outer left eye corner",
    "Inner left eye corner",
    "Inner right eye corner",
    "Outer right eye corner",
    "Nose saddle left",
    "Nose saddle right",
    "Left nose peak",
    "Nose tip",
    "Right nose peak",
    "Left mouth corner",
    "Upper lip outer middle",
    "Right mouth corner",
    "Upper lip inner middle",
    "Lower lip inner middle",
    "Lower lip outer middle",
    "Chin middle",
)

#: Bosphorus label (normalised: lower case, single spaces) -> canonical name. The texts are
#: verified; reading Bosphorus "left" as the subject's RIGHT is a guess (module docstring).
BOSPHORUS_TO_CANONICAL: dict[str, str] = {
    "outer left eyebrow": "brow_outer_right",
    "middle left eyebrow": "brow_mid_right",
    "inner left eyebrow": "brow_inner_right",
    "inner right eyebrow": "brow_inner_left",
    "middle right eyebrow": "brow_mid_left",
    "outer right eyebrow": "brow_outer_left",
    "outer left eye corner": "eye_outer_right",
    "inner left eye corner": "eye_inner_right",
    "inner right eye corner": "eye_inner_left",
    "outer right eye corner": "eye_outer_left",
    "nose saddle left": "nose_saddle_right",
    "nose saddle right": "nose_saddle_left",
    "left nose peak": "nose_ala_right",
    "nose tip": "nose_tip",
    "right nose peak": "nose_ala_left",
    "left mouth corner": "mouth_corner_right",
    "upper lip outer middle": "upper_lip_outer",
    "right mouth corner": "mouth_corner_left",
    "upper lip inner middle": "upper_lip_inner",
    "lower lip inner middle": "lower_lip_inner",
    "lower lip outer middle": "lower_lip_outer",
    "chin middle": "chin",
}

#: What is known about each mapping, for logs and dataset cards.
MAPPING_STATUS: Mapping[str, str] = {
    "ibug": "verified (300-W markup, eos ibug_to_sfm.txt)",
    "bnd": "unverified guess (order and sides)",
    "bosphorus": "label texts verified; left = subject's right is a guess",
}

_IBUG = re.compile(r"^ibug(\d+)$")
_BND = re.compile(r"^bnd(\d+)$")
_SPACES = re.compile(r"\s+")


def _normalise(name: str) -> str:
    return _SPACES.sub(" ", name.strip()).lower()


#: Landmark naming schemes whose names the normaliser (:mod:`mvdata.render.normalise`) reads by meaning (through
#: :func:`schemas.landmarks.canonical_name`): ibug-68 (verified) and Bosphorus's label texts
#: (texts verified). Which anatomical side Bosphorus's "left" means is a guess, but it cannot
#: change the transform: the x axis runs from the eye points mapped to the subject's right to
#: those mapped to the left, i.e. from the points with the smaller x (Bosphorus "left" in the
#: files seen) to the larger, whichever side they are. BU ``.bnd`` rows (``"bndNN"``) are NOT
#: read by meaning: their order is an unverified guess (:data:`schemas.landmarks.BND_TO_CANONICAL`,
#: which ``mvdata inspect --check`` tests on the files' geometry); they count only as an unordered
#: point set (centre and spread fallbacks), which holds whatever the order.
SEMANTIC_SCHEMES = ("ibug", "bosphorus")


def naming_scheme(name: str) -> str | None:
    """The naming scheme of one landmark name: ``"ibug"``, ``"bnd"``, ``"bosphorus"`` or None
    (a name no mapping knows). Case and whitespace are ignored, as in :func:`canonical_name`."""
    key = _normalise(name)
    if _IBUG.match(key):
        return "ibug"
    if _BND.match(key):
        return "bnd"
    return "bosphorus" if key in BOSPHORUS_TO_CANONICAL else None


def ibug_id(name: str) -> int | None:
    """The 1-based ibug-68 id of an ``"ibugNN"`` name, or None for any other name (case and
    whitespace ignored, as in :func:`canonical_name`)."""
    m = _IBUG.match(_normalise(name))
    return int(m.group(1)) if m else None


def canonical_name(name: str) -> str | None:
    """The canonical landmark a dataset's landmark ``name`` stands for, or None.

    Recognises ``"ibugNN"`` (1-based ibug-68 ids), ``"bndNN"`` (0-based BU ``.bnd`` rows) and the
    Bosphorus label texts; case and whitespace are ignored. Points without a canonical meaning
    (e.g. the jaw contour) give None.
    """
    key = _normalise(name)
    m = _IBUG.match(key)
    if m:
        return IBUG_TO_CANONICAL.get(int(m.group(1)))
    m = _BND.match(key)
    if m:
        return BND_TO_CANONICAL.get(int(m.group(1)))
    return BOSPHORUS_TO_CANONICAL.get(key)


def canonical_index(names: Sequence[str]) -> dict[str, int]:
    """Canonical name -> row index into ``names`` (and the landmark rows that go with them).

    Points a dataset does not provide are simply absent from the result (never 0). When two rows
    map to the same canonical point, the first one wins. The result iterates in the order of
    :data:`CANONICAL_LANDMARKS`.
    """
    found: dict[str, int] = {}
    for row, name in enumerate(names):
        canon = canonical_name(name)
        if canon is not None and canon not in found:
            found[canon] = row
    return {c: found[c] for c in CANONICAL_LANDMARKS if c in found}
