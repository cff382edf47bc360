"""BU-3DFE's codes: expression codes in file names (``AN01`` ...), ethnicity codes, licence.

Read by the reader (:mod:`mvdata.sources.bu3dfe`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

BU_EXPRESSIONS = {
    "NE": "neutral",
    "AN": "anger",
    "DI": "disgust",
    "FE": "fear",
    "HA": "happiness",
    "SA": "sadness",
    "SU": "surprise",
}

ETHNICITIES = ("WH", "AE", "BL", "AM", "IN", "LA")

LICENCE = (
    "BU-3DFE (Binghamton University 3D Facial Expression Database): research use under the "
    "database's licence agreement (EULA) with Binghamton University; not redistributable. "
    "Derived data may not be published without the licensor's permission."
)


#: expression name -> its file-name code (the synthetic source's BU-3DFE writer).
BU_CODES = {name: code for code, name in BU_EXPRESSIONS.items()}


#: What the reader assumes about BU-3DFE files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "file names",
        "F0001/F0001_AN01WH_F3D.wrl: sex, subject, expression AN DI FE HA SA SU with level "
        "01-04 or NE00, ethnicity, F3D (cropped face); _RAW scans are skipped",
        "reported",
        "the dataset's notes (raw-formats.md)",
    ),
    Convention(
        "texture v",
        "VRML texture coordinates as the VRML97 spec defines them: (0, 0) is the image's "
        "lower-left, v grows UP against the image rows; kept as they are",
        "guess",
        "VRML97 spec and raw-formats.md ('v is flipped against image rows'); not checked "
        "against a real BU-3DFE texture. "
        "`mvdata inspect --check` tests it on your files where they have landmarks (the "
        "texture orientation table)",
    ),
    Convention(
        ".bnd landmark order",
        "83 rows 'index x y z'; which row is which point is guessed (0-7 the subject's right "
        "eye, 8-15 the left, 16-35 brows, 36-47 nose, 48-67 lips, 68-82 contour, each ring "
        "from its image-leftmost point clockwise): the geometric prior reads the rows by this "
        "guess; the normaliser uses them only as an unordered set (centre and spread)",
        "guess",
        "second-hand code and menpo's bu3dfe_83 groups; schemas/landmarks.py BND_TO_CANONICAL. "
        "`mvdata inspect --check` tests it on your files (the landmark layout table)",
    ),
    file_axes("VRML97 is y up; not checked against a real BU-3DFE scan"),
    final_newline(".bnd files"),
)
