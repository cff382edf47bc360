"""CoMA: registered PLY sequences ``FaceTalk_<date>_<id>_TA/<category>/<category>.NNNNNN.ply``.

12 categories are facial motions, not emotions; only ``high_smile`` is mapped (to happiness),
the others keep ``expression=None`` with the category in ``meta.extra["code"]``.
Frame rate 60 fps as stated in the CoMA paper (*unverified* against the files).
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.formats.ply import read_ply
from mvdata.sources.common import dedupe, distinct_frames, finish_frame, resolve, walk_files
from mvdata.sources.conventions.coma import CATEGORIES, EXPRESSIONS, FPS, LICENCE
from mvdata.sources.registry import ScanResult, register

_RE_SUBJECT = re.compile(r"^FaceTalk_\d+_\d+_TA$", re.ASCII)
_RE_FRAME = re.compile(r"^(?P<cat>[a-z_]+)\.(?P<n>\d{6})\.(?i:ply)$", re.ASCII)


class CoMA:
    """Reader of CoMA's registered PLY sequences."""

    name = "coma"
    description = "CoMA: 12 subjects x 12 motion sequences, 20,466 registered FLAME meshes"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for rel in walk_files(root, (".ply",), res.errors):
            parts = Path(rel).parts
            fm = _RE_FRAME.match(parts[-1])
            ok = (
                len(parts) == 3
                and _RE_SUBJECT.match(parts[0]) is not None
                and parts[1] in CATEGORIES
                and fm is not None
                and fm["cat"] == parts[1]
            )
            if not ok or fm is None:
                msg = "path is not like FaceTalk_170725_00137_TA/bareteeth/bareteeth.000001.ply"
                res.errors.append(ReadError(rel, "name", msg))
                continue
            groups.setdefault((parts[0], parts[1]), []).append((int(fm["n"]), rel))
        items = []
        for (subject, cat), frames in sorted(groups.items()):
            frames = distinct_frames(frames, res.errors)
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{cat}",
                expression=EXPRESSIONS.get(cat),
                intensity=None,
                extra={"code": cat},
            )
            items.append(
                Item(
                    self.name,
                    str(root),
                    f"coma_{subject}_{cat}",
                    "sequence",
                    meta,
                    tuple((rel,) for _, rel in frames),
                    fps=FPS,
                )
            )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        pm = read_ply(resolve(item.root, paths[0]))
        return finish_frame(item.root, paths[0], pm.mesh, pm.texture_file, paths[1:])


SOURCE = register(CoMA())
