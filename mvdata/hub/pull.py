"""``mvdata pull OWNER/NAME DIR``: a published dataset back to a local, verified shard directory.

The repo's revision is resolved to one commit first (every file comes from the same commit),
downloaded with ``huggingface_hub.snapshot_download`` into ``.{DIR name}.pull`` next to ``DIR``,
checked with :func:`mvdata.shards.verify.verify_dataset`, and renamed to ``DIR`` only then:
``DIR`` is either absent or complete. An interrupted pull, run again, reuses the files already
in the temporary folder (``snapshot_download`` keeps their metadata there). The loaders can
also stream a published dataset without a pull: ``make_loader("hf://datasets/OWNER/NAME")``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mvdata.hub.client import hub_api, hub_call
from mvdata.hub.publish import REPO_TYPE, check_repo_id
from mvdata.shards.verify import verify_dataset

#: What ``snapshot_download`` keeps inside a local_dir for resuming; not part of the dataset.
_HF_META = (".cache", "huggingface")


@dataclass
class PullReport:
    """What :func:`pull` brought back."""

    repo_id: str
    commit: str
    out_dir: str
    num_shards: int
    num_samples: int


def pull(
    repo_id: str, out_dir: str | os.PathLike[str], *, revision: str | None = None
) -> PullReport:
    """Download ``repo_id`` (at ``revision``, default main) into ``out_dir``, verified.

    Raises ``FileExistsError`` when ``out_dir`` exists and is not empty, ``ValueError`` when the
    download does not verify (it stays in the temporary folder, named in the message), and
    :class:`~mvdata.hub.client.HubError` when the Hub fails (run again to resume).
    """
    check_repo_id(repo_id)
    dest = Path(out_dir).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not empty: pull into a new folder")
    tmp = dest.parent / f".{dest.name}.pull"
    tmp.mkdir(parents=True, exist_ok=True)
    api = hub_api()
    info = hub_call(f"reading dataset repo {repo_id}", api.dataset_info, repo_id, revision=revision)
    if not info.sha:
        raise ValueError(
            f"{repo_id}: the Hub did not name the commit of revision {revision or 'main'}"
        )
    from huggingface_hub import snapshot_download

    hub_call(
        f"downloading {repo_id}@{info.sha[:12]}",
        snapshot_download,
        repo_id,
        repo_type=REPO_TYPE,
        revision=info.sha,
        local_dir=tmp,
    )
    _remove_strays(tmp, {s.rfilename for s in info.siblings or []})
    report = verify_dataset(str(tmp))
    if not report.ok:
        raise ValueError(
            f"{repo_id}: the downloaded copy in {tmp} does not verify (pull again once the repo "
            f"is repaired; delete {tmp} to download every file anew):\n{report.describe()}"
        )
    meta_dir = tmp.joinpath(*_HF_META)
    if meta_dir.is_dir():
        shutil.rmtree(meta_dir)
        if not any(meta_dir.parent.iterdir()):
            meta_dir.parent.rmdir()
    if dest.exists():
        dest.rmdir()  # empty, checked above
    os.replace(tmp, dest)
    return PullReport(repo_id, info.sha, str(dest), report.num_shards, report.num_samples)


def _remove_strays(folder: Path, keep: set[str]) -> None:
    """Delete files in ``folder`` that the pulled commit does not have: left by an earlier,
    interrupted pull of another revision into the same temporary folder."""
    if not keep:
        return
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.split("/")[: len(_HF_META)] == list(_HF_META):
            continue
        if path.is_file() and rel not in keep:
            path.unlink()
