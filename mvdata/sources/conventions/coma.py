"""CoMA's codes: motion categories (only ``high_smile`` names an emotion), frame rate, licence.

Read by the reader (:mod:`mvdata.sources.coma`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

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


#: What the reader assumes about CoMA files (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "layout",
        "FaceTalk_<date>_<id>_TA/<category>/<category>.NNNNNN.ply, 12 motion categories",
        "reported",
        "the dataset's notes (raw-formats.md)",
    ),
    Convention(
        "vertex count",
        "registered FLAME topology, 5,023 vertices a mesh; the reader does not require it "
        "(any count reads)",
        "guess",
        "second-hand code",
    ),
    Convention(
        "PLY encoding",
        "ASCII or binary PLY: both are read",
        "guess",
        "second-hand code",
    ),
    Convention("frame rate", f"{FPS:g} fps", "guess", "CoMA paper, not checked against the files"),
    file_axes("FLAME's frame (y up, facing +z, metres); not checked against a real CoMA file"),
    final_newline("ASCII .ply files"),
)
