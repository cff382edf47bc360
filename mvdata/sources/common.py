"""Helpers shared by the dataset readers: safe walking of a root, texture loading, keys, and
the frame loaders more than one layout uses (a frame's sibling files, an OBJ frame).

Everything here is dataset-agnostic; the dataset modules hold the naming rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from mvdata.core import InvalidMesh, Item, Mesh, MeshReadError, ReadError
from mvdata.formats import read_bytes
from mvdata.formats.landmarks import read_bnd, read_lm3
from mvdata.formats.obj import parse_mtl, read_obj
from mvdata.sources.registry import safe_join

__all__ = [
    "checked",
    "frame_files",
    "load_obj_frame",
    "load_image",
    "make_key",
    "resolve",
    "walk_files",
]

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
    except InvalidMesh as exc:
        raise MeshReadError(path, exc.kind, str(exc)) from None
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


_IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png")


def finish_frame(
    root: str | Path, geometry: str, mesh: Mesh, texture_name: str | None, others: Iterable[str]
) -> Mesh:
    """Attach texture and landmarks to a freshly parsed frame and validate it.

    The texture is the file the geometry names (``texture_name``, relative to the geometry's
    folder) when it exists inside the root, else the first image among ``others``. Landmarks come
    from a ``.bnd`` or ``.lm3`` file among ``others``.
    """
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


def frame_files(root: Path, rel: str, image_exts: tuple[str, ...]) -> tuple[str, ...]:
    """``rel`` plus its same-stem texture image and ``.bnd``, where they exist."""
    stem = rel.rsplit(".", 1)[0]
    img = first_existing(root, [stem + e for e in image_exts])
    bnd = first_existing(root, [stem + ".bnd"])
    return tuple(p for p in (rel, img, bnd) if p is not None)


def load_obj_frame(root: str, paths: tuple[str, ...]) -> Mesh:
    """An OBJ frame with the texture its MTL names (or a same-stem image) and landmarks."""
    om = read_obj(resolve(root, paths[0]))
    tex = None
    if om.mtllib:
        mtl_rel = (Path(paths[0]).parent / om.mtllib).as_posix()
        try:
            mtl = resolve(root, mtl_rel)
        except MeshReadError:
            mtl = None  # an MTL outside the root is ignored, never read
        if mtl is not None and mtl.is_file():
            tex = parse_mtl(read_bytes(mtl), str(mtl))
    return finish_frame(root, paths[0], om.mesh, tex, paths[1:])
