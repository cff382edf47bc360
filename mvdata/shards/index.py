"""The DALI webdataset index (``.idx``, format v1.2 of NVIDIA DALI's ``tools/wds2idx.py``)::

    v1.2 <num_samples>
    <ext> <data_offset> <size> <member_name> <ext> <data_offset> <size> <member_name> ...

one line per sample, components in tar order, ``ext`` = the member name after the key's first
dot, ``data_offset`` = offset of the member's DATA (its header offset + 512). The shard writer
builds the lines from its own offsets (no second pass over the tar; the tests check the result is
byte-identical to ``wds2idx``); the DALI loader's quarantine writes patched copies.
"""

from __future__ import annotations

from collections.abc import Sequence

#: DALI index format version written on the first line (as ``wds2idx.py`` writes it).
INDEX_VERSION = "v1.2"


IndexEntry = tuple[str, int, int, str]


def format_index(samples: Sequence[Sequence[IndexEntry]]) -> bytes:
    """The bytes of an index listing ``samples`` (per sample, ``(ext, data_offset, size, name)``
    per component, in tar order)."""
    lines = [" ".join(f"{ext} {off} {size} {name}" for ext, off, size, name in s) for s in samples]
    return (f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)).encode(
        "ascii"
    )


def read_index(data: bytes | str) -> list[list[tuple[str, int, int, str]]]:
    """Parse a DALI v1.2 index: per sample, ``(ext, data_offset, size, name)`` per component."""
    text = data.decode("ascii") if isinstance(data, bytes) else data
    lines = text.split("\n")
    head = lines[0].split()
    if len(head) != 2 or head[0] != INDEX_VERSION:
        raise ValueError(f"index header {lines[0]!r} is not '{INDEX_VERSION} <num_samples>'")
    n = int(head[1])
    if lines[-1] != "":
        raise ValueError("index does not end with a newline")
    body = lines[1:-1]
    if len(body) != n:
        raise ValueError(f"index header says {n} samples, body has {len(body)} lines")
    samples = []
    for line in body:
        fields = line.split(" ")
        if len(fields) % 4 or not fields:
            raise ValueError(f"index line has {len(fields)} fields, not a multiple of 4")
        samples.append(
            [
                (fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3])
                for i in range(0, len(fields), 4)
            ]
        )
    return samples
