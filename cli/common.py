"""Shared CLI helpers: one clear message and a non-zero exit for bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_error(exc: ValidationError) -> str:
    """A settings model's validation errors as one line: ``field: message; ...`` (the field is
    left out where the model as a whole checked several)."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def run_or_fail(fn: Callable[[], T]) -> T:
    """Call ``fn``; turn the library's input errors into one message and exit code 2."""
    try:
        return fn()
    except ValidationError as exc:
        fail(settings_error(exc))
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(str(msg))
