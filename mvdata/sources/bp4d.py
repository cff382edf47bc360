"""BP4D-Spontaneous / BP4D+: per-frame textured meshes grouped by subject and task.

**The file layout is unverified** (no real file was available when this reader was written).
What this reader assumes: ``<subject>/<task>/<frame>.obj`` or ``.wrl`` with a same-stem image
(``.jpg`` / ``.png`` / ``.bmp``) beside it; subject ``F001`` / ``M001`` (BP4D) and task ``T1`` ..
``T10`` (BP4D has T1-T8, BP4D+ T1-T10); frame stems are integers, sorted numerically; 25 fps.
Not understood / not read: the 2D videos, the FACS action-unit occurrence and intensity files
(their layout is unknown here), head-pose files, thermal and physiological channels of BP4D+.

Tasks elicit a target emotion (BP4D paper, Zhang et al. 2014): T1 happiness, T2 sadness,
T3 surprise, T4 embarrassment, T5 fear, T6 physical pain, T7 anger, T8 disgust. That target is
stored as ``expression`` where it is one of the common names; it is the task's goal, not a
per-frame label.
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
    load_obj_frame,
    resolve,
    walk_files,
)
from mvdata.sources.conventions.bp4d import FPS, LICENCE, TASK_EMOTIONS
from mvdata.sources.registry import ScanResult, register

_RE_SUBJECT = re.compile(r"^[FM]\d{3}$", re.ASCII)
_RE_TASK = re.compile(r"^T(?:[1-9]|10)$", re.ASCII)
_RE_FRAME = re.compile(r"^(\d+)\.(obj|wrl)$", re.I | re.ASCII)


class BP4D:
    """Reader of BP4D / BP4D+ per-frame meshes (layout unverified, see the module docs)."""

    name = "bp4d"
    description = "BP4D-Spontaneous / BP4D+: spontaneous 4D sequences per subject and task"
    licence = LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for rel in walk_files(root, (".obj", ".wrl"), res.errors):
            parts = Path(rel).parts
            fm = _RE_FRAME.match(parts[-1])
            ok = (
                len(parts) == 3
                and _RE_SUBJECT.match(parts[0]) is not None
                and _RE_TASK.match(parts[1]) is not None
                and fm is not None
            )
            if not ok or fm is None:
                res.errors.append(ReadError(rel, "name", "path is not like F001/T1/0001.obj"))
                continue
            groups.setdefault((parts[0], parts[1]), []).append((int(fm.group(1)), rel))
        items = []
        for (subject, task), frames in sorted(groups.items()):
            frames = distinct_frames(frames, res.errors)
            meta = ItemMeta(
                dataset=self.name,
                subject=subject,
                sequence=f"{subject}_{task}",
                expression=TASK_EMOTIONS.get(task),
                intensity=None,
                extra={"task": task},
            )
            paths = tuple(frame_files(root, rel, (".jpg", ".png", ".bmp")) for _, rel in frames)
            items.append(
                Item(
                    self.name, str(root), f"bp4d_{subject}_{task}", "sequence", meta, paths, fps=FPS
                )
            )
        res.items = dedupe(items, res.errors)
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        if paths[0].lower().endswith(".obj"):
            return load_obj_frame(item.root, paths)
        vm = read_vrml(resolve(item.root, paths[0]))
        return finish_frame(item.root, paths[0], vm.mesh, vm.texture_url, paths[1:])


SOURCE = register(BP4D())
