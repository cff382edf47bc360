"""Helpers shared by the dataset readers: safe walking of a root, texture loading, keys, and
the frame loaders more than one layout uses (a frame's sibling files, an OBJ frame).

Everything here is dataset-agnostic; the dataset modules hold the naming rules.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from mvdata.core import InvalidMesh, Item, Mesh, MeshReadError, ReadError
from mvdata.formats import as_float32, file_problem, read_bytes
from mvdata.formats.landmarks import read_bnd, read_lm3
from mvdata.formats.obj import parse_mtl, read_obj
from mvdata.sources.registry import safe_join

__all__ = [
    "MAX_TEXTURE_PIXELS",
    "checked",
    "frame_files",
    "load_obj_frame",
    "load_image",
    "make_key",
    "resolve",
    "walk_files",
]

_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")

#: The largest texture accepted, in pixels: 8192 x 8192 (four times a 4K texture such as
#: FaceScape's; 192 MB as RGB). A file declaring more is refused before it is decoded (a
#: "decompression bomb": a few KB that would decode into gigabytes). Checked here rather than
#: by changing PIL's process-wide ``Image.MAX_IMAGE_PIXELS``.
MAX_TEXTURE_PIXELS = 8192 * 8192


def make_key(*parts: str) -> str:
    """A sample key from ``parts``: ASCII ``[A-Za-z0-9_-]`` only, joined by ``_``."""
    return "_".join(_KEY_BAD.sub("-", p).strip("-") or "x" for p in parts)


def walk_files(root: Path, suffixes: tuple[str, ...], errors: list[ReadError]) -> list[str]:
    """Relative POSIX paths of the files under ``root`` whose lower-case suffix is in
    ``suffixes``, sorted. Symlinks that lead outside ``root`` are refused and recorded as
    ``"escape"`` errors; symlinked folders are not followed (no loops, no escapes); empty files
    are recorded as ``"empty"`` errors and left out, for every reader alike, and so are
    dangling symlinks (``"missing"``), symlink loops and anything that is not a regular file
    (a FIFO would block a reader: ``"io"``), each with its own reason."""
    root = Path(root)
    root_res = root.resolve()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in dirnames:
            full = Path(dirpath) / d
            if full.is_symlink():
                rel = full.relative_to(root).as_posix()
                try:
                    target = full.resolve(strict=True)
                except (OSError, RuntimeError):  # a loop (RuntimeError before Python 3.13)
                    errors.append(ReadError(rel, "io", "symlinked folder: a loop or dangling"))
                    continue
                if target != root_res and root_res not in target.parents:
                    errors.append(
                        ReadError(rel, "escape", "symlinked folder leads outside the root")
                    )
        for fn in sorted(filenames):
            if not fn.lower().endswith(suffixes):
                continue
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            problem = file_problem(full)
            if problem is not None:
                errors.append(ReadError(rel, *problem))
                continue
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
    """True when ``root/rel`` has zero bytes (a cheap check a scan can afford). A path that
    cannot be stat'ed is not called empty: :func:`mvdata.formats.file_problem` says why."""
    try:
        return (Path(root) / rel).stat().st_size == 0
    except OSError:
        return False


def resolve(item_root: str | Path, rel: str) -> Path:
    """``safe_join`` that raises ``MeshReadError(kind="escape")`` instead of ``ValueError``."""
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        raise MeshReadError(rel, "escape", "path leaves the dataset root ('..' or absolute)")
    try:
        return safe_join(Path(item_root), rel)
    except ValueError as exc:
        raise MeshReadError(rel, "escape", str(exc)) from None
    except (OSError, RuntimeError):  # resolving a symlink loop (RuntimeError before 3.13)
        raise MeshReadError(rel, "io", "symlink loop: the link leads back to itself") from None


# What PIL raises on a corrupt file besides OSError (its plugins use struct, EOF and syntax
# errors for malformed headers and chunks).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError, struct.error)


def load_image(path: Path) -> NDArray[np.uint8]:
    """An image file as ``(H, W, 3)`` uint8 RGB, row 0 at the top.

    A file that declares more than :data:`MAX_TEXTURE_PIXELS` pixels is refused from its
    header, before decoding (PIL's own decompression-bomb error and warning become the same
    ``MeshReadError``); so is one that is not a regular file (a FIFO would block)."""
    problem = file_problem(Path(path))
    if problem is not None:
        kind, msg = problem
        raise MeshReadError(str(path), kind, f"texture image: {msg}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_TEXTURE_PIXELS or w * h == 0:
                    msg = (
                        f"texture image declares {w} x {h} pixels: outside 1 .. "
                        f"{MAX_TEXTURE_PIXELS} (8192 x 8192); refused before decoding"
                    )
                    raise MeshReadError(str(path), "texture", msg)
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        msg = f"texture image over {MAX_TEXTURE_PIXELS} pixels (decompression bomb?): {exc}"
        raise MeshReadError(str(path), "texture", msg) from None
    except FileNotFoundError:
        raise MeshReadError(str(path), "missing", "texture image not found") from None
    except _DECODE_ERRORS as exc:
        raise MeshReadError(str(path), "texture", f"cannot decode texture image: {exc}") from None


def checked(mesh: Mesh, path: str) -> Mesh:
    """``mesh`` after :meth:`Mesh.validate`, its ``ValueError`` turned into ``MeshReadError``."""
    try:
        mesh.validate()
    except InvalidMesh as exc:
        raise MeshReadError(path, exc.kind, str(exc)) from None
    return mesh


def first_existing(root: Path, rels: Iterable[str]) -> str | None:
    """The first of ``rels`` that exists under ``root`` (as a file), or None. Each is tried as
    given, then with its suffix in upper case (``000.JPG`` beside ``000.wrl``: copies made on
    Windows or from CDs can carry upper-case extensions; file systems here are case-sensitive)."""
    rels = list(rels)
    upper = [f"{stem}.{ext.upper()}" for stem, dot, ext in (r.rpartition(".") for r in rels) if dot]
    for cand in dict.fromkeys([*rels, *upper]):  # in order, each name once
        if (Path(root) / cand).is_file():
            return cand
    return None


def distinct_frames(
    frames: list[tuple[int, str]], errors: list[ReadError]
) -> list[tuple[int, str]]:
    """A sequence's ``(frame number, file)`` pairs sorted by number, one file per number. A
    second file with a number already seen (``000.wrl`` and ``0000.wrl``, ``0001.obj`` beside
    ``0001.wrl``) would play one moment twice: it is a ``"duplicate"`` error naming the file
    that is read instead (the first in name order)."""
    out: list[tuple[int, str]] = []
    for number, rel in sorted(frames):
        if out and out[-1][0] == number:
            msg = f"frame {number} again: {out[-1][1]} is read for it"
            errors.append(ReadError(rel, "duplicate", msg))
            continue
        out.append((number, rel))
    return out


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
        points = as_float32(lm.points)
        if points is None:
            # finite as text but beyond float32 (1e300): inf once stored, and one such point
            # would throw the normalisation (and the face) out of the frame
            msg = "landmarks hold NaN or inf (or values beyond float32)"
            raise MeshReadError(str(resolve(root, rel)), "nan", msg)
        mesh.landmarks = points
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
