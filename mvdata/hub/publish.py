"""``mvdata publish DIR --repo OWNER/NAME``: a verified shard directory onto the Hugging Face Hub.

Order of work: verify the directory; apply the licence guard (no network yet); render the card
and the contact sheet and write them, with the upload plan, to ``DIR/.mvdata/hub/`` (all a dry
run does); then create the repo (private), list what it already holds, and make each planned
commit with only the files that are missing or differ there. An interrupted run, run again,
skips everything that arrived. A public publish flips the repo to public only after the last
commit, so a half-uploaded dataset is never public.

Licence guard: a dataset built from a licensed source, or from the Surrey Face Model, is not
``publishable`` (set at build time in ``dataset.json``); a public upload of it is refused unless
the user states they hold redistribution rights. Uploads are private by default.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mvdata.hub.card import CONTACT_SHEET, SOURCE_NAMES, hub_card
from mvdata.hub.client import hub_api, hub_call
from mvdata.hub.plan import (
    DEFAULT_MAX_COMMIT_BYTES,
    DEFAULT_MAX_COMMIT_FILES,
    RemoteFile,
    UploadFile,
    UploadPlan,
    missing,
    plan_upload,
    stale,
)
from mvdata.io import atomic_write, is_url
from mvdata.shards.info import write_contact_sheet
from mvdata.shards.verify import verify_dataset
from schemas.models import DatasetMetadata

if TYPE_CHECKING:
    from huggingface_hub import HfApi

#: Where publish writes the card, the contact sheet and the plan, inside the dataset's state dir.
WORK_DIR = ".mvdata/hub"
PLAN_FILE = "upload-plan.json"
REPO_TYPE = "dataset"


@dataclass
class PublishReport:
    """What :func:`publish` did (or, for a dry run, would do)."""

    repo_id: str
    revision: str
    private: bool
    dry_run: bool
    card_path: str
    plan_path: str
    num_commits: int
    url: str | None = None
    commits_made: int = 0
    commits_skipped: int = 0
    files_uploaded: int = 0
    bytes_uploaded: int = 0
    files_present: int = 0
    deleted: list[str] = field(default_factory=list)


def check_repo_id(repo_id: str) -> None:
    """``ValueError`` unless ``repo_id`` is ``OWNER/NAME`` with Hub-valid characters."""
    name = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
    if not re.fullmatch(f"{name}/{name}", repo_id) or ".." in repo_id:
        raise ValueError(
            f"--repo {repo_id!r}: expected OWNER/NAME (letters, digits, '-', '_', '.')"
        )


def licence_guard(meta: DatasetMetadata, *, public: bool, redistribution_rights: bool) -> None:
    """``PermissionError`` for a public upload of a dataset that is not publishable, unless the
    user holds the rights (``--i-have-redistribution-rights``)."""
    if not public or meta.publishable or redistribution_rights:
        return
    if meta.source == "synthetic":
        why = "was made with the Surrey Face Model, whose terms allow non-commercial use only"
    else:
        terms = textwrap.shorten(meta.licence, 110, placeholder=" ...")
        why = f"is derived from {SOURCE_NAMES.get(meta.dataset, meta.dataset)} ({terms})"
    raise PermissionError(
        f"dataset {meta.name!r} {why}: refusing a public upload. Publish it privately (the "
        "default), or pass --i-have-redistribution-rights if you hold the rights."
    )


def prepare(
    out_dir: str,
    repo_id: str,
    *,
    public: bool = False,
    revision: str = "main",
    redistribution_rights: bool = False,
    max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES,
    max_commit_files: int = DEFAULT_MAX_COMMIT_FILES,
) -> tuple[DatasetMetadata, UploadPlan, Path]:
    """Everything before the network: verify, guard, card + contact sheet + plan written to
    ``out_dir/.mvdata/hub/``. Returns the metadata, the plan and that folder."""
    check_repo_id(repo_id)
    if is_url(out_dir):
        raise ValueError(
            f"{out_dir}: publish reads a local shard directory (pull or copy it first)"
        )
    root = Path(out_dir)
    if not (root / "dataset.json").is_file():
        raise FileNotFoundError(f"{out_dir}: no dataset.json: not a finished mvdata build")
    report = verify_dataset(out_dir)
    if not report.ok:
        problems = [*report.root_problems, *report.bad_shards][:5]
        raise ValueError(
            f"{out_dir}: verify found problems ({'; '.join(map(str, problems))}): "
            "run `mvdata verify` and fix them before publishing"
        )
    meta = DatasetMetadata.model_validate_json((root / "dataset.json").read_bytes())
    licence_guard(meta, public=public, redistribution_rights=redistribution_rights)
    work = root / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    generated: dict[str, str | Path] = {}
    if meta.num_samples:
        # write_contact_sheet writes in place: render to a temp file, then publish atomically.
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            sheet = Path(tmp) / "contact_sheet.png"
            write_contact_sheet(out_dir, str(sheet), n=4)
            atomic_write(work / "contact_sheet.png", sheet.read_bytes())
        generated[CONTACT_SHEET] = work / "contact_sheet.png"
    card = hub_card(out_dir, meta, repo_id, revision=revision, contact_sheet=bool(generated))
    atomic_write(work / "README.md", card.encode())
    generated["README.md"] = work / "README.md"
    plan = plan_upload(
        out_dir,
        repo_id,
        revision=revision,
        private=not public,
        generated=generated,
        max_commit_bytes=max_commit_bytes,
        max_commit_files=max_commit_files,
    )
    atomic_write(work / PLAN_FILE, plan.to_json().encode())
    return meta, plan, work


def publish(
    out_dir: str,
    repo_id: str,
    *,
    public: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    redistribution_rights: bool = False,
    max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES,
    max_commit_files: int = DEFAULT_MAX_COMMIT_FILES,
    log: Callable[[str], None] | None = None,
) -> PublishReport:
    """Publish ``out_dir`` to the dataset repo ``repo_id`` (see the module docstring).

    Raises ``ValueError``/``FileNotFoundError`` for bad input, ``PermissionError`` when the
    licence guard or the repo's visibility forbids the upload (both before any upload), and
    :class:`~mvdata.hub.client.HubError` when the Hub fails (run again to resume).
    """
    say = log or (lambda _msg: None)
    rev = revision or "main"
    _, plan, work = prepare(
        out_dir,
        repo_id,
        public=public,
        revision=rev,
        redistribution_rights=redistribution_rights,
        max_commit_bytes=max_commit_bytes,
        max_commit_files=max_commit_files,
    )
    report = PublishReport(
        repo_id=repo_id,
        revision=rev,
        private=not public,
        dry_run=dry_run,
        card_path=str(work / "README.md"),
        plan_path=str(work / PLAN_FILE),
        num_commits=len(plan.commits),
    )
    if dry_run:
        return report
    api = hub_api()
    # Always created private: a public publish is flipped to public once complete.
    url = hub_call(
        f"creating dataset repo {repo_id}",
        api.create_repo,
        repo_id,
        repo_type=REPO_TYPE,
        private=True,
        exist_ok=True,
    )
    info = hub_call(f"reading dataset repo {repo_id}", api.dataset_info, repo_id)
    report.url = str(url)
    if not info.private and not public:
        raise PermissionError(
            f"dataset repo {repo_id} exists and is public, but publish defaults to private: "
            "pass --public to publish into it, or choose another repo"
        )
    if rev != "main":
        hub_call(
            f"creating branch {rev} of {repo_id}",
            api.create_branch,
            repo_id,
            branch=rev,
            repo_type=REPO_TYPE,
            exist_ok=True,
        )
    remote = _remote_files(api, repo_id, rev)
    deletions = stale(plan, remote)
    for i, commit in enumerate(plan.commits, 1):
        todo = missing(commit, remote)
        last = i == len(plan.commits)
        report.files_present += len(commit.files) - len(todo)
        if not todo and not (last and deletions):
            report.commits_skipped += 1
            say(f"commit {i}/{len(plan.commits)}: all {len(commit.files)} files already there")
            continue
        _commit(api, plan, commit.message, todo, deletions if last else [])
        report.commits_made += 1
        report.files_uploaded += len(todo)
        report.bytes_uploaded += sum(f.size for f in todo)
        if last:
            report.deleted = deletions
        say(
            f"commit {i}/{len(plan.commits)}: {len(todo)} files, "
            f"{sum(f.size for f in todo):,} bytes"
            + (f", {len(deletions)} stale removed" if last and deletions else "")
        )
    if public and info.private:
        hub_call(
            f"making {repo_id} public",
            api.update_repo_settings,
            repo_id,
            repo_type=REPO_TYPE,
            private=False,
        )
        say(f"{repo_id} is now public")
    return report


def _remote_files(api: HfApi, repo_id: str, revision: str) -> dict[str, RemoteFile]:
    """The repo's files at ``revision`` (none for a repo without that revision yet)."""
    from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    def listing() -> list[RepoFile]:
        try:
            tree = api.list_repo_tree(
                repo_id, recursive=True, revision=revision, repo_type=REPO_TYPE
            )
            return [e for e in tree if isinstance(e, RepoFile)]
        except (RevisionNotFoundError, RemoteEntryNotFoundError):
            return []

    files = hub_call(f"listing the files of {repo_id}@{revision}", listing)
    return {
        f.path: RemoteFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
        for f in files
    }


def _commit(
    api: HfApi, plan: UploadPlan, message: str, files: list[UploadFile], deletions: list[str]
) -> None:
    """One commit of ``files`` (read from disk) and ``deletions`` to the plan's repo."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.local_path) for f in files
    ]
    ops += [CommitOperationDelete(path_in_repo=p) for p in deletions]
    hub_call(
        f"commit {message!r} to {plan.repo_id}",
        api.create_commit,
        plan.repo_id,
        ops,
        commit_message=message,
        repo_type=REPO_TYPE,
        revision=plan.revision,
    )
