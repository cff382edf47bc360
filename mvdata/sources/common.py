"""Helpers shared by the dataset readers: safe walking of a root, texture loading, label maps,
keys, and :func:`inspect_dataset` (what ``mvdata inspect`` shows).

Everything here is dataset-agnostic; the dataset modules hold the naming rules.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from mvdata.mesh import Item, Mesh, MeshReadError, ReadError
from mvdata.sources import get_source, safe_join

__all__ = [
    "COMMON_EXPRESSIONS",
    "InspectReport",
    "checked",
    "inspect_dataset",
    "load_image",
    "make_key",
    "resolve",
    "walk_files",
]

COMMON_EXPRESSIONS = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(*parts: str) -> str:
    """A sample key from ``parts``: ASCII ``[A-Za-z0-9_-]`` only, joined by ``_``."""
    return "_".join(_KEY_BAD.sub("-", p).strip("-") or "x" for p in parts)


def walk_files(root: Path, suffixes: tuple[str, ...], errors: list[ReadError]) -> list[str]:
    """Relative POSIX paths of the files under ``root`` whose lower-case suffix is in
    ``suffixes``, sorted. Symlinks that lead outside ``root`` are refused and recorded as
    ``"escape"`` errors; symlinked folders are not followed (no loops, no escapes); empty files
    are recorded as ``"empty"`` errors and left out, for every reader alike."""
    root = Path(root)
    root_res = root.resolve()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in dirnames:
            full = Path(dirpath) / d
            if full.is_symlink():
                rel = full.relative_to(root).as_posix()
                target = full.resolve()
                if target != root_res and root_res not in target.parents:
                    errors.append(
                        ReadError(rel, "escape", "symlinked folder leads outside the root")
                    )
        for fn in sorted(filenames):
            if not fn.lower().endswith(suffixes):
                continue
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                try:
                    safe_join(root, rel)
                except ValueError:
                    errors.append(
                        ReadError(rel, "escape", "symlink leads outside the dataset root")
                    )
                    continue
            if ".." in Path(rel).parts:
                errors.append(ReadError(rel, "escape", "path contains '..'"))
                continue
            if empty_file(root, rel):
                errors.append(ReadError(rel, "empty", "file is empty (0 bytes)"))
                continue
            out.append(rel)
    return sorted(out)


def empty_file(root: Path, rel: str) -> bool:
    """True when ``root/rel`` has zero bytes (a cheap check a scan can afford)."""
    try:
        return (Path(root) / rel).stat().st_size == 0
    except OSError:
        return True


def resolve(item_root: str | Path, rel: str) -> Path:
    """``safe_join`` that raises ``MeshReadError(kind="escape")`` instead of ``ValueError``."""
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        raise MeshReadError(rel, "escape", "path leaves the dataset root ('..' or absolute)")
    try:
        return safe_join(Path(item_root), rel)
    except ValueError as exc:
        raise MeshReadError(rel, "escape", str(exc)) from None


def load_image(path: Path) -> NDArray[np.uint8]:
    """An image file as ``(H, W, 3)`` uint8 RGB, row 0 at the top."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise MeshReadError(str(path), "missing", "texture image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MeshReadError(str(path), "texture", f"cannot decode texture image: {exc}") from None


def checked(mesh: Mesh, path: str) -> Mesh:
    """``mesh`` after :meth:`Mesh.validate`, its ``ValueError`` turned into ``MeshReadError``."""
    try:
        mesh.validate()
    except ValueError as exc:
        kind = "nan" if "NaN" in str(exc) else "parse"
        raise MeshReadError(path, kind, str(exc)) from None
    return mesh


def first_existing(root: Path, rels: Iterable[str]) -> str | None:
    """The first of ``rels`` that exists under ``root`` (as a file), or None."""
    for r in rels:
        if (Path(root) / r).is_file():
            return r
    return None


def dedupe(items: list[Item], errors: list[ReadError]) -> list[Item]:
    """Items with unique keys, sorted by key; later duplicates become ``"duplicate"`` errors."""
    seen: dict[str, Item] = {}
    for it in items:
        if it.key in seen:
            errors.append(
                ReadError(
                    it.frame_paths[0][0],
                    "duplicate",
                    f"key {it.key} already used by {seen[it.key].frame_paths[0][0]}",
                )
            )
            continue
        seen[it.key] = it
    return [seen[k] for k in sorted(seen)]


@dataclass
class InspectReport:
    """What a reader sees in a dataset root."""

    source: str
    root: str
    num_items: int = 0
    num_frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)
    expressions: Counter[str] = field(default_factory=Counter)
    intensities: Counter[str] = field(default_factory=Counter)
    frames_per_sequence: dict[str, int] = field(default_factory=dict)
    errors: list[ReadError] = field(default_factory=list)
    frames_checked: int = 0

    @property
    def error_kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.errors)


def inspect_dataset(
    root: Path,
    source_name: str,
    check: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    """Scan ``root`` with the named source and summarise it; with ``check``, load every frame
    too (slow on a full dataset) so unreadable files are listed with their reason."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    src = get_source(source_name)
    res = src.scan(root)
    rep = InspectReport(source=src.name, root=str(root), errors=list(res.errors))
    rep.num_items = len(res.items)
    total = sum(it.num_frames for it in res.items)
    done = 0
    for it in res.items:
        rep.kinds[it.kind] += 1
        rep.subjects[it.meta.subject] += 1
        rep.expressions[it.meta.expression or "(none)"] += 1
        rep.intensities["(none)" if it.meta.intensity is None else str(it.meta.intensity)] += 1
        rep.num_frames += it.num_frames
        if it.kind == "sequence":
            rep.frames_per_sequence[it.key] = it.num_frames
        if check:
            for t in range(it.num_frames):
                try:
                    src.load_frame(it, t)
                    rep.frames_checked += 1
                except MeshReadError as exc:
                    rep.errors.append(exc.as_read_error())
                done += 1
                if progress is not None:
                    progress(done, total)
    return rep


_IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png")


def finish_frame(
    root: str | Path, geometry: str, mesh: Mesh, texture_name: str | None, others: Iterable[str]
) -> Mesh:
    """Attach texture and landmarks to a freshly parsed frame and validate it.

    The texture is the file the geometry names (``texture_name``, relative to the geometry's
    folder) when it exists inside the root, else the first image among ``others``. Landmarks come
    from a ``.bnd`` or ``.lm3`` file among ``others``.
    """
    from mvdata.formats.landmarks import read_bnd, read_lm3  # local: keep import light

    others = list(others)
    cands: list[str] = []
    if texture_name:
        named = (Path(geometry).parent / texture_name.replace("\\", "/")).as_posix()
        if not named.startswith("../") and "/../" not in named:
            cands.append(named)
    cands += [o for o in others if o.lower().endswith(_IMAGE_SUFFIXES)]
    for rel in cands:
        try:
            p = resolve(root, rel)
        except MeshReadError:
            continue  # a texture name leading outside the root is ignored, never followed
        if p.is_file():
            mesh.texture = load_image(p)
            break
    for rel in others:
        low = rel.lower()
        if low.endswith(".bnd"):
            lm = read_bnd(resolve(root, rel))
        elif low.endswith(".lm3"):
            lm = read_lm3(resolve(root, rel))
        else:
            continue
        mesh.landmarks = lm.points.astype(np.float32)
        mesh.landmark_names = lm.labels
        break
    return checked(mesh, str(Path(root) / geometry))
