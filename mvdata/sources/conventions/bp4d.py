"""BP4D's codes: tasks that elicit an emotion (*unverified* mapping), frame rate, licence.

Read by the reader (:mod:`mvdata.sources.bp4d`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

TASK_EMOTIONS = {
    "T1": "happiness",
    "T2": "sadness",
    "T3": "surprise",
    "T5": "fear",
    "T7": "anger",
    "T8": "disgust",
}

FPS = 25.0

LICENCE = (
    "BP4D-Spontaneous / BP4D+ (Binghamton-Pittsburgh): research use under the database's "
    "licence agreement (EULA) with Binghamton University; not redistributable."
)


#: What the reader assumes about BP4D files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "layout",
        "<subject F001>/<task T1..T10>/<frame>.obj or .wrl with a same-stem .jpg/.png/.bmp; "
        "frame stems are integers; the AU, video, pose and physiology files are not read",
        "guess",
        "no real file seen: written from the papers' descriptions",
    ),
    Convention(
        "task emotions",
        "T1 happiness, T2 sadness, T3 surprise, T5 fear, T7 anger, T8 disgust (the task's "
        "target, not a per-frame label)",
        "guess",
        "BP4D paper (Zhang et al. 2014), mapping not checked against the files",
    ),
    Convention("frame rate", f"{FPS:g} fps", "guess", "BP4D paper"),
    Convention(
        "texture v",
        "OBJ vt and VRML texCoord with v up (origin at the image's lower-left), kept as they are",
        "guess",
        "the formats' conventions; no real file seen. "
        "`mvdata inspect --check` tests it on your files where they have landmarks (the "
        "texture orientation table)",
    ),
    file_axes("as the BU datasets, from the same lab; not checked against a real BP4D scan"),
    final_newline(".obj and .bnd files"),
)
