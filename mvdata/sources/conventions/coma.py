"""CoMA's codes: motion categories (only ``high_smile`` names an emotion), frame rate, licence.

Read by the reader (:mod:`mvdata.sources.coma`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

CATEGORIES = (
    "bareteeth",
    "cheeks_in",
    "eyebrow",
    "high_smile",
    "lips_back",
    "lips_up",
    "mouth_down",
    "mouth_extreme",
    "mouth_middle",
    "mouth_open",
    "mouth_side",
    "mouth_up",
)

EXPRESSIONS = {"high_smile": "happiness"}

FPS = 60.0

LICENCE = (
    "CoMA (Convolutional Mesh Autoencoder) dataset, Max Planck Institute for Intelligent "
    "Systems: non-commercial scientific research only under its licence; not redistributable."
)
