"""Assumptions shared by every reader of a text format (OBJ, ASCII PLY, ``.bnd``), stated once
and listed by each dataset module that reads such files."""

from __future__ import annotations

from mvdata.sources.conventions.status import Convention


def final_newline(files: str) -> Convention:
    """The final-newline rule for ``files`` (e.g. ``".obj and .bnd files"``): a file that ends
    inside a data line is refused as truncated. A file cut inside its last line (``f 1 2 3``
    of ``f 1 2 34``) cannot otherwise be told from a complete one, and a copy cut anywhere in
    its last block leaves exactly that; the price is that an exporter which leaves the final
    newline off makes every file of its dataset fail, with a message saying so."""
    return Convention(
        "final newline",
        f"complete {files} end with a newline; one that ends inside a data line is refused "
        "as cut off (truncated)",
        "guess",
        "common practice of text writers; not checked against the real files",
    )
