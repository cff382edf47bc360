"""BU-4DFE's codes: expression folder names, frame rate, licence.

Read by the reader (:mod:`mvdata.sources.bu4dfe`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

FOLDERS = {
    "Angry": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Sad": "sadness",
    "Surprise": "surprise",
}

FPS = 25.0

LICENCE = (
    "BU-4DFE (Binghamton University 4D Facial Expression Database): research use under the "
    "database's licence agreement (EULA) with Binghamton University; not redistributable."
)


#: expression name -> its folder (the synthetic source's BU-4DFE writer).
FOLDER_OF = {name: folder for folder, name in FOLDERS.items()}
