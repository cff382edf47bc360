"""BU-4DFE's codes: expression folder names, frame rate, licence.

Read by the reader (:mod:`mvdata.sources.bu4dfe`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

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


#: What the reader assumes about BU-4DFE files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "layout",
        "F001/Angry/000.wrl, one VRML file a frame, with NNN.jpg (texture) and NNN.bnd "
        "(landmarks) beside it; expression folders Angry Disgust Fear Happy Sad Surprise",
        "reported",
        "the dataset's notes (raw-formats.md)",
    ),
    Convention(
        "no correspondence",
        "frames share no vertex order (each is a new scan): motion is measured by nearest "
        "vertices, never by index",
        "reported",
        "raw-formats.md",
    ),
    Convention(
        "frame rate",
        f"{FPS:g} fps",
        "reported",
        "raw-formats.md",
    ),
    Convention(
        "VRML version",
        "VRML 2.0 like BU-3DFE's files; VRML 1.0 frames (Coordinate3, TextureCoordinate2, "
        "Texture2) are read too, any other version is refused",
        "guess",
        "raw-formats.md states BU-3DFE's version only",
    ),
    Convention(
        "texture v",
        "VRML97: (0, 0) is the image's lower-left, v grows up; kept as they are",
        "guess",
        "VRML97 spec; not checked against a real BU-4DFE texture. "
        "`mvdata inspect --check` tests it on your files where they have landmarks (the "
        "texture orientation table)",
    ),
    Convention(
        ".bnd landmark order",
        "83 rows (an empty 84th line tolerated) in BU-3DFE's guessed order: the geometric "
        "prior reads the rows by this guess; the normaliser uses them only as an unordered "
        "set (centre and spread)",
        "guess",
        "second-hand code; schemas/landmarks.py BND_TO_CANONICAL. `mvdata inspect --check` "
        "tests it on your files (the landmark layout table)",
    ),
    file_axes("as BU-3DFE; not checked against a real BU-4DFE scan"),
    final_newline(".bnd files"),
)
