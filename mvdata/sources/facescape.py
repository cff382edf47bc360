"""FaceScape: registered OBJ scans ``<id>/models_reg/<k>_<name>.obj`` (+ ``.mtl``, ``.jpg``).

20 expressions; mapped to the common names where they correspond: 1_neutral -> neutral,
2_smile -> happiness, 4_anger -> anger, 14_sadness -> sadness (the rest keep None). Vertex order
is kept exactly (see :mod:`mvdata.formats.obj`).
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.sources.common import dedupe, first_existing, load_obj_frame, walk_files
from mvdata.sources.conventions.facescape import EXPRESSIONS, LICENCE, NAMES
from mvdata.sources.registry import ScanResult, register

_RE_NAME = re.compile(r"^(?P<k>\d{1,2})_(?P<name>[a-z_]+)\.(?i:obj)$", re.ASCII)


class FaceScape:
    """Reader of FaceScape's registered (``models_reg``) OBJ scans."""

    name = "facescape"
    description = "FaceScape: 847 subjects x 20 expressions, registered topology-uniform OBJ"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        items = []
        for rel in walk_files(root, (".obj",), res.errors):
            parts = Path(rel).parts
            m = _RE_NAME.match(parts[-1])
            ok = (
                m is not None
                and len(parts) == 3
                and re.fullmatch(r"[0-9]+", parts[0]) is not None  # ASCII digits only
                and parts[1] == "models_reg"
                and 1 <= int(m["k"]) <= 20
                and NAMES[int(m["k"]) - 1] == m["name"]
            )
            if not ok or m is None:
                res.errors.append(
                    ReadError(rel, "name", "path is not like 1/models_reg/1_neutral.obj")
                )
                continue
            subject, k, nm = parts[0], int(m["k"]), m["name"]
            stem = rel[: -len(".obj")]
            others = [first_existing(root, [stem + e]) for e in (".mtl", ".jpg", ".png")]
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{k}_{nm}",
                expression=EXPRESSIONS.get(nm),
                intensity=None,
                extra={"code": f"{k}_{nm}"},
            )
            paths = (rel, *(p for p in others if p is not None))
            items.append(
                Item(
                    self.name, str(root), f"facescape_{subject}_{k}_{nm}", "static", meta, (paths,)
                )
            )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        return load_obj_frame(item.root, item.frame_paths[t])


SOURCE = register(FaceScape())
