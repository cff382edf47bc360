"""Assumptions about a scan's geometry shared by the readers that hand the renderer a file's own
coordinates, stated once and listed by each dataset module whose files are read that way."""

from __future__ import annotations

from mvdata.sources.conventions.status import Convention


def file_axes(basis: str) -> Convention:
    """The axis rule: the file's +y is up and the face looks along +z. The normaliser turns a
    scan upright only from landmarks named by meaning (ibug, Bosphorus); every other scan keeps
    its file's axes, so a dataset stored z up or facing -z would be rendered from below or
    behind. ``mvdata inspect --check`` tests the rule on the files' shapes
    (:mod:`mvdata.sources.face_orientation`); ``basis`` says where the guess comes from."""
    return Convention(
        "axes",
        "+y up, the face looking along +z (towards the frontal camera); the file's coordinates "
        "are kept, as the normaliser turns no scan without landmarks named by meaning",
        "guess",
        f"{basis}; tested on the files' shapes by `mvdata inspect --check`",
    )
