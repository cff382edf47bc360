"""``mvdata verify DIR`` and ``mvdata info DIR``: check and summarise a built shard directory."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from cli.common import escape, run_or_fail


def register(app: typer.Typer) -> None:
    """Add the ``verify`` and ``info`` commands to ``app``."""

    @app.command("verify")
    def verify(
        out_dir: str = typer.Argument(..., help="Shard directory (local path or fsspec URL)."),
    ) -> None:
        """Re-read every shard and root file; exit 1 listing the bad shards."""
        from mvdata.shards.verify import verify_dataset

        report = run_or_fail(lambda: verify_dataset(out_dir))
        typer.echo(report.describe())
        if not report.ok:
            typer.secho(
                f"bad shards: {len(report.bad_shards)}"
                f"{' (' + ', '.join(report.bad_shards) + ')' if report.bad_shards else ''}; "
                f"root problems: {len(report.root_problems)}",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1)
        typer.secho("ok", fg=typer.colors.GREEN)

    @app.command("info")
    def info(
        out_dir: str = typer.Argument(..., help="Shard directory (local path or fsspec URL)."),
        contact_sheet: str | None = typer.Option(
            None, "--contact-sheet", help="Also write a PNG of a few samples here."
        ),
        num: int = typer.Option(4, "--num", "-n", min=1, help="Samples on the contact sheet."),
    ) -> None:
        """Summarise a shard directory (samples, failures per kind, subjects, folds, bytes)."""
        from mvdata.shards.info import dataset_info, write_contact_sheet

        summary = run_or_fail(lambda: dataset_info(out_dir))
        table = Table(title=f"mvdata info: {escape(out_dir)}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for name, value in summary.rows():
            table.add_row(escape(name), escape(value))
        Console(width=120).print(table)
        if contact_sheet:
            run_or_fail(lambda: write_contact_sheet(out_dir, contact_sheet, n=num))
            typer.echo(f"contact sheet: {contact_sheet}")
