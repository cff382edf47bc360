"""Bosphorus's codes: scan categories, emotion codes of the ``E`` category (the code list is *unverified*), licence.

Read by the reader (:mod:`mvdata.sources.bosphorus`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.status import Convention

CATEGORIES = ("N", "LFAU", "UFAU", "CAU", "E", "YR", "PR", "CR", "O", "IGN")

EMOTIONS = {
    "ANGER": "anger",
    "DISGUST": "disgust",
    "FEAR": "fear",
    "HAPPY": "happiness",
    "SADNESS": "sadness",
    "SURPRISE": "surprise",
}

LICENCE = (
    "Bosphorus 3D Face Database (Bogazici University): research use under the database's "
    "licence agreement (EULA); not redistributable."
)


#: expression name -> its emotion code (the synthetic source's Bosphorus writer).
EMOTION_CODES = {name: code for code, name in EMOTIONS.items()}


#: What the reader assumes about Bosphorus files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "bnt layout",
        "uint16 rows, uint16 cols, float64 zmin, uint16 L + texture name, uint32 N = 5*rows*cols, "
        "then N float64: all x, y, z, u, v; the file is exactly 18 + L + 8N bytes",
        "verified",
        "byte layout checked against real files (raw-formats.md)",
    ),
    Convention(
        "grid rows",
        "row 0 is the bottom of the face (y grows with the row); background points have "
        "z == zmin (x and y are not always set there)",
        "verified",
        "real files (raw-formats.md)",
    ),
    Convention(
        "texture v",
        "u, v index the .png with v growing DOWN the image rows (v = 0 is the top row); the "
        "reader turns it into v-up UVs with 1 - v",
        "reported",
        "reported from a real file: v falls as y rises (correlation -1.0)",
    ),
    Convention(
        ".lm2 points",
        "2-D landmarks are texture pixels, y down the image rows (the synthetic writer writes "
        "them so; the reader uses the 3-D .lm3 points)",
        "reported",
        "raw-formats.md, from real files",
    ),
    Convention(
        "landmark labels",
        "a .lm3 names its points in words, 22 in a full scan (Outer left eyebrow ... Chin "
        "middle), fewer or more where occluded; mapped to canonical names by their text",
        "verified",
        "the labels of a real file (raw-formats.md)",
    ),
    Convention(
        "landmark sides",
        "a label's 'left' is the subject's RIGHT (those points have the smaller x in the files "
        "seen); 'Nose peak' is a nostril wing, 'Nose saddle' a side of the nasal bridge",
        "guess",
        "schemas/landmarks.py; the normalisation does not depend on it. `mvdata inspect "
        "--check` tests the sides on your files (the landmark layout table's 'sides' row)",
    ),
    Convention(
        "emotion codes",
        "E-category codes ANGER DISGUST FEAR HAPPY SADNESS SURPRISE name the six emotions; "
        "other codes keep no expression",
        "guess",
        "second-hand code only",
    ),
)
