"""One mesh file as a one-sample shard directory, rendered exactly as another shard directory was:
the query of ``mvmodel search similar --mesh FILE``.

The model half (``mvmodel``) may not render (import-linter: it reads data only through the
loaders and the shard readers), so a mesh query is made here, on the data side, as a shard
directory the model then embeds through its usual eval loader. The build itself does the work:
the mesh (with its same-stem texture, ``.mtl`` and ``.bnd``/``.lm3`` landmarks) is copied into a
temporary ``meshdir`` source and built with the camera rig, modalities, image size and JPEG
quality recorded in the reference directory's ``dataset.json``; so the query's views are
normalised, rendered, encoded, decoded and resized exactly as the stored samples were.

The build runs in a spawned child process: it opens a GL context, and the caller (a CLI that
then loads torch and DALI) should never hold one (see :mod:`mvdata.render.gl`).

A mesh without landmarks is normalised by its bounding box: its views are framed a little
differently from samples normalised from landmarks, which moves its embedding somewhat.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pydantic import ValidationError

from mvdata.build.config import BuildConfig
from mvdata.build.driver import BuildSummary, build
from mvdata.formats.obj import parse_mtl, read_obj
from mvdata.render.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_Y
from mvdata.render.gl import DEFAULT_DEPTH_SCALE_MM
from mvdata.shards.reader import filesystem, list_shards, read_shard_rows
from schemas import check_version
from schemas.models import DatasetMetadata

__all__ = ["MESH_SUFFIXES", "mesh_shards", "read_dataset_meta"]

#: The mesh formats a query may be (those of the ``meshdir`` source).
MESH_SUFFIXES = (".obj", ".ply", ".wrl")
#: Files beside a mesh that come with it (texture, material, landmarks), by suffix.
_SIBLING_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".mtl", ".bnd", ".lm3")


def read_dataset_meta(shards: str) -> DatasetMetadata:
    """``dataset.json`` of a shard directory (a ``ValueError`` naming it when absent or bad)."""
    fs, root = filesystem(shards)
    path = f"{root}/dataset.json"
    try:
        with fs.open(path, "rb") as f:
            meta = DatasetMetadata.model_validate_json(f.read())
    except FileNotFoundError:
        raise ValueError(f"{shards}: no dataset.json: not a shard directory") from None
    except ValidationError as exc:
        raise ValueError(f"{path}: not a valid dataset.json ({exc.errors()[0]['msg']})") from None
    check_version(meta.schema_version, where=path)
    return meta


def _query_files(mesh: Path) -> list[Path]:
    """The mesh and the files it comes with, all in its folder."""
    files = [mesh]
    stem = mesh.stem
    for p in sorted(mesh.parent.iterdir()):
        if p != mesh and p.stem == stem and p.suffix.lower() in _SIBLING_SUFFIXES and p.is_file():
            files.append(p)
    if mesh.suffix.lower() == ".obj":
        om = read_obj(mesh)
        mtl = mesh.parent / om.mtllib if om.mtllib and "/" not in om.mtllib else None
        if mtl is not None and mtl.is_file():
            files.append(mtl)
            tex = parse_mtl(mtl.read_bytes(), str(mtl))
            if tex and "/" not in tex.replace("\\", "/") and (mesh.parent / tex).is_file():
                files.append(mesh.parent / tex)
    return list(dict.fromkeys(files))


def _config(meta: DatasetMetadata, source_root: str, where: str) -> BuildConfig:
    """The build settings that reproduce ``meta``'s rendering for one static mesh."""
    odd = [
        v.index
        for v in meta.views
        if abs(v.fov_y - DEFAULT_FOV_Y) > 1e-9 or abs(v.distance - DEFAULT_DISTANCE) > 1e-9
    ]
    if odd or abs(meta.depth_scale_mm - DEFAULT_DEPTH_SCALE_MM) > 1e-12:
        raise ValueError(
            f"{where}: its cameras (fov, distance) or depth scale are not the build's defaults, "
            "which a query render can reproduce"
        )
    return BuildConfig(
        source="meshdir",
        source_root=source_root,
        kind="static",
        views=tuple((v.yaw, v.pitch) for v in meta.views),
        modalities=tuple(meta.modalities),
        image_size=meta.image_size,
        samples_per_shard=1,
        num_folds=2,
        seed=0,
        split=meta.split,
        jpeg_quality=meta.jpeg_quality,
        name="mesh-query",
    )


def mesh_shards(mesh: str | Path, like: str, out: str | Path) -> str:
    """Render ``mesh`` with the rig of the shard directory ``like`` into ``out`` (a new or empty
    directory): a shard directory holding that one sample. Returns ``out``.

    A ``ValueError`` names the file when the mesh is not an OBJ/PLY/WRL file, does not read, or
    renders blank (the build's failure reason)."""
    mesh = Path(mesh)
    if not mesh.is_file():
        raise ValueError(f"{mesh}: no such mesh file")
    if mesh.suffix.lower() not in MESH_SUFFIXES:
        raise ValueError(f"{mesh}: not a mesh file ({', '.join(MESH_SUFFIXES)})")
    meta = read_dataset_meta(like)
    with tempfile.TemporaryDirectory(prefix="mesh-query-") as src:
        for p in _query_files(mesh):
            shutil.copyfile(p, Path(src) / p.name)
        cfg = _config(meta, src, like)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            summary: BuildSummary = pool.submit(build, cfg, str(out), workers=1).result()
    if summary.num_written != 1:
        reasons = [
            f"{r.error_kind}: {r.error_message}"
            for name in list_shards(str(out), committed_only=False)
            for r in read_shard_rows(str(out), name)
            if r.status == "failed"
        ]
        reasons += [f"{e.kind}: {e.message}" for e in summary.scan_errors]
        why = "; ".join(reasons) or "no sample was written"
        raise ValueError(f"{mesh}: cannot be rendered as a query ({why})")
    return str(out)
