"""Each dataset's code tables, one module a dataset: how its file or folder names spell
expressions, intensities, tasks and categories, its frame rate, its licence, and the assumptions
its reader makes about the files (``CONVENTIONS``: :class:`.status.Convention` rows, each
verified, reported or a guess; ``mvdata inspect`` prints them).

The readers (:mod:`mvdata.sources`) map these codes to the common expression vocabulary
(:data:`schemas.models.ALL_EXPRESSIONS`); the synthetic source's native writers
(:mod:`mvdata.synth.native`) invert the same tables, so each code is spelled once and neither side
imports the other.
"""
