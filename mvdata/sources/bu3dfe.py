"""BU-3DFE: static VRML scans ``F0001/F0001_AN01WH_F3D.wrl`` (+ ``.bmp`` texture, ``.bnd``).

Name: sex F|M, 4-digit subject, ``_``, expression AN DI FE HA SA SU with level 01-04 or NE00,
2-letter ethnicity (WH AE BL AM IN LA), ``_F3D`` (cropped face). ``_RAW`` scans are skipped
(not errors); any other ``.wrl`` whose name does not parse is a ``"name"`` error.
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.formats.vrml import read_vrml
from mvdata.sources.common import dedupe, finish_frame, first_existing, resolve, walk_files
from mvdata.sources.conventions.bu3dfe import BU_EXPRESSIONS, LICENCE
from mvdata.sources.registry import ScanResult, register

_RE_NAME = re.compile(
    r"^(?P<sex>[FM])(?P<num>\d{4})_(?P<code>AN|DI|FE|HA|SA|SU|NE)(?P<level>\d{2})"
    r"(?P<eth>WH|AE|BL|AM|IN|LA)_(?P<scan>F3D|RAW)\.(?i:wrl)$",
    re.ASCII,
)


class BU3DFE:
    """Reader of BU-3DFE's cropped (``_F3D``) VRML scans."""

    name = "bu3dfe"
    description = "BU-3DFE: 100 subjects x 25 static scans (6 expressions x 4 levels + neutral)"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        items: list[Item] = []
        for rel in walk_files(root, (".wrl",), res.errors):
            m = _RE_NAME.match(Path(rel).name)
            if m is None:
                res.errors.append(ReadError(rel, "name", "name is not like F0001_AN01WH_F3D.wrl"))
                continue
            code, level = m["code"], int(m["level"])
            if (code == "NE") != (level == 0) or level > 4:
                res.errors.append(ReadError(rel, "name", f"level {level:02d} invalid for {code}"))
                continue
            if m["scan"] != "F3D":
                continue  # raw scans are a different product of the same capture
            subject = f"{m['sex']}{m['num']}"
            stem = rel[: -len(".wrl")]
            found = (first_existing(root, [stem + ".bmp"]), first_existing(root, [stem + ".bnd"]))
            extra_paths = [p for p in found if p is not None]
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{code}{level:02d}",
                expression=BU_EXPRESSIONS[code],
                intensity=level,
                extra={
                    "code": code,
                    "level": f"{level:02d}",
                    "ethnicity": m["eth"],
                    "sex": m["sex"],
                    "scan": m["scan"],
                },
            )
            items.append(
                Item(
                    self.name,
                    str(root),
                    f"bu3dfe_{subject}_{code}{level:02d}",
                    "static",
                    meta,
                    ((rel, *extra_paths),),
                )
            )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        vm = read_vrml(resolve(item.root, paths[0]))
        return finish_frame(item.root, paths[0], vm.mesh, vm.texture_url, paths[1:])


SOURCE = register(BU3DFE())
