"""Read a shard directory: committed shards, their stats, parquet rows and samples.

A shard is committed exactly when its ``stats.json`` exists and parses (the writer writes it
last, by temp file + rename). Everything here only reads; ``out_dir`` is a local path or an
fsspec URL.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from pydantic import ValidationError

from mvdata.shards.names import _SHARD_RE, DATA_DIR, shard_paths
from schemas.models import ShardRow, ShardStats, SizesJson
from schemas.tables import check_frame


def filesystem(out_dir: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``out_dir`` and its root path (no trailing slash)."""
    fs, root = url_to_fs(out_dir)
    return fs, root.rstrip("/")


def file_type_problem(fs: fsspec.AbstractFileSystem, path: str) -> str | None:
    """``None`` when ``path`` is a regular file, else what it is instead (``FileNotFoundError``
    when absent). Checked before a shard file is opened: opening a FIFO left where a tar should
    be blocks forever, and a device reads without end."""
    kind = fs.info(path).get("type")
    if kind == "file":
        return None
    what = (
        "a directory" if kind == "directory" else "not a regular file (a FIFO, device or socket?)"
    )
    return f"{path}: {what}"


def open_regular(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """``fs.open(path, "rb")`` after :func:`file_type_problem`: a ``ValueError`` naming the
    file when it is not a regular file."""
    problem = file_type_problem(fs, path)
    if problem:
        raise ValueError(problem)
    return fs.open(path, "rb")


class EndGuard(io.RawIOBase):
    """A read-only stream for ``tarfile``'s stream mode that raises ``tarfile.ReadError`` (naming
    ``where``) once it is read again after its end.

    Stream mode skips a member it does not extract by reading its declared size in 10 KiB
    blocks and takes an empty read as a short one: a header declaring 10**12 bytes would keep it
    reading nothing for hours. A second read at the end is never needed by a whole tar."""

    def __init__(self, stream: Any, where: str) -> None:
        super().__init__()
        self._stream, self._where, self._ended = stream, where, False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._stream.read(-1 if size is None else size)
        if not data and size != 0:
            if self._ended:
                raise tarfile.ReadError(f"{self._where}: unexpected end of file")
            self._ended = True
        return data

    def close(self) -> None:
        self._stream.close()
        super().close()


def _pydantic_reason(exc: ValidationError) -> str:
    """The first of a pydantic error's problems, in one line."""
    first = exc.errors()[0]
    loc = ".".join(str(x) for x in first["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc + ': ' if loc else ''}{first['msg']}{more}"


# --------------------------------------------------------------------------- readers
def is_committed(out_dir: str, shard_name: str) -> bool:
    """True when the shard's ``stats.json`` exists and parses as :class:`ShardStats`."""
    try:
        read_stats(out_dir, shard_name)
    except (FileNotFoundError, ValueError):
        return False
    return True


def read_stats(out_dir: str, shard_name: str) -> ShardStats:
    """The shard's stats (``FileNotFoundError`` when absent, ``ValueError`` naming the file
    when it is not a regular file or not a valid ``ShardStats``)."""
    fs, root = filesystem(out_dir)
    path = shard_paths(root, shard_name)["stats"]
    with open_regular(fs, path) as f:
        data = f.read()
    try:
        return ShardStats.model_validate_json(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: not a valid stats.json: {_pydantic_reason(exc)}") from None


def list_shards(out_dir: str, *, committed_only: bool = True) -> list[str]:
    """Sorted shard names under ``out_dir/data``: committed ones, or any with a tar or stats."""
    fs, root = filesystem(out_dir)
    data = f"{root}/{DATA_DIR}"
    if not fs.exists(data):
        return []
    names: set[str] = set()
    for path in fs.ls(data, detail=False):
        base = str(path).rsplit("/", 1)[-1]
        for suffix in (".stats.json", ".tar") if not committed_only else (".stats.json",):
            stem = base.removesuffix(suffix)
            if stem != base and _SHARD_RE.match(stem):
                names.add(stem)
    return sorted(names)


def sizes_json(out_dir: str) -> SizesJson:
    """``sizes.json`` content: written samples per committed shard, keyed ``data/{shard}.tar``."""
    return SizesJson(
        shards={
            f"{DATA_DIR}/{name}.tar": read_stats(out_dir, name).num_written
            for name in list_shards(out_dir)
        }
    )


def read_shard_rows(out_dir: str, shard_name: str) -> list[ShardRow]:
    """The shard's parquet rows, checked against :class:`ShardRow` (a ``ValueError`` naming the
    file when it does not read or does not match)."""
    import polars as pl

    fs, root = filesystem(out_dir)
    path = shard_paths(root, shard_name)["parquet"]
    try:
        with open_regular(fs, path) as f:
            frame = pl.read_parquet(f)
        check_frame(ShardRow, frame, where=path)
        return [ShardRow.model_validate(r) for r in frame.to_dicts()]
    except ValidationError as exc:
        raise ValueError(f"{path}: rows do not match ShardRow: {_pydantic_reason(exc)}") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path}: not a readable parquet file ({exc})") from None


def iter_samples(out_dir: str, shard_name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Read up to ``limit`` samples of a shard: ``{"__key__": key, ext: bytes, ...}``."""
    fs, root = filesystem(out_dir)
    path = shard_paths(root, shard_name)["tar"]
    out: list[dict[str, Any]] = []
    try:
        with (
            open_regular(fs, path) as f,
            tarfile.open(fileobj=EndGuard(f, path), mode="r|") as tar,
        ):
            for info in tar:
                key, _, ext = info.name.partition(".")
                if not out or out[-1]["__key__"] != key:
                    if limit is not None and len(out) >= limit:
                        break
                    out.append({"__key__": key})
                fobj = tar.extractfile(info)
                if fobj is None:
                    raise ValueError(f"{path}: member {info.name} is not a regular file")
                out[-1][ext] = fobj.read()
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: not a readable tar ({exc})") from None
    return out
