"""Shard writer: deterministic USTAR tars + DALI index + per-shard parquet + stats commit marker.

Layout of one shard under ``OUT/data/`` (``OUT`` is a local path or an fsspec URL)::

    {split}-{NNNNNN}.tar         USTAR, members of a sample in sorted order, constant metadata
    {split}-{NNNNNN}.idx         DALI webdataset index v1.2, built from the writer's own offsets
    {split}-{NNNNNN}.parquet     one :class:`schemas.models.ShardRow` per planned sample
    {split}-{NNNNNN}.stats.json  :class:`schemas.models.ShardStats`, written last = commit marker

Everything is first written under hidden temp names (``.{name}.{token}.tmp``), so a killed writer
never leaves a file with a final name; :meth:`ShardWriter.commit` moves the tar, index and parquet
into place and writes ``stats.json`` last by temp file + rename. A shard is done exactly when
:func:`mvdata.shards.reader.is_committed` says so.

The DALI index (:mod:`mvdata.shards.index`) is built from the writer's own offsets while the
tar is written, which avoids a second pass over the tar.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from mvdata.shards.index import IndexEntry, format_index
from mvdata.shards.names import DATA_DIR, check_key, parse_shard_name, shard_paths
from mvdata.shards.reader import filesystem
from schemas.models import SampleJson, ShardRow, ShardStats
from schemas.tables import check_frame, frame_from_rows

_BLOCK = tarfile.BLOCKSIZE

# A USTAR ``name`` field holds 100 bytes; longer names would go into the ``prefix`` field,
# which some readers mishandle, so member names are kept within the plain field.
_MAX_MEMBER_NAME = 100


# --------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class SampleMeta:
    """The per-sample columns of :class:`ShardRow` that come from the plan, not from the tar."""

    subject: str
    sequence: str
    fold: int
    expression: str | None
    intensity: int | None
    num_frames: int

    @classmethod
    def from_sample_json(cls, sample: SampleJson) -> SampleMeta:
        """Take the columns from a sample's ``json`` member."""
        return cls(
            subject=sample.subject,
            sequence=sample.sequence,
            fold=sample.fold,
            expression=sample.labels.expression,
            intensity=sample.labels.intensity,
            num_frames=len(sample.frames),
        )


class _HashingWriter:
    """File wrapper that hashes and counts what ``tarfile`` writes (no second read of the tar)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.pos = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.sha256.update(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


class ShardWriter:
    """Write one shard; use as a context manager (an exception inside aborts the shard).

    Samples are written in the order they are added (the plan's shuffled order); the members of a
    sample in sorted order. Every member header has ``mtime``, uid/gid 0, empty user/group names
    and mode 0o644, so the same samples give a byte-identical tar and index.

    ``member_names`` (the extension list of :func:`member_names`), when given, is enforced for
    every sample; otherwise the first sample fixes the set. ``overwrite=False`` refuses a shard
    that is already committed; ``overwrite=True`` un-commits it (removes ``stats.json``) first.
    """

    def __init__(
        self,
        out_dir: str,
        shard_name: str,
        *,
        mtime: int = 0,
        member_names: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        parse_shard_name(shard_name)
        self.out_dir = out_dir
        self.shard_name = shard_name
        self.mtime = int(mtime)
        self._members = sorted(member_names) if member_names is not None else None
        self._fs, root = filesystem(out_dir)
        self._final = shard_paths(root, shard_name)
        if self._fs.exists(self._final["stats"]):
            if not overwrite:
                raise FileExistsError(f"shard {shard_name} is already committed in {out_dir}")
            self._fs.rm(self._final["stats"])
        self._fs.makedirs(f"{root}/{DATA_DIR}", exist_ok=True)
        token = uuid.uuid4().hex[:12]
        self._tmp = {
            kind: f"{root}/{DATA_DIR}/.{path.rsplit('/', 1)[1]}.{token}.tmp"
            for kind, path in self._final.items()
        }
        self._file: IO[bytes] | None = self._fs.open(self._tmp["tar"], "wb")
        self._hw = _HashingWriter(self._file)
        # The writer is closed in commit()/abort(), not by a with-block: it outlives __init__.
        # fileobj only needs write()/tell(); mypy's stub wants a full IO object.
        self._tar: tarfile.TarFile | None = tarfile.TarFile(
            fileobj=self._hw,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.USTAR_FORMAT,
        )
        self._rows: list[ShardRow] = []
        self._keys: set[str] = set()
        self._index: list[list[IndexEntry]] = []
        self._write_seconds = 0.0
        self._done = False

    # -- context manager
    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    # -- adding samples
    def _new_key(self, key: str) -> None:
        if self._done:
            raise RuntimeError(f"shard {self.shard_name} is already committed or aborted")
        check_key(key)
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {self.shard_name}")

    def add_sample(
        self, key: str, members: Mapping[str, bytes], meta: SampleMeta | None = None
    ) -> None:
        """Write one sample: ``members`` maps extension (e.g. ``t00.v01.rgb.jpg``) to bytes.

        The ``json`` member is validated against :class:`SampleJson` and must carry ``key``;
        ``meta`` defaults to the columns taken from it.
        """
        self._new_key(key)
        assert self._tar is not None
        exts = sorted(members)
        if self._members is None:
            self._members = exts
        elif exts != self._members:
            missing = sorted(set(self._members) - set(exts))
            extra = sorted(set(exts) - set(self._members))
            raise ValueError(
                f"sample {key!r}: member set differs: missing {missing}, extra {extra}"
            )
        if "json" not in members:
            raise ValueError(f"sample {key!r} has no json member")
        sample = SampleJson.model_validate_json(members["json"])
        if sample.key != key:
            raise ValueError(f"sample {key!r}: json member carries key {sample.key!r}")
        for ext in exts:
            if len(f"{key}.{ext}") > _MAX_MEMBER_NAME:
                raise ValueError(f"member name {key}.{ext} longer than {_MAX_MEMBER_NAME} bytes")
        t0 = time.perf_counter()
        start = self._tar.offset
        parts: list[IndexEntry] = []
        for ext in exts:
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = self.mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            header_offset = self._tar.offset
            self._tar.addfile(info, io.BytesIO(data))
            # One 512-byte header (names fit the USTAR name field), then the data.
            parts.append((ext, header_offset + _BLOCK, len(data), f"{key}.{ext}"))
        self._index.append(parts)
        self._keys.add(key)
        m = meta or SampleMeta.from_sample_json(sample)
        self._rows.append(
            ShardRow(
                key=key,
                shard_name=self.shard_name,
                status="ok",
                error_kind=None,
                error_message=None,
                subject=m.subject,
                sequence=m.sequence,
                fold=m.fold,
                expression=m.expression,
                intensity=m.intensity,
                num_frames=m.num_frames,
                offset=start,
                num_bytes=self._tar.offset - start,
            )
        )
        self._write_seconds += time.perf_counter() - t0

    def add_failed(self, key: str, error_kind: str, error_message: str, meta: SampleMeta) -> None:
        """Record a planned sample that could not be made (no tar members, a parquet row)."""
        self._new_key(key)
        self._keys.add(key)
        self._rows.append(
            ShardRow(
                key=key,
                shard_name=self.shard_name,
                status="failed",
                error_kind=error_kind,
                error_message=error_message,
                subject=meta.subject,
                sequence=meta.sequence,
                fold=meta.fold,
                expression=meta.expression,
                intensity=meta.intensity,
                num_frames=meta.num_frames,
                offset=None,
                num_bytes=None,
            )
        )

    # -- finishing
    def _write_bytes(self, path: str, data: bytes) -> None:
        with self._fs.open(path, "wb") as f:
            f.write(data)

    def commit(self, seconds: Mapping[str, float] | None = None) -> ShardStats:
        """Finish the shard: close the tar, move tar/idx/parquet into place, write stats last.

        ``seconds`` (time per stage, e.g. read/render/encode) goes into the stats; the writer
        adds its own ``write`` time unless given. A shard with no written sample still commits
        (its tar is an empty archive and its index lists 0 samples) so a resumed build skips it;
        DALI's reader refuses such an index, so loaders must leave out shards whose
        ``sizes.json`` count is 0.
        """
        if self._done:
            raise RuntimeError(f"shard {self.shard_name} is already committed or aborted")
        assert self._tar is not None and self._file is not None
        t0 = time.perf_counter()
        # close() writes two zero blocks and pads to tarfile's 10240-byte record.
        self._tar.close()
        self._file.close()
        self._tar = self._file = None
        tar_bytes = self._hw.pos
        tar_sha = self._hw.sha256.hexdigest()

        index_bytes = format_index(self._index)
        self._write_bytes(self._tmp["idx"], index_bytes)

        frame = frame_from_rows(ShardRow, self._rows)
        check_frame(ShardRow, frame, where=f"{self.shard_name}.parquet")
        buf = io.BytesIO()
        frame.write_parquet(buf, statistics=False)
        parquet_bytes = buf.getvalue()
        self._write_bytes(self._tmp["parquet"], parquet_bytes)

        errors = Counter(r.error_kind for r in self._rows if r.status == "failed")
        secs = {k: float(v) for k, v in (seconds or {}).items()}
        secs.setdefault("write", self._write_seconds + time.perf_counter() - t0)
        stats = ShardStats(
            shard_name=self.shard_name,
            num_planned=len(self._rows),
            num_written=sum(r.status == "ok" for r in self._rows),
            num_failed=sum(r.status == "failed" for r in self._rows),
            errors={str(k): v for k, v in sorted(errors.items())},
            tar_bytes=tar_bytes,
            tar_sha256=tar_sha,
            index_sha256=hashlib.sha256(index_bytes).hexdigest(),
            parquet_sha256=hashlib.sha256(parquet_bytes).hexdigest(),
            seconds=secs,
        )
        # Every byte is written (under temp names) before any final name appears, so a full
        # disk fails here and abort() leaves nothing behind; the renames that follow need no
        # space. Should one fail anyway, the final names already made are removed again.
        self._write_bytes(self._tmp["stats"], stats.model_dump_json(indent=2).encode())
        moved: list[str] = []
        try:
            for kind in ("tar", "idx", "parquet", "stats"):  # stats last: the commit marker
                self._fs.mv(self._tmp[kind], self._final[kind])
                moved.append(kind)
        except BaseException:
            for kind in moved:
                with contextlib.suppress(OSError):
                    self._fs.rm(self._final[kind])
            raise
        self._done = True
        return stats

    def abort(self) -> None:
        """Drop the shard: close and remove every temp file (final names are never touched)."""
        if self._done:
            return
        self._done = True
        if self._file is not None:
            self._file.close()
        self._tar = self._file = None
        for path in self._tmp.values():
            if self._fs.exists(path):
                self._fs.rm(path)


def clean_temp_files(out_dir: str, shard_names: Sequence[str] | None = None) -> list[str]:
    """Remove temp files left by killed writers: of ``shard_names`` only when given (other
    workers of a multi-machine build may be writing theirs), else all (call only when no writer
    is running)."""
    fs, root = filesystem(out_dir)
    prefixes = None if shard_names is None else tuple(f".{n}." for n in shard_names)
    data = f"{root}/{DATA_DIR}"
    if not fs.exists(data):
        return []
    removed = []
    for path in fs.ls(data, detail=False):
        base = str(path).rsplit("/", 1)[-1]
        if (
            base.startswith(".")
            and base.endswith(".tmp")
            and (prefixes is None or base.startswith(prefixes))
        ):
            fs.rm(path)
            removed.append(str(path))
    return removed
