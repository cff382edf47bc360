"""BU-4DFE: VRML sequences ``F001/Angry/000.wrl`` (+ ``000.jpg``, optional ``000.bnd``).

Folders Angry Disgust Fear Happy Sad Surprise; 25 fps; no vertex correspondence between frames.
A ``.wrl`` whose subject folder, expression folder or frame number does not parse is a
``"name"`` error; the other frames of the sequence still read.
"""

from __future__ import annotations

import re
from pathlib import Path

from mvdata.core import Item, ItemMeta, Mesh, ReadError
from mvdata.formats.vrml import read_vrml
from mvdata.sources.common import (
    dedupe,
    distinct_frames,
    finish_frame,
    frame_files,
    resolve,
    walk_files,
)
from mvdata.sources.conventions.bu4dfe import FOLDERS, FPS, LICENCE
from mvdata.sources.registry import ScanResult, register

_RE_SUBJECT = re.compile(r"^[FM]\d{3}$", re.ASCII)
_RE_FRAME = re.compile(r"^(\d{3,})\.(?i:wrl)$", re.ASCII)


class BU4DFE:
    """Reader of BU-4DFE's per-frame VRML sequences."""

    name = "bu4dfe"
    description = "BU-4DFE: 101 subjects x 6 expression sequences, ~100 VRML frames at 25 fps"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for rel in walk_files(root, (".wrl",), res.errors):
            parts = Path(rel).parts
            fm = _RE_FRAME.match(parts[-1])
            if (
                len(parts) != 3
                or not _RE_SUBJECT.match(parts[0])
                or parts[1] not in FOLDERS
                or not fm
            ):
                res.errors.append(ReadError(rel, "name", "path is not like F001/Angry/000.wrl"))
                continue
            groups.setdefault((parts[0], parts[1]), []).append((int(fm.group(1)), rel))
        items = []
        for (subject, folder), frames in sorted(groups.items()):
            frames = distinct_frames(frames, res.errors)
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{folder}",
                expression=FOLDERS[folder],
                intensity=None,
                extra={"code": folder, "first_frame": str(frames[0][0])},
            )
            paths = tuple(frame_files(root, rel, (".jpg", ".bmp", ".png")) for _, rel in frames)
            items.append(
                Item(
                    self.name,
                    str(root),
                    f"bu4dfe_{subject}_{folder}",
                    "sequence",
                    meta,
                    paths,
                    fps=FPS,
                )
            )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        vm = read_vrml(resolve(item.root, paths[0]))
        return finish_frame(item.root, paths[0], vm.mesh, vm.texture_url, paths[1:])


SOURCE = register(BU4DFE())
