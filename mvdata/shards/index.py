"""The DALI webdataset index (``.idx``, format v1.2 of NVIDIA DALI's ``tools/wds2idx.py``)::

    v1.2 <num_samples>
    <ext> <data_offset> <size> <member_name> <ext> <data_offset> <size> <member_name> ...

one line per sample, components in tar order, ``ext`` = the member name after the key's first
dot, ``data_offset`` = offset of the member's DATA (its header offset + 512). The shard writer
builds the lines from its own offsets (no second pass over the tar; the tests check the result is
byte-identical to ``wds2idx``); the DALI loader's quarantine writes patched copies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: DALI index format version written on the first line (as ``wds2idx.py`` writes it).
INDEX_VERSION = "v1.2"


IndexEntry = tuple[str, int, int, str]

_NUMBER = re.compile(r"[0-9]{1,20}")


def format_index(samples: Sequence[Sequence[IndexEntry]]) -> bytes:
    """The bytes of an index listing ``samples`` (per sample, ``(ext, data_offset, size, name)``
    per component, in tar order)."""
    lines = [" ".join(f"{ext} {off} {size} {name}" for ext, off, size, name in s) for s in samples]
    return (f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)).encode(
        "ascii"
    )


def read_index(data: bytes | str, where: str = "index") -> list[list[tuple[str, int, int, str]]]:
    """Parse a DALI v1.2 index: per sample, ``(ext, data_offset, size, name)`` per component.

    Raises ``ValueError`` starting with ``where`` (the index file's path, for the message) when
    the bytes are not ASCII, the header is not ``v1.2 <num_samples>``, the count disagrees with
    the lines, or a line is not ``ext offset size name`` groups of non-negative integers."""
    if isinstance(data, bytes):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{where}: not a DALI index (byte {exc.start} is not ASCII text)"
            ) from None
    else:
        text = data
    lines = text.split("\n")
    head = lines[0].split()
    if len(head) != 2 or head[0] != INDEX_VERSION or not _NUMBER.fullmatch(head[1]):
        raise ValueError(
            f"{where}: header {lines[0][:80]!r} is not '{INDEX_VERSION} <num_samples>'"
        )
    n = int(head[1])
    if lines[-1] != "":
        raise ValueError(f"{where}: does not end with a newline (cut short?)")
    body = lines[1:-1]
    if len(body) != n:
        raise ValueError(f"{where}: header says {n} samples, the body has {len(body)} lines")
    samples = []
    for i, line in enumerate(body):
        fields = line.split(" ")
        if len(fields) % 4 or not line:
            raise ValueError(
                f"{where}: line {i + 2} has {len(fields)} fields, not groups of 4 "
                "(ext offset size name)"
            )
        entries = []
        for k in range(0, len(fields), 4):
            off, size = fields[k + 1], fields[k + 2]
            if not (_NUMBER.fullmatch(off) and _NUMBER.fullmatch(size)):
                raise ValueError(
                    f"{where}: line {i + 2}: offset {off[:20]!r} / size {size[:20]!r} of "
                    f"{fields[k + 3][:100]!r} are not non-negative integers"
                )
            entries.append((fields[k], int(off), int(size), fields[k + 3]))
        samples.append(entries)
    return samples


def outside_tar(
    samples: Sequence[Sequence[IndexEntry]], tar_size: int
) -> list[tuple[int, str, str]]:
    """``(line, ext, name)`` of every index entry whose data does not lie inside a tar of
    ``tar_size`` bytes (after its 512-byte header): a truncated tar, or a corrupt index. Checked
    before anything is read, so that a size field of 10**12 never reaches ``read()``."""
    bad = []
    for line, comps in enumerate(samples):
        for ext, off, size, name in comps:
            if off < 512 or off + size > tar_size:
                bad.append((line, ext, name))
    return bad
