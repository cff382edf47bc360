"""Write a synthetic set: mvdata's own layout (meshes + ``metadata.parquet``) or a dataset's
native layout (:mod:`mvdata.synth.native`), plus ``synth.json``, into a temporary directory
beside the target that is renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from mvdata import __version__
from mvdata.formats.obj import write_obj
from mvdata.formats.ply import write_ply
from mvdata.io import atomic_write_json
from mvdata.sources.conventions.synthetic import LICENCE as SYNTH_LICENCE
from mvdata.synth.facemodel import FaceModel
from mvdata.synth.generate import SynthConfig, SynthMesh, expected_mesh_count, iter_synth
from mvdata.synth.native import NATIVE_FORMATS, write_native
from schemas.models import SynthMetadata, SynthRow
from schemas.tables import frame_from_rows

MeshFormat = Literal["ply", "obj"]

# What each native layout holds (see mvdata.synth.native), and how many identities its subject
# names can number (BU-3DFE F0001..F9999, BU-4DFE F001..F999, Bosphorus bs000..bs999).
_HOLDS = {
    "bu3dfe": ("static scans", 9999),
    "bu4dfe": ("sequences", 999),
    "bosphorus": ("static scans", 1000),
    "coma": ("sequences", None),
    "facescape": ("static scans", None),
    "meshdir": ("static scans and sequences", None),
}


def native_mesh_count(fmt: str, cfg: SynthConfig) -> int:
    """How many of the meshes ``cfg`` generates the layout ``fmt`` holds (``"default"``: all).

    BU-3DFE, Bosphorus: the static scans; FaceScape: one scan per subject and expression (its
    highest intensity); BU-4DFE, CoMA: the sequence frames; meshdir: everything."""
    if fmt in ("default", "meshdir"):
        return expected_mesh_count(cfg)
    non_neutral = [e for e in cfg.expressions if e != "neutral"]
    static = len(non_neutral) * len(cfg.intensities) + ("neutral" in cfg.expressions)
    per_identity = {
        "bu3dfe": static if cfg.static else 0,
        "bosphorus": static if cfg.static else 0,
        "facescape": len(set(cfg.expressions)) if cfg.static else 0,
        "bu4dfe": len(non_neutral) * cfg.num_frames if cfg.sequences else 0,
        "coma": len(non_neutral) * cfg.num_frames if cfg.sequences else 0,
    }[fmt]
    return per_identity * cfg.num_identities


def check_format(fmt: str, cfg: SynthConfig) -> None:
    """``ValueError`` (one message) when layout ``fmt`` cannot hold anything ``cfg`` asks for,
    or cannot name its identities; called before anything is generated."""
    if fmt == "default":
        return
    if fmt not in NATIVE_FORMATS:
        raise ValueError(
            f"unknown format {fmt!r}: use default or one of {', '.join(NATIVE_FORMATS)}"
        )
    holds, max_ids = _HOLDS[fmt]
    if native_mesh_count(fmt, cfg) == 0:
        if holds == "sequences" and cfg.sequences:
            why = "sequences need an expression other than neutral"
        elif holds == "sequences":
            why = "this set has none (enable sequences: --sequences)"
        else:
            why = "this set has none (enable static scans: --static)"
        raise ValueError(
            f"the {fmt} layout holds {holds} only, and {why}: nothing would be written"
        )
    if max_ids is not None and cfg.num_identities > max_ids:
        raise ValueError(
            f"the {fmt} layout names at most {max_ids} subjects; asked for {cfg.num_identities}"
        )


# --------------------------------------------------------------------------- writing
def _write_default(
    cfg: SynthConfig,
    model: FaceModel,
    out: Path,
    mesh_format: MeshFormat,
    progress: Callable[[int], None],
) -> int:
    rows: list[SynthRow] = []
    written_textures: set[str] = set()
    for sm in iter_synth(cfg, model):
        tex_rel = f"textures/{sm.subject}.png"
        if tex_rel not in written_textures:
            (out / "textures").mkdir(exist_ok=True)
            assert sm.mesh.texture is not None
            Image.fromarray(sm.mesh.texture).save(out / tex_rel, format="PNG")
            written_textures.add(tex_rel)
        if sm.kind == "static":
            rel = f"static/{sm.subject}/{sm.sequence}.{mesh_format}"
        else:
            rel = f"sequences/{sm.subject}/{sm.expression}/{sm.frame:03d}.{mesh_format}"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tex_from_mesh = os.path.relpath(out / tex_rel, path.parent)
        if mesh_format == "ply":
            write_ply(path, sm.mesh, texture_file=tex_from_mesh)
        else:
            write_obj(path, sm.mesh, tex_from_mesh)
        assert sm.mesh.landmarks is not None
        rows.append(
            SynthRow(
                subject=sm.subject,
                identity_index=sm.identity_index,
                kind=sm.kind,
                sequence=sm.sequence,
                expression=sm.expression,
                intensity=sm.intensity,
                frame=sm.frame,
                num_frames=sm.num_frames,
                fps=sm.fps,
                expression_weight=round(sm.expression_weight, 6),
                phase=sm.phase,
                mesh_path=rel,
                texture_path=tex_rel,
                face_model=sm.face_model,
                registered=sm.registered,
                num_vertices=sm.mesh.num_vertices,
                landmark_names=list(sm.mesh.landmark_names),
                landmarks=np.round(sm.mesh.landmarks.astype(np.float64), 4).tolist(),
            )
        )
        progress(1)
    frame = frame_from_rows(SynthRow, rows)
    frame.write_parquet(out / "metadata.parquet", statistics=False)
    return len(rows)


def prepare_output_dir(out: Path, overwrite: bool) -> Path:
    """Check ``out`` can be written; return a fresh temporary sibling to build into."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out}: output directory is not empty (use --overwrite to replace it)"
        )
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(
            f"{parent}: cannot create the output's parent directory: {exc}"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{parent}: not writable")
    tmp = parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def commit_output_dir(tmp: Path, out: Path) -> None:
    """Move the finished temporary directory into place (replacing ``out`` if it existed)."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_synth` wrote: ``num_meshes`` mesh files (counted as written), of
    ``num_generated`` meshes generated (fewer when the layout holds only part of them)."""

    out_dir: Path
    face_model: str
    fmt: str
    num_meshes: int
    num_subjects: int
    num_generated: int = 0


def write_synth(
    cfg: SynthConfig,
    model: FaceModel,
    out_dir: Path,
    *,
    fmt: str = "default",
    mesh_format: MeshFormat = "ply",
    overwrite: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> SynthSummary:
    """Generate the set and write it atomically to ``out_dir``.

    ``fmt="default"`` writes mvdata's own layout (``metadata.parquet``, ``synth.json``,
    ``static/``, ``sequences/``, ``textures/``); any name in ``mvdata.synth.native.NATIVE_FORMATS``
    writes that dataset's native layout instead (plus ``synth.json``). A layout that cannot
    hold anything of ``cfg`` is refused before anything is generated (:func:`check_format`).
    """
    if mesh_format not in ("ply", "obj"):
        raise ValueError(f"unknown mesh format {mesh_format!r}: use ply or obj")
    check_format(fmt, cfg)
    out_dir = Path(out_dir)
    tmp = prepare_output_dir(out_dir, overwrite)
    try:
        if fmt == "default":
            count = _write_default(cfg, model, tmp, mesh_format, progress)
        else:

            def counted() -> Iterator[SynthMesh]:
                for sm in iter_synth(cfg, model):
                    yield sm
                    progress(1)

            count = write_native(fmt, counted(), tmp)
        meta = SynthMetadata(
            generator_version=__version__,
            face_model=model.name,
            face_model_sha256=model.sha256,
            seed=cfg.seed,
            num_identities=cfg.num_identities,
            expressions=list(cfg.expressions),
            intensities=list(cfg.intensities),
            static=cfg.static,
            sequences=cfg.sequences,
            registered_sequences=cfg.registered,
            fps=cfg.fps,
            pose_jitter_deg=cfg.pose_jitter_deg,
            noise_mm=cfg.noise_mm,
            mesh_format=mesh_format,
            num_meshes=count,
            licence=SYNTH_LICENCE,
        )
        atomic_write_json(tmp / "synth.json", meta.model_dump())
        commit_output_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthSummary(
        out_dir, model.name, fmt, count, cfg.num_identities, expected_mesh_count(cfg)
    )
