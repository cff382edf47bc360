"""Bosphorus's codes: scan categories, emotion codes of the ``E`` category (the code list is *unverified*), licence.

Read by the reader (:mod:`mvdata.sources.bosphorus`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

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
