"""Shared CLI helpers: one clear message and a non-zero exit for bad input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.markup import escape

T = TypeVar("T")

__all__ = ["escape", "fail", "run_or_fail", "settings_error"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_error(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """A settings model's validation errors as one line: ``field: message; ...`` (the field is
    left out where the model as a whole checked several). ``options`` maps a field to the CLI
    option that sets it (``{"num_folds": "--folds"}``), so the message names what the user typed;
    other fields are shown as their option spelling (``image_size`` -> ``--image-size``)."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err["loc"])
        if options is not None and loc:
            head = str(err["loc"][0])
            loc = options.get(head, "--" + head.replace("_", "-"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _os_error(exc: OSError) -> str:
    """``path: reason`` for an ``OSError`` that names a file, else its text."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def run_or_fail(fn: Callable[[], T], options: Mapping[str, str] | None = None) -> T:
    """Call ``fn``; turn the library's input errors into one message and exit code 2.

    Input errors: a settings model that does not validate (``options`` as in
    :func:`settings_error`), ``ValueError``/``KeyError`` (bad values, files that are not what they
    should be) and ``OSError`` (a missing, unreadable, read-only or full place: the library's
    ``OSError`` names its file)."""
    try:
        return fn()
    except ValidationError as exc:
        fail(settings_error(exc, options))
    except (ValueError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(str(msg))
    except OSError as exc:
        fail(_os_error(exc))
