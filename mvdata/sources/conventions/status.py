"""The shape of one stated assumption about a dataset's files (:class:`Convention`).

Each dataset module of :mod:`mvdata.sources.conventions` lists its assumptions as data
(``CONVENTIONS``); ``mvdata inspect`` prints them with the dataset, the README's "What the
readers assume" table sums them up, and ``tests/test_conventions.py`` keeps one test per
assumption that states it. Real datasets are licensed and not available to CI, so a user
holding the files is the first to see a guess go wrong: the status says how far to trust it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["STATUS_TEXT", "Convention", "Status"]

#: ``verified``: checked against real files or a definition document; ``reported``: stated by
#: someone who saw real files (or the dataset's own notes), not re-checked here; ``guess``: from
#: second-hand code, common practice or a reading of ambiguous notes.
Status = Literal["verified", "reported", "guess"]

#: How each status is printed.
STATUS_TEXT: dict[str, str] = {
    "verified": "verified",
    "reported": "reported",
    "guess": "GUESS",
}


class Convention(NamedTuple):
    """One assumption a reader makes about a dataset's files."""

    topic: str  # a few words, e.g. "texture v"
    assumption: str  # what the reader assumes, in one or two sentences
    status: Status
    basis: str  # where it comes from (a real file, raw-formats.md, a spec, second-hand code)
