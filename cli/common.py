"""Shared CLI helpers: one clear message and a non-zero exit for bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def run_or_fail(fn: Callable[[], T]) -> T:
    """Call ``fn``; turn the library's input errors into one message and exit code 2."""
    try:
        return fn()
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(str(msg))
