"""The synthetic source: reads the default layout written by ``mvdata synth``.

``metadata.parquet`` (one :class:`schemas.models.SynthRow` per mesh file) is the index: static
scans are one item each, sequences are grouped by (subject, sequence) with frames in order.
Landmarks come from the table; geometry, colours and UVs from the PLY/OBJ files.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from mvdata.core import Item, ItemMeta, Mesh, MeshReadError, ReadError
from mvdata.formats import file_problem
from mvdata.formats.obj import read_obj
from mvdata.formats.ply import read_ply
from mvdata.sources.common import checked, dedupe, load_image, make_key, resolve
from mvdata.sources.conventions.synthetic import LICENCE as SYNTH_LICENCE
from mvdata.sources.registry import ScanResult, register
from schemas import check_version
from schemas.models import SynthRow
from schemas.tables import check_frame


def read_synth_metadata(root: Path) -> pl.DataFrame:
    """The metadata table of a default-layout synthetic set, schema-checked."""
    path = Path(root) / "metadata.parquet"
    frame = pl.read_parquet(path)
    check_frame(SynthRow, frame, where=str(path))
    if len(frame):
        check_version(frame["schema_version"][0], where=str(path))
    return frame


class Synthetic:
    """Reader of ``mvdata synth``'s default layout."""

    name = "synthetic"
    description = "mvdata's synthetic 3D/4D faces (mvdata synth): static scans and 25 fps sequences"
    licence = SYNTH_LICENCE

    def scan(self, root: Path) -> ScanResult:
        root = Path(root)
        res = ScanResult()
        try:
            table = read_synth_metadata(root)
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            res.errors.append(ReadError(str(root / "metadata.parquet"), "index", str(exc)))
            return res
        groups = table.sort(["subject", "sequence", "frame"]).group_by(
            ["subject", "sequence"], maintain_order=True
        )
        for (subject, sequence), rows in groups:
            first = rows.row(0, named=True)
            if first["kind"] == "static" and len(rows) > 1:
                # a static scan is one row: more under one name are other scans, not frames
                res.errors.extend(
                    ReadError(p, "duplicate", f"static scan {sequence} is listed more than once")
                    for p in rows["mesh_path"].to_list()[1:]
                )
                rows = rows.head(1)
            missing = [p for p in rows["mesh_path"].to_list() if not (root / p).is_file()]
            if missing:
                res.errors.extend(
                    ReadError(p, "missing", "mesh file listed in metadata.parquet is missing")
                    for p in missing
                )
                continue
            meta = ItemMeta(
                dataset=self.name,
                subject=str(subject),
                sequence=str(sequence),
                expression=first["expression"],
                intensity=first["intensity"],
                extra={"face_model": first["face_model"]},
            )
            frames = tuple(
                (mesh, tex) if tex else (mesh,)
                for mesh, tex in zip(
                    rows["mesh_path"].to_list(), rows["texture_path"].to_list(), strict=True
                )
            )
            res.items.append(
                Item(
                    source=self.name,
                    root=str(root),
                    key=make_key("synthetic", str(sequence)),
                    kind=first["kind"],
                    meta=meta,
                    frame_paths=frames,
                    fps=first["fps"],
                )
            )
        res.items = dedupe(res.items, res.errors)  # a hand-merged set may repeat a sequence
        return res

    def load_frame(self, item: Item, t: int) -> Mesh:
        paths = item.frame_paths[t]
        path = resolve(item.root, paths[0])
        parsed = read_obj(path) if path.suffix == ".obj" else read_ply(path)
        mesh = parsed.mesh
        if len(paths) > 1:
            tex = resolve(item.root, paths[1])
            problem = file_problem(tex)  # a missing texture named, not a bare FileNotFoundError
            if problem is not None:
                raise MeshReadError(str(tex), problem[0], f"texture image: {problem[1]}")
            stat = tex.stat()
            mesh.texture = _texture(str(tex), stat.st_mtime_ns, stat.st_size)
        try:
            landmarks = _landmarks(item.root).get(paths[0])
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            where = str(Path(item.root) / "metadata.parquet")
            raise MeshReadError(where, "index", f"cannot read the index: {exc}") from None
        if landmarks is None:
            raise MeshReadError(paths[0], "index", "not listed in metadata.parquet")
        mesh.landmarks, mesh.landmark_names = landmarks
        return checked(mesh, str(path))


@lru_cache(maxsize=8)
def _landmarks(root: str) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """mesh_path -> (landmarks, names), read once per worker from the (small) metadata table."""
    table = read_synth_metadata(Path(root))
    return {
        path: (np.asarray(lm, dtype=np.float32), tuple(names))
        for path, lm, names in table.select("mesh_path", "landmarks", "landmark_names").iter_rows()
    }


@lru_cache(maxsize=32)
def _texture(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Decoded texture, shared by every mesh of an identity (keyed by path, mtime and size so a
    changed file is read again). Callers must not modify it."""
    img = load_image(Path(path))
    img.flags.writeable = False
    return img


SOURCE = register(Synthetic())
