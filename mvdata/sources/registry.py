"""The registry of dataset readers: one module a dataset.

Each module defines one object satisfying :class:`Source` and registers it with
:func:`register` at import time. Adding a dataset means adding one module and its name to
``_MODULES`` below; nothing else in the project changes.

A source has two jobs:

* ``scan(root)`` walks a dataset root in its native layout and returns a :class:`ScanResult`:
  the items it found (cheap: names and paths only) and the files it could not use, each with a
  reason. A bad file never stops a scan.
* ``load_frame(item, t)`` parses frame ``t`` of an item into a :class:`~mvdata.core.Mesh`,
  raising :class:`~mvdata.core.MeshReadError` (naming the file and the problem) when it cannot.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from mvdata.core import Item, Mesh, ReadError

__all__ = [
    "ScanResult",
    "Source",
    "get_source",
    "list_sources",
    "load_frame",
    "register",
    "safe_join",
]


@dataclass
class ScanResult:
    """What a scan found: items in a deterministic order, and the files it skipped."""

    items: list[Item] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)


@runtime_checkable
class Source(Protocol):
    """A dataset reader. ``licence`` says under what terms the dataset may be used/published."""

    name: str
    description: str
    licence: str

    def scan(self, root: Path) -> ScanResult: ...

    def load_frame(self, item: Item, t: int) -> Mesh: ...


_REGISTRY: dict[str, Source] = {}
# Module names under mvdata.sources, imported lazily on first lookup.
_MODULES = ("synthetic", "bu3dfe", "bu4dfe", "bosphorus", "bp4d", "coma", "facescape", "meshdir")


def register(source: Source) -> Source:
    """Add a source to the registry (called by each source module at import time)."""
    _REGISTRY[source.name] = source
    return source


def _load_all() -> None:
    for mod in _MODULES:
        if mod not in _REGISTRY:
            try:
                importlib.import_module(f"mvdata.sources.{mod}")
            except ModuleNotFoundError as exc:
                # A reader that has not landed yet is simply absent; any other import error is a bug.
                if exc.name != f"mvdata.sources.{mod}":
                    raise


def list_sources() -> list[Source]:
    """All registered sources, sorted by name."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_source(name: str) -> Source:
    """The source called ``name``; ``KeyError`` with the known names otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown source {name!r}; known sources: {known}") from None


def load_frame(item: Item, t: int) -> Mesh:
    """Load frame ``t`` of ``item`` through the source that produced it."""
    return get_source(item.source).load_frame(item, t)


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` resolved, refusing any path that escapes ``root`` (``..``, symlinks)."""
    root_resolved = root.resolve()
    path = (root_resolved / rel).resolve()
    if path != root_resolved and root_resolved not in path.parents:
        raise ValueError(f"{rel}: path escapes the dataset root {root}")
    return path
