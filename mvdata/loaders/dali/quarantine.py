"""Samples the DALI loader masks because a member does not decode, and the index files that keep
DALI from decoding them again.

DALI cannot drop a sample once decoding has started: a corrupt JPEG or PNG stops the pipeline.
Removing the sample from the index would shift every later reader position, so the reader
checkpoint the loader restarts from would no longer point at the next unseen batch, and the
rank would take a different number of steps than its peers. Instead the sample stays in the
index with its undecodable members pointed at a member of the same kind that does decode (a
*donor* in the same tar); its ``json`` member, and so its key, is left as it was, and the loader
marks that row ``valid=False``. Sample counts, positions and steps are unchanged.

Members whose index entry points outside the tar (a tar cut short) are masked the same way,
the ``json`` member included (its donor is another sample's json; the row's key still comes from
the entry's own name).

Hand-written because no library does this: it rewrites DALI's own ``.idx`` text (v1.2), one line
per sample, ``ext offset size name`` per member.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field

from mvdata.io import atomic_write
from mvdata.loaders.dataset import DatasetInfo
from mvdata.shards.codecs import image_problem
from mvdata.shards.index import IndexEntry, format_index, read_index


def member_problem(ext: str, data: bytes, size: int) -> str | None:
    """``None`` when DALI would take member ``ext`` (``json``, or ``tNN.vNN.rgb.jpg``, ...),
    else the reason it would not: for images what DALI checks (PNG CRCs, the stored ``size``,
    mode and bit depth, a whole decode; :func:`mvdata.shards.codecs.image_problem`)."""
    if ext == "json":
        return None  # DALI reads it as bytes; LazyMeta reports a json that does not parse
    return image_problem(kind_of(ext), data, size)


def kind_of(ext: str) -> str:
    """The decoder a member needs: ``rgb.jpg`` or ``depth.png`` (the part after ``tNN.vNN.``)."""
    return ext.split(".", 2)[-1]


@dataclass(frozen=True)
class BadMember:
    """A member PIL could not decode: where it is (``line``: its sample's index line) and why."""

    shard: str
    line: int
    key: str
    ext: str
    reason: str

    def __str__(self) -> str:
        return f"shard {self.shard} key {self.key} member {self.ext}: {self.reason}"


@dataclass
class Quarantine:
    """Masked samples per shard, ``{shard: {line: {ext: reason}}}``, and their patched indexes."""

    info: DatasetInfo
    members: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    #: ``(shard, key)`` of every masked sample: what the loader looks rows up in.
    keys: set[tuple[str, str]] = field(default_factory=set)
    _dir: str | None = None
    _donors: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    _index: dict[str, list[list[tuple[str, int, int, str]]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, bad: list[BadMember]) -> None:
        """Mask the samples of ``bad`` and rewrite the patched indexes of their shards; a
        ``ValueError`` when a shard has no decodable member of a kind to stand in."""
        for b in bad:
            self.members.setdefault(b.shard, {}).setdefault(b.line, {})[b.ext] = b.reason
            self.keys.add((b.shard, b.key))
        for shard in sorted({b.shard for b in bad}):
            self._write(shard)

    def entries(self) -> list[list[str | int]]:
        """JSON-friendly ``[shard, line, ext, reason]`` rows (for the loader's saved state)."""
        return [
            [shard, line, ext, why]
            for shard, lines in sorted(self.members.items())
            for line, exts in sorted(lines.items())
            for ext, why in sorted(exts.items())
        ]

    def restore(self, rows: list[list[str | int]]) -> None:
        """Mask again the samples of :meth:`entries` rows."""
        bad = []
        for shard, line, ext, why in rows:
            name = self._samples(str(shard))[int(line)][0][3]
            bad.append(BadMember(str(shard), int(line), name.split(".", 1)[0], str(ext), str(why)))
        self.add(bad)

    def idx_path(self, shard: str) -> str:
        """The index DALI should read for ``shard``: patched when it has masked samples."""
        if self._dir is not None and shard in self.members:
            return os.path.join(self._dir, f"{shard}.idx")
        return self.info.idx_path(shard)

    def _samples(self, shard: str) -> list[list[tuple[str, int, int, str]]]:
        """The shard's own index, parsed once."""
        if shard not in self._index:
            path = self.info.idx_path(shard)
            with open(path, "rb") as f:
                self._index[shard] = read_index(f.read(), where=path)
        return self._index[shard]

    def _donor(self, shard: str, kind: str) -> tuple[int, int]:
        """``(offset, size)`` of the first member of ``kind`` in ``shard`` that DALI takes."""
        if (shard, kind) in self._donors:
            return self._donors[(shard, kind)]
        bad = self.members.get(shard, {})
        path = self.info.tar_path(shard)
        tar_size = os.path.getsize(path)
        with open(path, "rb") as tar:
            for line, comps in enumerate(self._samples(shard)):
                for ext, off, size, _ in comps:
                    if kind_of(ext) != kind or ext in bad.get(line, {}):
                        continue
                    if off < 512 or off + size > tar_size:
                        continue
                    tar.seek(off)
                    if member_problem(ext, tar.read(size), self.info.meta.image_size) is None:
                        self._donors[(shard, kind)] = (off, size)
                        return off, size
        raise ValueError(f"shard {shard}: no {kind} member is usable, nothing to stand in")

    def _write(self, shard: str) -> None:
        """(Re)write ``shard``'s patched index: masked members point at a donor of their kind."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="mvdata-quarantine-")
            # The patched indexes live as long as this object; nothing is written to the dataset.
            weakref.finalize(self, shutil.rmtree, self._dir, True)
        patched: list[list[IndexEntry]] = []
        for i, comps in enumerate(self._samples(shard)):
            bad = self.members[shard].get(i, {})
            entries: list[IndexEntry] = []
            for ext, off, size, name in comps:
                if ext in bad:
                    off, size = self._donor(shard, kind_of(ext))
                entries.append((ext, off, size, name))
            patched.append(entries)
        atomic_write(os.path.join(self._dir, f"{shard}.idx"), format_index(patched))
