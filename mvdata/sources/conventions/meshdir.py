"""A plain mesh folder: no codes; the licence is the user's.

Read by the reader (:mod:`mvdata.sources.meshdir`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

LICENCE = (
    "Unknown: a user-supplied mesh folder; the user is responsible for the data's terms "
    "(state them with the data before publishing anything derived)."
)
