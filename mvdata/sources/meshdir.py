"""Any folder of meshes (``.obj`` / ``.ply`` / ``.wrl``), one static item per file.

Optional labels at the root: ``labels.parquet`` or ``labels.csv`` with a ``path`` column
(relative to the root, POSIX separators) and optional ``subject``, ``expression``, ``intensity``.
Without a label file, the subject is the file's TOP-LEVEL folder under the root (``S01`` for
``S01/happy/1.obj``; ``"root"`` for files at the top) and there is no expression: one person
split into two subject ids would put them on both sides of a subject-independent split, while
two people merged into one only unbalance the folds. A mesh without a label row takes its
subject the same way (give every mesh a row where the folders are not people). A label row
naming a missing file, a
second row for one path that disagrees with the first (the first is used), or an intensity
that is not an integer in 0..99 (a level, as BU-3DFE's 0-4; the range is this reader's choice;
``3.0`` counts as 3) is a ``"labels"`` error naming the label file, the row's path and the
value; the file is then read without that intensity. Label values are stripped of surrounding
blanks. Two files whose keys would be equal (``a/b.obj`` beside ``a_b.obj``, ``x.obj`` beside
``x.ply``) both get a short hash of their path in the key. The licence is whatever the
folder's owner says; this source cannot know.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import polars as pl

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.formats.ply import read_ply
from mvdata.formats.vrml import read_vrml
from mvdata.sources.common import (
    dedupe,
    finish_frame,
    first_existing,
    load_obj_frame,
    make_key,
    resolve,
    walk_files,
)
from mvdata.sources.conventions.meshdir import LICENCE
from mvdata.sources.registry import ScanResult, register

#: Accepted intensity levels (a label file's ``intensity`` column).
INTENSITY_RANGE = (0, 99)


def _intensity(value: object) -> int | None:
    """The intensity of a label row, or None when blank (or NaN: a float column's missing
    value); ``ValueError`` when not a level. A whole float (``3.0``: pandas writes an integer
    column with a gap as float64) is that level."""
    text = "" if value is None else str(value).strip()
    if text == "" or text.lower() == "nan":
        return None
    lo, hi = INTENSITY_RANGE
    try:
        number = float(text)
    except ValueError:
        raise ValueError("not an integer") from None
    if not number.is_integer():
        raise ValueError("not an integer")
    level = int(number)
    if not lo <= level <= hi:
        raise ValueError(f"outside {lo}..{hi}")
    return level


Labels = dict[str, dict[str, str | int | None]]


def _labels(root: Path, errors: list[ReadError]) -> Labels:
    """Rows of the optional label file keyed by path."""
    for name in ("labels.parquet", "labels.csv"):
        p = root / name
        if not p.is_file():
            continue
        try:
            df = (
                pl.read_parquet(p)
                if name.endswith(".parquet")
                else pl.read_csv(p, infer_schema=False)
            )
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            errors.append(ReadError(name, "labels", f"cannot read label file: {exc}"))
            return {}
        if "path" not in df.columns:
            errors.append(ReadError(name, "labels", "label file has no 'path' column"))
            return {}
        out: Labels = {}
        for row in df.iter_rows(named=True):
            rec: dict[str, str | int | None] = {}
            for col in ("subject", "expression"):
                v = row.get(col)
                text = "" if v is None else str(v).strip()
                rec[col] = text or None
            iv = row.get("intensity")
            try:
                rec["intensity"] = _intensity(iv)
            except ValueError as exc:
                shown = str(iv)[:40]
                msg = f"{name}: intensity {shown!r} invalid ({exc}); read without it"
                errors.append(ReadError(str(row["path"]), "labels", msg))
                rec["intensity"] = None
            path = str(row["path"]).strip()
            if path in out:
                if out[path] != rec:
                    msg = f"{name}: a second row for this path disagrees with the first: {rec}"
                    errors.append(ReadError(path, "labels", msg + "; the first is used"))
                continue
            out[path] = rec
        return out
    return {}


def _key(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    key = make_key("meshdir", stem.replace("/", "_"))
    if key != "meshdir_" + stem.replace("/", "_"):
        # non-ASCII or odd characters were replaced: a short hash keeps keys unique
        key += "-" + _path_hash(rel)
    return key


def _path_hash(rel: str) -> str:
    return hashlib.sha1(rel.encode()).hexdigest()[:8]


def _subject_folder(rel: str) -> str:
    """The top-level folder of ``rel`` under the root (``"root"`` for a file at the top)."""
    parts = Path(rel).parts
    return parts[0] if len(parts) > 1 else "root"


class MeshDir:
    """Reader of a plain folder of OBJ / PLY / WRL meshes with an optional label file."""

    name = "meshdir"
    description = "Any folder of OBJ/PLY/WRL meshes, optional labels.csv/parquet"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        labels = _labels(root, res.errors)
        items = []
        files = walk_files(root, (".obj", ".ply", ".wrl"), res.errors)
        keys = {rel: _key(rel) for rel in files}
        shared = Counter(keys.values())
        for rel in files:
            lab = labels.get(rel, {})
            subject = str(lab.get("subject") or _subject_folder(rel))
            expr = lab.get("expression")
            inten = lab.get("intensity")
            stem = rel.rsplit(".", 1)[0]
            key, sequence = keys[rel], stem.replace("/", "_")
            if shared[key] > 1:  # a/b.obj beside a_b.obj, x.obj beside x.ply
                key, sequence = f"{key}-{_path_hash(rel)}", f"{sequence}-{_path_hash(rel)}"
            others = [first_existing(root, [stem + e]) for e in (".png", ".jpg", ".bmp", ".bnd")]
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=sequence,
                expression=None if expr is None else str(expr),
                intensity=None if inten is None else int(inten),
                extra={"format": rel.rsplit(".", 1)[-1].lower()},
            )
            paths = (rel, *(p for p in others if p is not None))
            items.append(Item(self.name, str(root), key, "static", meta, (paths,)))
        known = set(files)
        for p in sorted(labels):
            if p not in known:
                res.errors.append(
                    ReadError(p, "labels", "label row names a file that is not there")
                )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        low = paths[0].lower()
        if low.endswith(".obj"):
            return load_obj_frame(item.root, paths)
        if low.endswith(".ply"):
            pm = read_ply(resolve(item.root, paths[0]))
            return finish_frame(item.root, paths[0], pm.mesh, pm.texture_file, paths[1:])
        vm = read_vrml(resolve(item.root, paths[0]))
        return finish_frame(item.root, paths[0], vm.mesh, vm.texture_url, paths[1:])


SOURCE = register(MeshDir())
