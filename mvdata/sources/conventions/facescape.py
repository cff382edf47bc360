"""FaceScape's codes: the 20 expression names of ``models_reg`` (four name an emotion), licence.

Read by the reader (:mod:`mvdata.sources.facescape`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

NAMES = (
    "neutral",
    "smile",
    "mouth_stretch",
    "anger",
    "jaw_left",
    "jaw_right",
    "jaw_forward",
    "mouth_left",
    "mouth_right",
    "dimpler",
    "chin_raiser",
    "lip_puckerer",
    "lip_funneler",
    "sadness",
    "lip_roll",
    "grin",
    "cheek_blowing",
    "eye_closed",
    "brow_raiser",
    "brow_lower",
)

EXPRESSIONS = {"neutral": "neutral", "smile": "happiness", "anger": "anger", "sadness": "sadness"}

LICENCE = (
    "FaceScape: research use only under the FaceScape licence agreement (application "
    "required); not redistributable; publishing images of identities needs consent as listed."
)


#: What the reader assumes about FaceScape files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "layout",
        "<id>/models_reg/<k>_<name>.obj + .mtl + .jpg, the 20 expression names in their order",
        "reported",
        "the dataset's notes (raw-formats.md)",
    ),
    Convention(
        "texture v",
        "OBJ vt with v up (origin at the image's lower-left), kept as they are",
        "guess",
        "the OBJ convention; not checked against a real FaceScape texture",
    ),
    Convention(
        "emotions",
        "only neutral, smile (happiness), anger and sadness name an emotion; the other 16 "
        "names keep no expression",
        "guess",
        "this project's reading of the names",
    ),
    file_axes("the OBJ habit (y up); not checked against a real FaceScape model"),
    final_newline(".obj files"),
)
