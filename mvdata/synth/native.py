"""Write a synthetic set in the native layout of a real dataset, so that every reader in
:mod:`mvdata.sources` is tested on files shaped like the real ones.

``write_native(fmt, meshes, out_dir)`` takes the meshes of :func:`mvdata.synth.generate.iter_synth`
(static scans and sequence frames) and writes those the layout can hold:

* ``bu3dfe`` (static scans): ``F0001/F0001_HA03WH_F3D.wrl`` + ``.bmp`` + ``.bnd``. The 83
  ``.bnd`` rows follow the *guessed* BU layout (:data:`BND_FROM_IBUG`), made from the synthetic
  ibug landmarks (index = nearest mesh vertex); rows the face model has no point for are mesh
  vertices at evenly spaced indices.
* ``bu4dfe`` (sequences, not neutral): ``F001/Happy/000.wrl`` + ``000.jpg`` + ``000.bnd``
  (odd frames end the ``.bnd`` with the empty line some real files have).
* ``bosphorus`` (static): ``bs000/bs000_E_HAPPY_0.bnt`` + ``.png`` + ``.lm3`` + ``.lm2``; the
  depth grid is made by an orthographic z-buffer rasteriser (:func:`depth_grid`) at 0.77 mm,
  row 0 at the bottom, texture v growing down the image rows (the real files' convention);
  odd subjects leave x/y of background points unset (grid coordinates), even ones set them to
  zmin too, as real files vary. The ``.lm3``/``.lm2`` carry the 22 labels of a real file in
  words, in its order (:func:`bosphorus_landmarks`); ``.lm2`` points are texture pixels, y down.
* ``coma`` (sequences): ``FaceTalk_170725_00001_TA/<category>/<category>.000001.ply``, binary
  PLY for odd subjects, ASCII for even ones. Expressions stand in for CoMA's motion categories
  through :data:`COMA_CATEGORY` (an arbitrary but fixed choice; only high_smile reads back as an
  emotion).
* ``facescape`` (static): ``1/models_reg/2_smile.obj`` + ``.mtl`` + ``.jpg``; one scan per
  subject and FaceScape expression (the highest intensity of the synthetic expression).
* ``meshdir`` (everything): ``S0001/S0001_HA03.ply`` (sequence frames ``S0001_happiness_f003``)
  with a per-subject ``texture.png`` named in the PLY header, and ``labels.csv`` at the root.

VRML number formatting varies on purpose: even subjects ``", "`` separators one point a line
(``%.6f``), odd subjects space separators with line breaks through points (``%.9g``), with
header comments of varying length.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mvdata.core import Mesh
from mvdata.formats.bnt import BntGrid, write_bnt
from mvdata.formats.landmarks import write_bnd, write_lm2, write_lm3
from mvdata.formats.obj import write_obj
from mvdata.formats.ply import write_ply
from mvdata.formats.vrml import write_vrml
from mvdata.io import atomic_write
from mvdata.sources.conventions.bosphorus import EMOTION_CODES as BOSPHORUS_CODES
from mvdata.sources.conventions.bu3dfe import BU_CODES
from mvdata.sources.conventions.bu4dfe import FOLDER_OF as BU4_FOLDERS
from mvdata.synth.generate import SynthMesh
from schemas.landmarks import (
    BOSPHORUS_LABELS,
    BOSPHORUS_TO_CANONICAL,
    IBUG_TO_CANONICAL,
    ibug_id,
)

__all__ = [
    "BND_FROM_IBUG",
    "NATIVE_FORMATS",
    "DepthGrid",
    "bnd_rows",
    "bosphorus_landmarks",
    "depth_grid",
    "write_native",
]

NATIVE_FORMATS = ("bu3dfe", "bu4dfe", "bosphorus", "coma", "facescape", "meshdir")

# The writers' name maps are the readers' code tables inverted (mvdata.sources.conventions);
# CoMA's and FaceScape's have no emotion for most codes, so a stand-in code is chosen here.
COMA_CATEGORY = {
    "neutral": "eyebrow",
    "anger": "bareteeth",
    "disgust": "lips_up",
    "fear": "mouth_side",
    "happiness": "high_smile",
    "sadness": "mouth_down",
    "surprise": "mouth_extreme",
}
FACESCAPE_NAME = {
    "neutral": "1_neutral",
    "happiness": "2_smile",
    "anger": "4_anger",
    "sadness": "14_sadness",
    "surprise": "3_mouth_stretch",
    "fear": "19_brow_raiser",
    "disgust": "20_brow_lower",
}
BNT_SPACING_MM = 0.77
BNT_ZMIN = -1e9
BND_ROWS = 83


def _image_bytes(img: NDArray[np.uint8], fmt: str) -> bytes:
    buf = io.BytesIO()
    kw = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write_image(path: Path, img: NDArray[np.uint8] | None, fmt: str) -> int:
    if img is None:
        return 0
    atomic_write(path, _image_bytes(img, fmt))
    return 1


def _plain(mesh: Mesh) -> Mesh:
    """``mesh`` without vertex colours (BU / FaceScape files carry a texture only)."""
    return Mesh(mesh.vertices, mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces)


def _nearest_vertex(verts: NDArray[np.floating], pts: NDArray[np.floating]) -> NDArray[np.int64]:
    d = ((pts[:, None, :].astype(np.float64) - verts[None, :, :]) ** 2).sum(-1)
    return np.asarray(d.argmin(1), dtype=np.int64)


#: The guessed BU ``.bnd`` layout (:data:`schemas.landmarks.BND_TO_CANONICAL` and its ring rule:
#: every ring starts at its image-leftmost point and runs clockwise in the image), row by row,
#: as the ibug-68 ids whose mean stands for the row. ibug draws each brow as one line and marks
#: only the midline of the nose bridge, so the brows' lower edges repeat their upper edges and
#: the bridge's sides are midline points averaged with a point of that side: approximations
#: for rows no mapping reads. A row whose ids the face model lacks (the SFM has no jaw contour
#: and no inner mouth corners) falls back to :data:`_BND_FALLBACK`, else to a padding vertex.
BND_FROM_IBUG: tuple[tuple[int, ...], ...] = (
    # 0-7 the subject's right eye: outer corner, upper lid outer->inner, inner, lower inner->outer
    *((37,), (38,), (38, 39), (39,), (40,), (41,), (41, 42), (42,)),
    # 8-15 the left eye: inner corner, upper lid inner->outer, outer corner, lower outer->inner
    *((43,), (44,), (44, 45), (45,), (46,), (47,), (47, 48), (48,)),
    # 16-25 the right brow: outer end, upper edge, inner end (21), lower edge back to the outer
    *((18,), (19,), (20,), (21,), (21, 22), (22,), (21, 22), (21,), (20,), (19,)),
    # 26-35 the left brow: inner end, upper edge, outer end (31), lower edge back to the inner
    *((23,), (24,), (25,), (26,), (26, 27), (27,), (26, 27), (26,), (25,), (24,)),
    # 36-38 / 39-41 the right / left side of the nose bridge, top first
    *((28, 40), (29, 32), (30, 32), (28, 43), (29, 36), (30, 36)),
    # 42-47 the nose base from the right ala to the left ala
    *((32,), (33,), (33, 34), (34, 35), (35,), (36,)),
    # 48-59 the outer lip as ibug 49-60; 60-67 the inner lip as ibug 61-68
    *((i,) for i in range(49, 69)),
    # 68-82 the face contour ear to ear as ibug 2-16 (75 = the chin, ibug 9)
    *((i,) for i in range(2, 17)),
)
#: Stand-ins for ibug ids a face model may lack: the inner mouth corners by the outer ones.
_BND_FALLBACK = {61: 49, 65: 55}


def bnd_rows(mesh: Mesh) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The 83 ``.bnd`` rows of a mesh with ibug-named landmarks, in the guessed BU layout
    (:data:`BND_FROM_IBUG`), each with its nearest mesh vertex as the index; rows the face model
    has no point for are mesh vertices at evenly spaced indices (their own coordinates)."""
    ibug: dict[int, NDArray[np.float64]] = {}
    if mesh.landmarks is not None:
        for name, pos in zip(mesh.landmark_names, mesh.landmarks, strict=True):
            if (i := ibug_id(name)) is not None:
                ibug[i] = pos.astype(np.float64)
    pad = np.linspace(0, mesh.num_vertices - 1, BND_ROWS).round().astype(np.int64)
    pts = mesh.vertices[pad].astype(np.float64)
    idx = pad.copy()
    for row, ids in enumerate(BND_FROM_IBUG):
        found = [ibug[i] for i in ids if i in ibug] or [
            ibug[_BND_FALLBACK[i]] for i in ids if _BND_FALLBACK.get(i) in ibug
        ]
        if found:
            pts[row] = np.mean(found, axis=0)
            idx[row] = _nearest_vertex(mesh.vertices, pts[row : row + 1])[0]
    return pts, idx


def _write_styled_vrml(path: Path, mesh: Mesh, texture: str, variant: int) -> None:
    if variant % 2 == 0:
        write_vrml(path, mesh, texture, "comma", "%.6f", ("Produced by mvdata",))
    else:
        comments = tuple(f"header line {i}" for i in range(3 + variant % 5))
        write_vrml(path, mesh, texture, "space", "%.9g", comments)


@dataclass
class DepthGrid:
    """An orthographic depth image seen from +z: cell (r, c) at ``(x0 + c*s, y0 + r*s)``."""

    z: NDArray[np.float64]
    u: NDArray[np.float64]
    v: NDArray[np.float64]
    covered: NDArray[np.bool_]
    x0: float
    y0: float


def depth_grid(mesh: Mesh, spacing: float = BNT_SPACING_MM, zmin: float = BNT_ZMIN) -> DepthGrid:
    """Orthographic depth grid of ``mesh`` seen from +z: z-buffer rasterisation in numpy.

    ``z`` (rows, cols) holds ``zmin`` where no triangle covers a cell; ``u``/``v`` are
    interpolated from the mesh's UVs; row 0 is the bottom.
    Every (triangle, cell) pair inside a triangle's bounding box is tested at once with
    barycentric coordinates; the nearest (largest z) hit wins each cell.
    """
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces.astype(np.int64)
    x0, y0 = float(v[:, 0].min()), float(v[:, 1].min())
    ncols = int(np.floor((v[:, 0].max() - x0) / spacing)) + 1
    nrows = int(np.floor((v[:, 1].max() - y0) / spacing)) + 1
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    tx = np.stack([a[:, 0], b[:, 0], c[:, 0]], 1)
    ty = np.stack([a[:, 1], b[:, 1], c[:, 1]], 1)
    c0 = np.ceil((tx.min(1) - x0) / spacing - 1e-9).astype(np.int64)
    c1 = np.floor((tx.max(1) - x0) / spacing + 1e-9).astype(np.int64)
    r0 = np.ceil((ty.min(1) - y0) / spacing - 1e-9).astype(np.int64)
    r1 = np.floor((ty.max(1) - y0) / spacing + 1e-9).astype(np.int64)
    w = np.maximum(c1 - c0 + 1, 0)
    h = np.maximum(r1 - r0 + 1, 0)
    n = w * h
    tri = np.repeat(np.arange(len(f)), n)
    local = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    cc = c0[tri] + local % w[tri]
    rr = r0[tri] + local // w[tri]
    px = x0 + cc * spacing
    py = y0 + rr * spacing
    # barycentric coordinates in the xy plane
    ax, ay, bx, by, cx, cy = tx[tri, 0], ty[tri, 0], tx[tri, 1], ty[tri, 1], tx[tri, 2], ty[tri, 2]
    den = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    l1 = ((by - cy) * (px - cx) + (cx - bx) * (py - cy)) / den
    l2 = ((cy - ay) * (px - cx) + (ax - cx) * (py - cy)) / den
    l3 = 1.0 - l1 - l2
    eps = -1e-9
    inside = ok & (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
    tri, rr, cc, l1, l2, l3 = (
        tri[inside],
        rr[inside],
        cc[inside],
        l1[inside],
        l2[inside],
        l3[inside],
    )
    z = l1 * a[tri, 2] + l2 * b[tri, 2] + l3 * c[tri, 2]
    cell = rr * ncols + cc
    order = np.lexsort((z, cell))  # per cell, the largest z (nearest to a +z viewer) last
    cell, z, tri = cell[order], z[order], tri[order]
    l1, l2, l3 = l1[order], l2[order], l3[order]
    last = np.ones(len(cell), bool)
    last[:-1] = cell[1:] != cell[:-1]
    zg = np.full(nrows * ncols, zmin)
    ug = np.zeros(nrows * ncols)
    vg = np.zeros(nrows * ncols)
    zg[cell[last]] = z[last]
    if mesh.uvs is not None and mesh.uv_faces is not None:
        uvf = mesh.uv_faces.astype(np.int64)[tri[last]]
        uv = mesh.uvs.astype(np.float64)
        lw = np.stack([l1[last], l2[last], l3[last]], 1)
        ug[cell[last]] = (uv[uvf, 0] * lw).sum(1)
        vg[cell[last]] = (uv[uvf, 1] * lw).sum(1)
    covered = zg != zmin
    shape = (nrows, ncols)
    return DepthGrid(
        zg.reshape(shape), ug.reshape(shape), vg.reshape(shape), covered.reshape(shape), x0, y0
    )


def bnt_grid(mesh: Mesh, texture_name: str, xy_background_zmin: bool) -> BntGrid:
    """A :class:`BntGrid` of ``mesh`` (see :func:`depth_grid`), in the real files' convention:
    row 0 at the bottom, and texture v growing DOWN the image rows (``1 - v`` of the mesh's
    OpenGL v), as reported from a real ``.bnt`` (see :mod:`mvdata.formats.bnt`)."""
    g = depth_grid(mesh)
    z, u, covered, x0, y0 = g.z, g.u.copy(), g.covered, g.x0, g.y0
    v = 1.0 - g.v
    nrows, ncols = z.shape
    xs = x0 + np.arange(ncols) * BNT_SPACING_MM
    ys = y0 + np.arange(nrows) * BNT_SPACING_MM
    x = np.broadcast_to(xs[None, :], z.shape).copy()
    y = np.broadcast_to(ys[:, None], z.shape).copy()
    if xy_background_zmin:
        x[~covered] = BNT_ZMIN
        y[~covered] = BNT_ZMIN
    u[~covered] = BNT_ZMIN if xy_background_zmin else 0.0
    v[~covered] = BNT_ZMIN if xy_background_zmin else 0.0
    return BntGrid(x, y, z, u, v, BNT_ZMIN, texture_name)


def _write_bu3dfe(sm: SynthMesh, out: Path) -> int:
    subj = f"{sm.sex}{sm.identity_index + 1:04d}"
    code = BU_CODES[sm.expression]
    stem = f"{subj}_{code}{sm.intensity:02d}{sm.ethnicity}_F3D"
    base = out / subj / stem
    if base.with_suffix(".wrl").exists():
        raise ValueError(f"{base}.wrl: two synthetic scans map to the same BU-3DFE name")
    mesh = sm.mesh
    _write_styled_vrml(base.with_suffix(".wrl"), _plain(mesh), f"{stem}.bmp", sm.identity_index)
    pts, idx = bnd_rows(mesh)
    write_bnd(base.with_suffix(".bnd"), pts, idx)
    return 2 + _write_image(base.with_suffix(".bmp"), mesh.texture, "BMP")


def _write_bu4dfe(sm: SynthMesh, out: Path) -> int:
    folder = BU4_FOLDERS.get(sm.expression)
    if folder is None:
        return 0  # BU-4DFE has no neutral sequences
    base = out / f"{sm.sex}{sm.identity_index + 1:03d}" / folder / f"{sm.frame:03d}"
    mesh = sm.mesh
    variant = sm.identity_index + sm.frame
    _write_styled_vrml(base.with_suffix(".wrl"), _plain(mesh), f"{sm.frame:03d}.jpg", variant)
    pts, idx = bnd_rows(mesh)
    write_bnd(base.with_suffix(".bnd"), pts, idx, trailing_empty_line=sm.frame % 2 == 1)
    return 2 + _write_image(base.with_suffix(".jpg"), mesh.texture, "JPEG")


# canonical landmark -> its ibug-68 id (the synthetic meshes' landmark names are "ibugNN")
_IBUG_OF = {canon: ibug for ibug, canon in IBUG_TO_CANONICAL.items()}

#: The Bosphorus points with no ibug-68 counterpart, "Nose saddle left/right" (read as the two
#: sides of the nasal bridge, a guess: see :mod:`schemas.landmarks`): the mesh vertex nearest to
#: the midpoint of the bridge top (ibug 28) and that side's inner eye corner (ibug 40 / 43).
BOSPHORUS_SADDLE_FROM = {"nose_saddle_right": (28, 40), "nose_saddle_left": (28, 43)}


def bosphorus_landmarks(mesh: Mesh) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The Bosphorus ``.lm3`` points of a synthetic mesh: the 22 labels of a real file, in
    their order (:data:`schemas.landmarks.BOSPHORUS_LABELS`), from its ``ibugNN`` landmarks.

    Each label goes through its canonical name (:data:`schemas.landmarks.BOSPHORUS_TO_CANONICAL`,
    where Bosphorus "left" is read as the subject's right, so "left" points get the smaller x as
    in the real files seen) to the ibug point of the same name; the two nose saddles come from
    :data:`BOSPHORUS_SADDLE_FROM`. A label whose source points are missing is left out, as real
    scans can carry fewer than 22 points. Returns ``(points (L, 3), labels)``; L may be 0.
    """
    rows: dict[int, NDArray[np.float64]] = {}
    if mesh.landmarks is not None:
        for name, pos in zip(mesh.landmark_names, mesh.landmarks, strict=True):
            if name.startswith("ibug") and name[4:].isdigit():
                rows.setdefault(int(name[4:]), pos.astype(np.float64))
    pts: list[NDArray[np.float64]] = []
    labels: list[str] = []
    for label in BOSPHORUS_LABELS:
        canon = BOSPHORUS_TO_CANONICAL[label.lower()]
        if canon in _IBUG_OF and _IBUG_OF[canon] in rows:
            pts.append(rows[_IBUG_OF[canon]])
        elif canon in BOSPHORUS_SADDLE_FROM and all(
            i in rows for i in BOSPHORUS_SADDLE_FROM[canon]
        ):
            a, b = BOSPHORUS_SADDLE_FROM[canon]
            mid = ((rows[a] + rows[b]) / 2).astype(np.float32)[None]
            pts.append(mesh.vertices[_nearest_vertex(mesh.vertices, mid)[0]].astype(np.float64))
        else:
            continue
        labels.append(label)
    return np.asarray(pts, np.float64).reshape(-1, 3), tuple(labels)


def _write_bosphorus(sm: SynthMesh, out: Path, takes: dict[str, int]) -> int:
    subj = f"bs{sm.identity_index:03d}"
    cat, code = ("N", "N") if sm.expression == "neutral" else ("E", BOSPHORUS_CODES[sm.expression])
    k = takes.get(f"{subj}_{cat}_{code}", 0)
    takes[f"{subj}_{cat}_{code}"] = k + 1
    stem = f"{subj}_{cat}_{code}_{k}"
    base = out / subj / stem
    mesh = sm.mesh
    write_bnt(base.with_suffix(".bnt"), bnt_grid(mesh, f"{stem}.png", sm.identity_index % 2 == 0))
    n = 1 + _write_image(base.with_suffix(".png"), mesh.texture, "PNG")
    points, names = bosphorus_landmarks(mesh)
    if names:
        write_lm3(base.with_suffix(".lm3"), points, names)
        if mesh.texture is not None and mesh.uvs is not None and len(mesh.uvs) == mesh.num_vertices:
            # .lm2: texture pixels with y DOWN the image rows (the mesh's OpenGL v is up)
            hgt, wid = mesh.texture.shape[:2]
            uv = mesh.uvs[_nearest_vertex(mesh.vertices, points)].astype(np.float64)
            px = np.stack([uv[:, 0] * wid, (1.0 - uv[:, 1]) * hgt], 1)
            write_lm2(base.with_suffix(".lm2"), px, names)
            n += 1
        n += 1
    return n


def _write_coma(sm: SynthMesh, out: Path) -> int:
    cat = COMA_CATEGORY[sm.expression]
    subj = f"FaceTalk_170725_{sm.identity_index + 1:05d}_TA"
    path = out / subj / cat / f"{cat}.{sm.frame + 1:06d}.ply"
    m = sm.mesh
    mesh = Mesh(m.vertices, m.faces, vertex_colors=m.vertex_colors)  # CoMA: no texture
    write_ply(path, mesh, binary=sm.identity_index % 2 == 1)
    return 1


def _write_facescape(sm: SynthMesh, out: Path) -> int:
    name = FACESCAPE_NAME[sm.expression]
    base = out / str(sm.identity_index + 1) / "models_reg" / name
    write_obj(base.with_suffix(".obj"), _plain(sm.mesh), f"{name}.jpg")
    return 2 + _write_image(base.with_suffix(".jpg"), sm.mesh.texture, "JPEG")


def _write_meshdir(sm: SynthMesh, out: Path, rows: list[dict[str, str]], textures: set[str]) -> int:
    stem = sm.sequence if sm.kind == "static" else f"{sm.sequence}_f{sm.frame:03d}"
    rel = f"{sm.subject}/{stem}.ply"
    n = 0
    tex = None
    if sm.mesh.texture is not None:
        tex = "texture.png"
        if sm.subject not in textures:
            n += _write_image(out / sm.subject / tex, sm.mesh.texture, "PNG")
            textures.add(sm.subject)
    write_ply(out / rel, sm.mesh, binary=True, texture_file=tex)
    rows.append(
        {
            "path": rel,
            "subject": sm.subject,
            "expression": sm.expression,
            "intensity": str(sm.intensity),
        }
    )
    return n + 1


def write_native(fmt: str, meshes: Iterable[SynthMesh], out_dir: Path) -> int:
    """Write ``meshes`` in dataset layout ``fmt`` under ``out_dir``; return the number of
    meshes written (each with its texture and landmark files; ``labels.csv`` not counted).

    Meshes the layout cannot hold (sequences for static datasets and the reverse, FaceScape's
    lower intensities) are skipped and not counted. Each file is written atomically.
    """
    if fmt not in NATIVE_FORMATS:
        raise ValueError(f"unknown native format {fmt!r}; known: {', '.join(NATIVE_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    takes: dict[str, int] = {}
    rows: list[dict[str, str]] = []
    textures: set[str] = set()
    best: dict[tuple[str, str], SynthMesh] = {}  # facescape: highest intensity per subject+name
    subject = None
    for sm in meshes:
        static = sm.kind == "static"
        if fmt == "bu3dfe" and static:
            count += _write_bu3dfe(sm, out) > 0
        elif fmt == "bu4dfe" and not static:
            count += _write_bu4dfe(sm, out) > 0
        elif fmt == "bosphorus" and static:
            count += _write_bosphorus(sm, out, takes) > 0
        elif fmt == "coma" and not static:
            count += _write_coma(sm, out) > 0
        elif fmt == "facescape" and static:
            if subject is not None and sm.subject != subject:
                count += sum(_write_facescape(s, out) > 0 for s in best.values())
                best.clear()
            subject = sm.subject
            key = (sm.subject, sm.expression)
            if key not in best or sm.intensity >= best[key].intensity:
                best[key] = sm
        elif fmt == "meshdir":
            count += _write_meshdir(sm, out, rows, textures) > 0
    if fmt == "facescape":
        count += sum(_write_facescape(s, out) > 0 for s in best.values())
    if fmt == "meshdir":
        buf = io.StringIO()
        wr = csv.DictWriter(
            buf, ["path", "subject", "expression", "intensity"], lineterminator="\n"
        )
        wr.writeheader()
        wr.writerows(rows)
        atomic_write(out / "labels.csv", buf.getvalue().encode("utf-8"))
    return count
