"""The upload plan of ``mvdata publish``: which files go to which path of the repo, their sizes
and hashes, cut into commits of bounded size, and which of them the repo already holds.

Layout in the repo = layout on disk, which ``datasets`` auto-detects and the card's ``configs``
name explicitly: ``data/{split}-{NNNNNN}.{tar,idx,parquet,stats.json}``, the root files, the
card ``README.md`` and ``assets/contact_sheet.png``. A shard's four files always travel in one
commit; the root files and the card go last, in a commit of their own, so that a repo whose
``README.md`` and ``dataset.json`` have arrived is complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mvdata.shards.names import DATA_DIR, shard_paths
from mvdata.shards.reader import list_shards

#: Default bounds of one commit. The Hub advises commits of at most a few GB and ~100 files.
DEFAULT_MAX_COMMIT_BYTES = 1 << 30
DEFAULT_MAX_COMMIT_FILES = 100

#: Root files of a shard directory that are published as they are (the card is rendered anew).
ROOT_FILES = ("manifest.parquet", "sizes.json", "dataset.json")
_SHARD_KINDS = ("tar", "idx", "parquet", "stats")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class UploadFile:
    """One file to upload: where it goes, where it is read from, and what identifies it."""

    path_in_repo: str
    local_path: str
    size: int
    sha256: str
    git_sha1: str = field(repr=False)

    def matches(self, remote: RemoteFile | None) -> bool:
        """True when ``remote`` already holds these bytes: same size and, for an LFS file, the
        same sha256 (the Hub reports it); for a file stored in git, the same git blob id."""
        if remote is None or remote.size != self.size:
            return False
        if remote.lfs_sha256 is not None:
            return remote.lfs_sha256 == self.sha256
        return remote.blob_id == self.git_sha1


@dataclass(frozen=True)
class RemoteFile:
    """What the repo's tree listing says of one file."""

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None


@dataclass
class UploadCommit:
    """One commit of the plan."""

    message: str
    files: list[UploadFile]

    @property
    def num_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class UploadPlan:
    """Every commit of a publish run, in order; written as JSON by :meth:`to_json`."""

    repo_id: str
    revision: str
    private: bool
    out_dir: str
    max_commit_bytes: int
    max_commit_files: int
    commits: list[UploadCommit]

    @property
    def files(self) -> list[UploadFile]:
        return [f for c in self.commits for f in c.files]

    def to_json(self) -> str:
        """The plan as sorted, indented JSON (no credentials: there are none in a plan)."""
        doc: dict[str, Any] = {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "private": self.private,
            "out_dir": self.out_dir,
            "max_commit_bytes": self.max_commit_bytes,
            "max_commit_files": self.max_commit_files,
            "num_files": len(self.files),
            "num_bytes": sum(f.size for f in self.files),
            "commits": [
                {
                    "message": c.message,
                    "num_bytes": c.num_bytes,
                    "files": [
                        {k: v for k, v in asdict(f).items() if k != "git_sha1"} for f in c.files
                    ],
                }
                for c in self.commits
            ],
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def hash_file(path: str | Path, path_in_repo: str) -> UploadFile:
    """Size, sha256 and git blob id of ``path``, read once."""
    p = Path(path)
    size = p.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size)
    with p.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return UploadFile(path_in_repo, str(p), size, sha256.hexdigest(), git.hexdigest())


def _groups(
    out_dir: str, generated: Mapping[str, str | Path]
) -> list[tuple[str, list[UploadFile]]]:
    """The upload units in order: one per shard (its four files), then the root files + the
    generated ones (``path_in_repo -> local file``)."""
    root = Path(out_dir)
    units: list[tuple[str, list[UploadFile]]] = []
    for name in list_shards(out_dir):
        paths = shard_paths(out_dir, name)
        units.append(
            (
                name,
                [hash_file(paths[k], f"{DATA_DIR}/{Path(paths[k]).name}") for k in _SHARD_KINDS],
            )
        )
    root_files = [hash_file(root / n, n) for n in ROOT_FILES]
    root_files += [hash_file(local, p) for p, local in sorted(generated.items())]
    units.append(("root", root_files))
    return units


def plan_upload(
    out_dir: str,
    repo_id: str,
    *,
    revision: str = "main",
    private: bool = True,
    generated: Mapping[str, str | Path] | None = None,
    max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES,
    max_commit_files: int = DEFAULT_MAX_COMMIT_FILES,
) -> UploadPlan:
    """The commits that publish ``out_dir``: shards packed greedily in order while a commit
    stays within ``max_commit_bytes`` and ``max_commit_files`` (a shard larger than that goes
    alone), then one commit of the root files and the ``generated`` files (the card)."""
    if max_commit_bytes < 1 or max_commit_files < 4:
        raise ValueError("a commit must allow at least 1 byte and 4 files (one shard)")
    units = _groups(out_dir, generated or {})
    shards, (_, root_files) = units[:-1], units[-1]
    commits: list[UploadCommit] = []
    batch: list[tuple[str, list[UploadFile]]] = []

    def flush() -> None:
        if batch:
            first, last = batch[0][0], batch[-1][0]
            span = first if first == last else f"{first} .. {last}"
            commits.append(UploadCommit(f"mvdata publish: shards {span}", _flat(batch)))
            batch.clear()

    for unit in shards:
        files = _flat([*batch, unit])
        if batch and (
            len(files) > max_commit_files or sum(f.size for f in files) > max_commit_bytes
        ):
            flush()
        batch.append(unit)
    flush()
    commits.append(UploadCommit("mvdata publish: root files and dataset card", root_files))
    total = len(commits)
    for i, c in enumerate(commits, 1):
        c.message = f"{c.message} ({i}/{total})"
    return UploadPlan(
        repo_id=repo_id,
        revision=revision,
        private=private,
        out_dir=str(Path(out_dir).resolve()),
        max_commit_bytes=max_commit_bytes,
        max_commit_files=max_commit_files,
        commits=commits,
    )


def _flat(units: Iterable[tuple[str, list[UploadFile]]]) -> list[UploadFile]:
    return [f for _, files in units for f in files]


def missing(commit: UploadCommit, remote: Mapping[str, RemoteFile]) -> list[UploadFile]:
    """The files of ``commit`` the repo does not hold yet (absent, or with other bytes)."""
    return [f for f in commit.files if not f.matches(remote.get(f.path_in_repo))]


def stale(plan: UploadPlan, remote: Mapping[str, RemoteFile]) -> list[str]:
    """Remote files under ``data/`` that the plan does not have (a shard of an earlier, larger
    build): ``data/*.tar`` is the dataset's ``data_files`` pattern, so they must go."""
    planned = {f.path_in_repo for f in plan.files}
    return sorted(p for p in remote if p.startswith(f"{DATA_DIR}/") and p not in planned)
