"""Parse rate of each format reader against a numpy floor on the same numbers.

Run: ``.venv/bin/python bench/bench_readers.py``. Writes ``bench/results/readers.json`` and
prints it. Each reader is timed end to end (file bytes -> validated Mesh arrays), best of
``REPEATS``; the floor is numpy parsing only the numbers of the same file (``np.fromstring`` on
the pre-extracted text blocks, ``np.fromfile`` for binary), so ``ratio = reader / floor`` says
what the reader's extra work (finding nodes, validation, triangulation) costs.
Sizes follow the real data: BU-4DFE frame ~35k vertices (VRML), Bosphorus 233x186 grid,
CoMA 5,023-vertex PLY, FaceScape ~26k-vertex OBJ.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from mvdata.core import Mesh
from mvdata.formats.bnt import BntGrid, bnt_to_mesh, read_bnt, write_bnt
from mvdata.formats.landmarks import read_bnd, write_bnd
from mvdata.formats.obj import read_obj, write_obj
from mvdata.formats.ply import read_ply, write_ply
from mvdata.formats.vrml import read_vrml, write_vrml
from mvdata.io import atomic_write_json
from mvdata.synth.native import depth_grid

REPEATS = 5
OUT = Path(__file__).parent / "results" / "readers.json"


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def grid_mesh(rows: int, cols: int, seed: int = 0) -> Mesh:
    """A face-sized height field (mm) with per-vertex UVs and colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    x, y = x * 160 / cols - 80, y * 200 / rows - 100
    z = 60 * np.exp(-(x**2 + y**2) / 6000) + rng.normal(0, 0.05, x.shape)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = (
        idx[:-1, :-1].ravel(),
        idx[:-1, 1:].ravel(),
        idx[1:, :-1].ravel(),
        idx[1:, 1:].ravel(),
    )
    f = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    uv = np.stack([(x.ravel() + 80) / 160, (y.ravel() + 100) / 200], 1)
    col = rng.integers(0, 256, (len(v), 3))
    return Mesh(
        v.astype(np.float32),
        f.astype(np.int32),
        vertex_colors=col.astype(np.uint8),
        uvs=uv.astype(np.float32),
    )


def _vrml_mesh(p: Path) -> Mesh:
    return read_vrml(p).mesh


def _ply_mesh(p: Path) -> Mesh:
    return read_ply(p).mesh


def floor_text(blocks: list[str], ints: tuple[bool, ...] = ()) -> Callable[[], object]:
    """numpy parsing only the number blocks (already extracted, commas already spaces);
    blocks flagged in ``ints`` are parsed as int64 (as the readers do), the others as float64."""
    flags = ints or (False,) * len(blocks)
    dts = [np.int64 if i else np.float64 for i in flags]
    return lambda: [np.fromstring(b, dtype=dt, sep=" ") for b, dt in zip(blocks, dts, strict=True)]


def vrml_blocks(text: str) -> list[str]:
    """Every number block of the file (coord and texCoord points, both index lists)."""
    out = []
    for key in ("point [", "coordIndex [", "texCoordIndex ["):  # floats first, then ints
        start = 0
        while (i := text.find(key, start)) >= 0:
            j = text.index("]", i)
            out.append(text[i + len(key) : j].replace(",", " "))
            start = j
    return out


def row(
    name: str,
    path: Path,
    reader: Callable[[], Mesh],
    floor: Callable[[], object],
    floor_what: str,
    mesh: Mesh,
) -> dict[str, object]:
    t = best(reader)
    tf = best(floor)
    mb = path.stat().st_size / 1e6
    return {
        "format": name,
        "file_mb": round(mb, 3),
        "vertices": mesh.num_vertices,
        "faces": mesh.num_faces,
        "reader_s": round(t, 5),
        "reader_mb_per_s": round(mb / t, 1),
        "reader_meshes_per_s": round(1 / t, 1),
        "floor_s": round(tf, 5),
        "floor": floor_what,
        "ratio_reader_over_floor": round(t / tf, 2),
    }


def main() -> dict[str, object]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        m35 = grid_mesh(200, 175)  # 35,000 vertices: a BU-4DFE frame
        plain = Mesh(m35.vertices, m35.faces, uvs=m35.uvs)
        for style, fmt in (("comma", "%.6f"), ("space", "%.9g")):
            p = tmp / f"{style}.wrl"
            write_vrml(p, plain, "000.jpg", style, fmt)  # type: ignore[arg-type]
            blocks = vrml_blocks(p.read_text())
            rows.append(
                row(
                    f"vrml-{style} (BU-4DFE frame)",
                    p,
                    partial(_vrml_mesh, p),
                    floor_text(blocks, (False, False, True, True)),
                    "np.fromstring of every number block",
                    plain,
                )
            )

        g = depth_grid(grid_mesh(150, 120, 1))
        nr, nc = g.z.shape
        xs = g.x0 + np.arange(nc) * 0.77
        ys = g.y0 + np.arange(nr) * 0.77
        x = np.broadcast_to(xs[None], g.z.shape).copy()
        y = np.broadcast_to(ys[:, None], g.z.shape).copy()
        grid = BntGrid(x, y, g.z, g.u, g.v, -1e9, "bs000_N_N_0.png")
        pb = tmp / "a.bnt"
        write_bnt(pb, grid)
        off = 18 + len(grid.texture_name)

        def bnt_floor() -> object:
            return np.fromfile(pb, dtype="<f8", offset=off)

        gm = bnt_to_mesh(read_bnt(pb))
        r = row(
            f"bnt {nr}x{nc} (Bosphorus)",
            pb,
            lambda: bnt_to_mesh(read_bnt(pb)),
            bnt_floor,
            "np.fromfile of the five float64 blocks",
            gm,
        )
        r["valid_points"] = gm.num_vertices
        rows.append(r)

        m5 = grid_mesh(73, 69, 2)  # 5,037 vertices: a CoMA mesh
        for binary in (True, False):
            pp = tmp / f"coma_{binary}.ply"
            write_ply(pp, Mesh(m5.vertices, m5.faces, vertex_colors=m5.vertex_colors), binary)
            if binary:
                nv = m5.num_vertices
                vsize = nv * 15
                head = pp.read_bytes().index(b"end_header\n") + 11

                def ply_floor(pp: Path, head: int, vsize: int) -> object:
                    raw = np.fromfile(pp, dtype=np.uint8, offset=head)
                    return raw[:vsize].view([("p", "<f4", 3), ("c", "u1", 3)]), raw[vsize:].view(
                        [("n", "u1"), ("i", "<i4", 3)]
                    )

                floor: Callable[[], object] = partial(ply_floor, pp, head, vsize)
                what = "np.fromfile + structured view"
            else:
                body = pp.read_text().split("end_header\n", 1)[1]
                floor = floor_text([body])
                what = "np.fromstring of the whole body"
            rows.append(
                row(
                    f"ply-{'binary' if binary else 'ascii'} (CoMA)",
                    pp,
                    partial(_ply_mesh, pp),
                    floor,
                    what,
                    m5,
                )
            )

        m26 = grid_mesh(170, 155, 3)  # 26,350 vertices: a FaceScape model
        po = tmp / "1_neutral.obj"
        write_obj(po, Mesh(m26.vertices, m26.faces, uvs=m26.uvs), "1_neutral.jpg")
        lines = po.read_text().splitlines()
        vblock = " ".join(ln[2:] for ln in lines if ln.startswith("v "))
        vtblock = " ".join(ln[3:] for ln in lines if ln.startswith("vt "))
        fblock = " ".join(ln[2:].replace("/", " ") for ln in lines if ln.startswith("f "))
        rows.append(
            row(
                "obj (FaceScape)",
                po,
                lambda: read_obj(po).mesh,
                floor_text([vblock, vtblock, fblock], (False, False, True)),
                "np.fromstring of v, vt and f numbers",
                m26,
            )
        )

        pbnd = tmp / "000.bnd"
        write_bnd(pbnd, m35.vertices[:83], np.arange(83))
        t = best(lambda: read_bnd(pbnd))
        rows.append(
            {
                "format": "bnd (83 landmarks)",
                "reader_s": round(t, 6),
                "reader_meshes_per_s": round(1 / t, 1),
            }
        )

        # the Bosphorus writer's rasteriser (what write_native('bosphorus') pays per scan)
        t = best(lambda: depth_grid(m35))
        rows.append(
            {
                "format": "depth_grid rasteriser (35k-vertex mesh -> 0.77 mm grid)",
                "seconds": round(t, 4),
                "grid": list(depth_grid(m35).z.shape),
            }
        )
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "repeats": REPEATS,
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
