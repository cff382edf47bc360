"""``mvmodel``: train MultiviewVLM, embed, and query (commands land with their issues)."""

from __future__ import annotations

import importlib

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


# Each command group lives in its own module with a ``register(app)`` function; a module that
# has not landed yet is skipped.
_COMMAND_MODULES = ("model_train", "model_store", "model_evaluate")

for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"cli.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"cli.{_name}":
            raise
        continue
    _mod.register(app)


if __name__ == "__main__":
    app()
