"""``mvdata publish DIR --repo OWNER/NAME`` and ``mvdata pull OWNER/NAME DIR``: a built dataset
on the Hugging Face Hub and back. The token comes from ``HF_TOKEN`` or ``hf auth login``; the
endpoint from ``HF_ENDPOINT``. Nothing here prints the token: library errors are redacted."""

from __future__ import annotations

import typer

from cli.common import fail, run_or_fail


def publish_cmd(
    out_dir: str = typer.Argument(..., help="A built, verified shard directory (local)."),
    repo: str = typer.Option(..., "--repo", help="Dataset repo on the Hub: OWNER/NAME."),
    public: bool = typer.Option(
        False,
        "--public",
        help="Make the repo public once the upload is complete (default: private).",
    ),
    revision: str = typer.Option(
        "main", "--revision", help="Branch to commit to (made if absent)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Write the card and the upload plan to DIR/.mvdata/hub; no network.",
    ),
    rights: bool = typer.Option(
        False,
        "--i-have-redistribution-rights",
        help="Allow a public upload of data derived from a licensed source or the Surrey Face Model.",
    ),
    max_commit_mb: float = typer.Option(
        1024.0, "--max-commit-mb", help="Largest commit in MB (a bigger shard goes alone)."
    ),
    max_commit_files: int = typer.Option(100, "--max-commit-files", help="Most files a commit."),
) -> None:
    """Verify DIR, render its card and upload it in commits of bounded size (resumable)."""
    from mvdata.hub.client import HubError
    from mvdata.hub.publish import publish

    try:
        report = run_or_fail(
            lambda: publish(
                out_dir,
                repo,
                public=public,
                revision=revision,
                dry_run=dry_run,
                redistribution_rights=rights,
                max_commit_bytes=max(1, int(max_commit_mb * 1024 * 1024)),
                max_commit_files=max_commit_files,
                log=typer.echo,
            )
        )
    except HubError as exc:
        fail(f"{exc}\nrun the same command again to resume: files already uploaded are skipped", 1)
    typer.echo(f"card: {report.card_path}")
    typer.echo(f"upload plan: {report.plan_path} ({report.num_commits} commits)")
    if report.dry_run:
        typer.echo("dry run: nothing was sent")
        return
    typer.echo(
        f"{report.repo_id}@{report.revision} ({'private' if report.private else 'public'}): "
        f"{report.commits_made} commits made, {report.commits_skipped} skipped; "
        f"{report.files_uploaded} files ({report.bytes_uploaded:,} bytes) uploaded, "
        f"{report.files_present} already there"
        + (f", {len(report.deleted)} stale files removed" if report.deleted else "")
    )
    if report.url:
        typer.echo(report.url)


def pull_cmd(
    repo: str = typer.Argument(..., help="Dataset repo on the Hub: OWNER/NAME."),
    out_dir: str = typer.Argument(..., help="New local folder for the dataset."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit (default: main)."),
) -> None:
    """Download a published dataset, verify it, and move it into place."""
    from mvdata.hub.client import HubError
    from mvdata.hub.pull import pull

    try:
        report = run_or_fail(lambda: pull(repo, out_dir, revision=revision))
    except HubError as exc:
        fail(f"{exc}\nrun the same command again to resume the download", 1)
    typer.echo(
        f"{report.repo_id}@{report.commit[:12]} -> {report.out_dir}: "
        f"{report.num_shards} shards, {report.num_samples} samples, verified"
    )


def register(app: typer.Typer) -> None:
    """Add the ``publish`` and ``pull`` commands to ``app``."""
    app.command("publish")(publish_cmd)
    app.command("pull")(pull_cmd)
