"""One way to write a file so that nothing half-written ever looks finished: write a temporary
sibling, then rename it over the final name. Local paths and fsspec URLs alike.

Every writer of the project that produces a whole file at once goes through :func:`atomic_write`
(streamed shard files have their own temp names, see :mod:`mvdata.shards.writer`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs

__all__ = ["atomic_write", "atomic_write_json", "is_url"]

# mkstemp makes owner-only files; a finished file gets the mode a plain open() would give it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def is_url(target: str | os.PathLike[str]) -> bool:
    """True when ``target`` names an fsspec URL (``s3://...``, ``memory://...``, ``file://...``)."""
    return "://" in os.fspath(target)


def atomic_write(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` through a temp file in the same folder and a rename.

    Local paths: a ``mkstemp`` sibling (``.{name}.XXXX.tmp``) and ``os.replace``, parents created;
    a failure removes the temp file. fsspec URLs: ``{target}.{pid}.tmp`` then ``fs.mv``, which is
    atomic where the store's rename is (a local or POSIX-like filesystem) and as close as the
    store allows elsewhere (object stores have no rename; the temp object is never read).
    """
    if is_url(target):
        fs, path = url_to_fs(os.fspath(target))
        tmp = f"{path}.{os.getpid()}.tmp"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), _FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_json(target: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> None:
    """:func:`atomic_write` of ``obj`` as sorted, indented JSON with a final newline."""
    atomic_write(target, (json.dumps(obj, indent=indent, sort_keys=True) + "\n").encode())
