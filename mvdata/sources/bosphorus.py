"""Bosphorus: static ``.bnt`` depth grids ``bsNNN/bsNNN_<CAT>_<CODE>_<k>.bnt``
(+ ``.png`` texture, ``.lm3`` 3D landmarks in mm, ``.lm2`` 2D landmarks).

Categories: N (neutral, code N), LFAU / UFAU / CAU (action units), E (emotions), YR / PR / CR
(rotations), O (occlusions), IGN. Emotion codes mapped: ANGER DISGUST FEAR HAPPY SADNESS
SURPRISE (the code list is *unverified*; other E codes keep ``expression=None``).

Texture: the ``.bnt``'s v grows down the ``.png`` rows (reported from a real file);
:func:`~mvdata.formats.bnt.bnt_to_mesh` hands the renderer ``1 - v``. Landmarks: the ``.lm3``'s
points with their labels in words (22 in a full scan), which the normaliser maps to canonical
names (:mod:`schemas.landmarks`); the ``.lm2`` (texture pixels) is not needed. Every assumption,
with its status, is in :data:`mvdata.sources.conventions.bosphorus.CONVENTIONS`.
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.formats.bnt import bnt_to_mesh, read_bnt
from mvdata.sources.common import dedupe, finish_frame, first_existing, resolve, walk_files
from mvdata.sources.conventions.bosphorus import CATEGORIES, EMOTIONS, LICENCE
from mvdata.sources.registry import ScanResult, register

_RE_NAME = re.compile(
    r"^(?P<subject>bs\d{3})_(?P<cat>"
    + "|".join(CATEGORIES)
    + r")_(?P<code>[A-Za-z0-9]+)_(?P<k>\d+)\.(?i:bnt)$",
    re.ASCII,
)


class Bosphorus:
    """Reader of Bosphorus ``.bnt`` scans."""

    name = "bosphorus"
    description = "Bosphorus: 105 subjects, 4,666 static depth-grid scans (AUs, emotions, poses)"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        items = []
        for rel in walk_files(root, (".bnt",), res.errors):
            parts = Path(rel).parts
            m = _RE_NAME.match(parts[-1])
            if m is None or (len(parts) > 1 and parts[-2] != m["subject"]):
                res.errors.append(
                    ReadError(rel, "name", "name is not like bs000/bs000_E_ANGER_0.bnt")
                )
                continue
            if m["cat"] == "N" and m["code"] != "N":
                res.errors.append(ReadError(rel, "name", "neutral scans are named N_N"))
                continue
            stem = rel[: -len(".bnt")]
            others = [first_existing(root, [stem + e]) for e in (".png", ".lm3", ".lm2")]
            cat, code, subject = m["cat"], m["code"], m["subject"]
            expr = "neutral" if cat == "N" else EMOTIONS.get(code) if cat == "E" else None
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{cat}_{code}_{m['k']}",
                expression=expr,
                intensity=None,
                extra={"category": cat, "code": code, "take": m["k"]},
            )
            key = f"bosphorus_{subject}_{cat}_{code}_{m['k']}"
            paths = (rel, *(p for p in others if p is not None))
            items.append(Item(self.name, str(root), key, "static", meta, (paths,)))
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        path = resolve(item.root, paths[0])
        grid = read_bnt(path)
        mesh = bnt_to_mesh(grid, str(path))
        return finish_frame(item.root, paths[0], mesh, grid.texture_name, paths[1:])


SOURCE = register(Bosphorus())
