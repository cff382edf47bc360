"""The fingerprint of a build's inputs: size and modification time (ns) of every source file the
plan reads, kept in ``OUT/.mvdata/build.json`` next to the settings.

A shard's bytes are a function of the plan and the files it reads. A file edited (or added, or
removed) between two workers of one build, or before a resume, would give shards made from two
different datasets: duplicates, missing samples, and a build that looks finished. The driver
refuses to resume, and :func:`~mvdata.build.finalize.finalize` to write the root files, when the
fingerprint differs from the one recorded when the build started, naming the files.

Size + ``mtime_ns`` is what ``make``, rsync and pip's caches trust: one ``stat`` a file (a few
seconds for a BU-4DFE-sized tree of ~180k files), against hashing every byte of it. A file
rewritten with the same size within the filesystem's timestamp granularity goes unseen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from mvdata.core import Item

#: Relative path -> ``[size, mtime_ns]``, or ``None`` for a file that does not exist.
Fingerprint = dict[str, list[int] | None]


def fingerprint(items: Iterable[Item]) -> Fingerprint:
    """Size and ``mtime_ns`` of every file the items read, by path relative to their root."""
    out: Fingerprint = {}
    for item in items:
        for rel in item.source_paths:
            if rel in out:
                continue
            try:
                st = os.stat(os.path.join(item.root, rel))
            except FileNotFoundError:
                out[rel] = None
                continue
            out[rel] = [int(st.st_size), int(st.st_mtime_ns)]
    return dict(sorted(out.items()))


def changed_files(recorded: Mapping[str, object], now: Mapping[str, object]) -> list[str]:
    """Every path whose entry differs between two fingerprints, with what happened to it:
    ``"path (changed)"``, ``"(removed)"`` or ``"(added)"``; sorted by path."""
    out = []
    for path in sorted(set(recorded) | set(now)):
        before, after = recorded.get(path), now.get(path)
        if before == after:
            continue
        if path not in now or after is None:
            what = "removed"
        elif path not in recorded or before is None:
            what = "added"
        else:
            what = "changed"
        out.append(f"{path} ({what})")
    return out


def describe_changes(changed: list[str], first: int = 5) -> str:
    """The first few changed files and how many there are, for one message."""
    head = ", ".join(changed[:first])
    more = f" and {len(changed) - first} more" if len(changed) > first else ""
    return f"{len(changed)} source file(s) changed: {head}{more}"
