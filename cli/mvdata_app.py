"""``mvdata``: build multiview training data from raw 3D/4D face datasets."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="mvdata",
    help="Turn raw 3D/4D face datasets into sharded multiview WebDataset tars, and inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each command group lives in its own module with a ``register(app)`` function, so that the
# groups stay independent; a module that has not landed yet is skipped.
_COMMAND_MODULES = (
    "data_synth",
    "data_sources",
    "data_build",
    "data_verify",
    "data_loader",
    "data_hub",
)

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
