"""``mvmodel``: train MultiviewVLM, embed, and query (commands land with their issues)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mvmodel",
    help="Train MultiviewVLM on mvdata shards, write embeddings to LanceDB, query them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as _v

    typer.echo(_v("multiviewvlm"))


if __name__ == "__main__":
    app()
