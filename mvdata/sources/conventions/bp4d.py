"""BP4D's codes: tasks that elicit an emotion (*unverified* mapping), frame rate, licence.

Read by the reader (:mod:`mvdata.sources.bp4d`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

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
