"""Any folder of meshes (``.obj`` / ``.ply`` / ``.wrl``), one static item per file.

Optional labels at the root: ``labels.parquet`` or ``labels.csv`` with a ``path`` column
(relative to the root, POSIX separators) and optional ``subject``, ``expression``, ``intensity``.
Without a label row, the subject is the file's parent folder name (``"root"`` at the top level)
and there is no expression. A label row naming a missing file, or an intensity that is not an
integer in 0..99 (a level, as BU-3DFE's 0-4; the range is this reader's choice), is a
``"labels"`` error naming the label file, the row's path and the value; the file is then read
without that intensity. The licence is whatever the folder's owner says; this source cannot
know.
"""

from __future__ import annotations

import hashlib
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
    """The intensity of a label row, or None when blank; ``ValueError`` when not a level."""
    if value is None or str(value).strip() == "":
        return None
    lo, hi = INTENSITY_RANGE
    try:
        level = int(str(value).strip())
    except ValueError:
        raise ValueError("not an integer") from None
    if not lo <= level <= hi:
        raise ValueError(f"outside {lo}..{hi}")
    return level


def _labels(root: Path, errors: list[ReadError]) -> dict[str, dict[str, str | int | None]]:
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
        out: dict[str, dict[str, str | int | None]] = {}
        for row in df.iter_rows(named=True):
            rec: dict[str, str | int | None] = {}
            for col in ("subject", "expression"):
                v = row.get(col)
                rec[col] = None if v is None or str(v) == "" else str(v)
            iv = row.get("intensity")
            try:
                rec["intensity"] = _intensity(iv)
            except ValueError as exc:
                shown = str(iv)[:40]
                msg = f"{name}: intensity {shown!r} invalid ({exc}); read without it"
                errors.append(ReadError(str(row["path"]), "labels", msg))
                rec["intensity"] = None
            out[str(row["path"])] = rec
        return out
    return {}


def _key(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    key = make_key("meshdir", stem.replace("/", "_"))
    if key != "meshdir_" + stem.replace("/", "_"):
        # non-ASCII or odd characters were replaced: a short hash keeps keys unique
        key += "-" + hashlib.sha1(rel.encode()).hexdigest()[:8]
    return key


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
        for rel in files:
            lab = labels.get(rel, {})
            parent = Path(rel).parent.name or "root"
            subject = str(lab.get("subject") or parent)
            expr = lab.get("expression")
            inten = lab.get("intensity")
            stem = rel.rsplit(".", 1)[0]
            others = [first_existing(root, [stem + e]) for e in (".png", ".jpg", ".bmp", ".bnd")]
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=stem.replace("/", "_"),
                expression=None if expr is None else str(expr),
                intensity=None if inten is None else int(inten),
                extra={"format": rel.rsplit(".", 1)[-1].lower()},
            )
            paths = (rel, *(p for p in others if p is not None))
            items.append(Item(self.name, str(root), _key(rel), "static", meta, (paths,)))
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
