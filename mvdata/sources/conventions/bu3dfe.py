"""BU-3DFE's codes: expression codes in file names (``AN01`` ...), ethnicity codes, licence.

Read by the reader (:mod:`mvdata.sources.bu3dfe`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

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
