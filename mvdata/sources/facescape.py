"""FaceScape: registered OBJ scans ``<id>/models_reg/<k>_<name>.obj`` (+ ``.mtl``, ``.jpg``).

20 expressions; mapped to the common names where they correspond: 1_neutral -> neutral,
2_smile -> happiness, 4_anger -> anger, 14_sadness -> sadness (the rest keep None). Vertex order
is kept exactly (see :mod:`mvdata.formats.obj`).
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.formats import read_bytes
from mvdata.formats.obj import parse_mtl, read_obj
from mvdata.mesh import Item, ItemMeta, Mesh, MeshReadError, ReadError
from mvdata.sources import ScanResult, register
from mvdata.sources.common import (
    dedupe,
    finish_frame,
    first_existing,
    resolve,
    walk_files,
)

NAMES = (
    "neutral", "smile", "mouth_stretch", "anger", "jaw_left", "jaw_right", "jaw_forward",
    "mouth_left", "mouth_right", "dimpler", "chin_raiser", "lip_puckerer", "lip_funneler",
    "sadness", "lip_roll", "grin", "cheek_blowing", "eye_closed", "brow_raiser", "brow_lower",
)  # fmt: skip
EXPRESSIONS = {"neutral": "neutral", "smile": "happiness", "anger": "anger", "sadness": "sadness"}
_RE_NAME = re.compile(r"^(?P<k>\d{1,2})_(?P<name>[a-z_]+)\.obj$")
LICENCE = (
    "FaceScape: research use only under the FaceScape licence agreement (application "
    "required); not redistributable; publishing images of identities needs consent as listed."
)


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
                m is not None and len(parts) == 3 and parts[0].isdigit()
                and parts[1] == "models_reg" and 1 <= int(m["k"]) <= 20
                and NAMES[int(m["k"]) - 1] == m["name"]
            )  # fmt: skip
            if not ok or m is None:
                res.errors.append(
                    ReadError(rel, "name", "path is not like 1/models_reg/1_neutral.obj")
                )
                continue
            subject, k, nm = parts[0], int(m["k"]), m["name"]
            stem = rel[: -len(".obj")]
            others = [first_existing(root, [stem + e]) for e in (".mtl", ".jpg", ".png")]
            meta = ItemMeta(
                dataset=self.name, subject=subject, sequence=f"{subject}_{k}_{nm}",
                expression=EXPRESSIONS.get(nm), intensity=None, extra={"code": f"{k}_{nm}"},
            )  # fmt: skip
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


SOURCE = register(FaceScape())
