"""Benchmark of the headless multiview renderer: views per second, split by stage.

For each mesh (a ~3.4k-vertex face from the synthetic source, a 10k-vertex sphere to compare
with the reference, a ~35k-vertex textured scan-sized surface) and each modality set, it times
``upload`` (normalise + buffers + texture), ``draw`` (all views, finished) and ``read`` (readback
+ quantisation) over repeated renders, and writes ``bench/results/render.json``.

Reference (docs/gotchas.md, 2-core CPU machine, Mesa llvmpipe, moderngl 5.13): 245-255 views/s
for a 10k-vertex mesh at 224 px with RGB + depth read back; 87-107 views/s at 41k vertices.

    .venv/bin/python bench/bench_render.py [--repeats 30] [--sheet /tmp/render_sheet.png]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from mvdata.core import Mesh
from mvdata.io import atomic_write_json
from mvdata.render.cameras import DEFAULT_VIEWS
from mvdata.render.gl import Renderer
from mvdata.render.normalise import normalise
from schemas.models import Modality

REFERENCE_VIEWS_PER_S = {"vertices": 10_000, "views_per_s": 250.0, "modalities": ["rgb", "depth"]}
RESULTS = Path(__file__).resolve().parent / "results" / "render.json"


def face_mesh() -> tuple[str, Mesh]:
    """A synthetic face (the SFM's 3448 vertices when its files are found, else procedural)."""
    from mvdata.synth.facemodel import resolve_face_model
    from mvdata.synth.generate import SynthConfig, iter_synth

    model = resolve_face_model("auto", None, echo=lambda _msg: None)
    first = next(iter(iter_synth(SynthConfig(num_identities=1, expressions=("happiness",)), model)))
    return f"synth-{model.name}", first.mesh


def scan_mesh(rows: int = 187, cols: int = 187, texture_size: int = 1024) -> Mesh:
    """A textured ~35k-vertex surface the size of a face scan (a grid like a Bosphorus scan)."""
    y, x = np.mgrid[-110 : 110 : rows * 1j, -80 : 80 : cols * 1j]
    z = 60.0 * np.sqrt(np.clip(1 - (x / 95) ** 2 - (y / 125) ** 2, 0, None))
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)]).reshape(-1, 3)
    uvs = np.stack([(x.ravel() + 80) / 160, (y.ravel() + 110) / 220], axis=-1)
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (texture_size, texture_size, 3), dtype=np.uint8)
    return Mesh(verts, faces, uvs=uvs, texture=tex)


def sphere_mesh() -> Mesh:
    s = trimesh.creation.icosphere(5, radius=90.0)  # 10,242 vertices
    colours = np.clip(s.vertices * 1.4 + 128, 0, 255).astype(np.uint8)
    return Mesh(s.vertices, s.faces, vertex_colors=colours)


def bench_one(renderer: Renderer, mesh: Mesh, repeats: int) -> dict[str, Any]:
    """Seconds per mesh in each stage (median over ``repeats``) and views per second."""
    norm = normalise(mesh)
    renderer.render(mesh, norm)  # warm-up: shader compile, first allocations
    stages: dict[str, list[float]] = {"upload": [], "draw": [], "read": [], "total": []}
    cpu: list[float] = []
    for _ in range(repeats):
        c0 = time.process_time()  # all threads of this process, llvmpipe's included
        t0 = time.perf_counter()
        with renderer.upload(mesh, norm) as buffers:
            with renderer.ctx:
                renderer.ctx.finish()
            t1 = time.perf_counter()
            renderer.draw(buffers)
            with renderer.ctx:
                renderer.ctx.finish()  # draw calls are asynchronous: wait for the pixels
            t2 = time.perf_counter()
            renderer.read()
            t3 = time.perf_counter()
        stages["upload"].append(t1 - t0)
        stages["draw"].append(t2 - t1)
        stages["read"].append(t3 - t2)
        stages["total"].append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = {k: float(np.median(v)) for k, v in stages.items()}
    n_views = len(renderer.rig.views)
    return {
        "seconds_per_mesh": med,
        "views_per_s": n_views / med["total"],
        "views_per_s_without_upload": n_views / (med["draw"] + med["read"]),
        # CPU seconds per mesh, summed over threads: less sensitive than wall time to other
        # processes sharing the cores
        "cpu_seconds_per_mesh": float(np.median(cpu)),
    }


def bench_against_minimal(mesh: Mesh, rounds: int, image_size: int) -> dict[str, Any]:
    """Ours vs a minimal moderngl renderer, interleaved, on the same machine at the same time.

    The minimal one is the gotchas.md reference setup: mesh uploaded once, a flat-colour shader,
    one 224 px framebuffer re-used per view, colour + depth buffer read back per view; it skips
    what ours does on top (normalisation, normals, lighting, metric depth, quantisation). Other
    processes on a shared 2-core machine swing wall times by 2-3x, so the ratio measured
    side by side says more than either number alone.
    """
    import moderngl

    from mvdata.render.normalise import apply_normalisation

    norm = normalise(mesh)
    ours = Renderer(image_size, DEFAULT_VIEWS, ("rgb", "depth"))
    ctx = moderngl.create_standalone_context(backend="egl")  # type: ignore[arg-type]
    with ctx:
        prog = ctx.program(
            vertex_shader="#version 330\nuniform mat4 mvp; in vec3 p; in vec3 c; out vec3 vc;\n"
            "void main() { gl_Position = mvp * vec4(p, 1.0); vc = c; }",
            fragment_shader="#version 330\nin vec3 vc; out vec4 o;\n"
            "void main() { o = vec4(vc, 1.0); }",
        )
        verts = apply_normalisation(mesh.vertices, norm).astype("f4")
        data = np.concatenate([verts, np.full_like(verts, 0.5)], axis=1).astype("f4")
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(mesh.faces.astype("i4").tobytes())
        vao = ctx.vertex_array(prog, [(vbo, "3f 3f", "p", "c")], ibo, index_element_size=4)
        fbo = ctx.simple_framebuffer((image_size, image_size))
    proj = ours.rig.projection()
    mvps = [(proj @ ours.rig.world_to_camera(i)).T.astype("f4").tobytes() for i in range(3)]

    def minimal() -> None:
        with ctx:
            fbo.use()
            ctx.enable_only(moderngl.DEPTH_TEST)
            for mvp in mvps:
                fbo.clear()
                prog["mvp"].write(mvp)  # type: ignore[union-attr]
                vao.render()
                fbo.read(components=3)
                fbo.read(attachment=-1, dtype="f4")

    times: dict[str, list[float]] = {"ours": [], "ours_without_upload": [], "minimal": []}
    with ours, ours.upload(mesh, norm) as pre:
        for _ in range(rounds):
            for name in times:
                t0 = time.perf_counter()
                if name == "ours":
                    ours.render(mesh, norm)
                elif name == "ours_without_upload":
                    ours.draw(pre)
                    ours.read()
                else:
                    minimal()
                times[name].append(time.perf_counter() - t0)
    ctx.release()
    vps = {k: len(DEFAULT_VIEWS) / float(np.median(v)) for k, v in times.items()}
    return {
        "views_per_s": vps,
        "ratio_ours_to_minimal": vps["ours"] / vps["minimal"],
        "ratio_ours_without_upload_to_minimal": vps["ours_without_upload"] / vps["minimal"],
    }


def _worker(mesh: Mesh, renders: int, lp_threads: str | None, image_size: int) -> float:
    """Spawned worker: its own renderer (never one inherited from the parent); wall seconds."""
    if lp_threads is not None:
        os.environ["LP_NUM_THREADS"] = lp_threads  # read by llvmpipe when the context opens
    with Renderer(image_size, DEFAULT_VIEWS, ("rgb", "depth")) as r:
        norm = normalise(mesh)
        r.render(mesh, norm)
        t0 = time.perf_counter()
        for _ in range(renders):
            r.render(mesh, norm)
        return time.perf_counter() - t0


def bench_workers(
    mesh: Mesh, workers: int, renders: int, lp_threads: str | None, image_size: int
) -> dict[str, Any]:
    """Aggregate views/s of ``workers`` spawned processes rendering at the same time."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        secs = pool.starmap(_worker, [(mesh, renders, lp_threads, image_size)] * workers)
    views = workers * renders * len(DEFAULT_VIEWS)
    return {
        "workers": workers,
        "LP_NUM_THREADS": lp_threads,
        "views_per_s": views / max(secs),
    }


def write_sheet(path: Path, meshes: dict[str, Mesh]) -> None:
    from mvdata.shards.contact_sheet import contact_sheet

    with Renderer(224, DEFAULT_VIEWS, ("rgb", "depth", "normal")) as r:
        rows = [r.render(m) for m in meshes.values()]
    contact_sheet(rows, list(meshes)).save(path)
    print(f"contact sheet: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    load_at_start = os.getloadavg()[0]
    face_name, face = face_mesh()
    meshes = {face_name: face, "icosphere-10k": sphere_mesh(), "scan-grid-35k": scan_mesh()}
    modality_sets: list[tuple[Modality, ...]] = [("rgb", "depth"), ("rgb", "depth", "normal")]
    runs = []
    for mods in modality_sets:
        with Renderer(args.image_size, DEFAULT_VIEWS, mods) as r:
            renderer_name = r.ctx.info["GL_RENDERER"]
            for name, mesh in meshes.items():
                res = bench_one(r, mesh, args.repeats)
                run = {
                    "mesh": name,
                    "vertices": mesh.num_vertices,
                    "faces": mesh.num_faces,
                    "textured": mesh.texture is not None,
                    "modalities": list(mods),
                    **res,
                }
                runs.append(run)
                s = res["seconds_per_mesh"]
                print(
                    f"{name:>22} {mesh.num_vertices:>6} v  {'+'.join(mods):<16} "
                    f"{res['views_per_s']:7.1f} views/s  upload {s['upload'] * 1e3:6.2f} ms  "
                    f"draw {s['draw'] * 1e3:6.2f} ms  read {s['read'] * 1e3:6.2f} ms  "
                    f"cpu {res['cpu_seconds_per_mesh'] * 1e3:6.1f} ms"
                )
    side = bench_against_minimal(meshes["icosphere-10k"], args.repeats, args.image_size)
    v = side["views_per_s"]
    print(
        f"side by side (icosphere-10k, rgb+depth): ours {v['ours']:.1f}, ours without upload "
        f"{v['ours_without_upload']:.1f}, minimal renderer {v['minimal']:.1f} views/s "
        f"-> ratio {side['ratio_ours_to_minimal']:.2f}"
    )
    worker_runs = []
    for workers, lp in ((1, None), (2, None), (2, "1")):
        w = bench_workers(meshes["icosphere-10k"], workers, args.repeats, lp, args.image_size)
        worker_runs.append(w)
        print(
            f"spawned workers={workers} LP_NUM_THREADS={lp}: {w['views_per_s']:.1f} views/s "
            "(icosphere-10k, rgb+depth, upload included)"
        )
    ref = next(
        r for r in runs if r["mesh"] == "icosphere-10k" and r["modalities"] == ["rgb", "depth"]
    )
    result = {
        "bench": "render",
        "image_size": args.image_size,
        "views": [list(v) for v in DEFAULT_VIEWS],
        "repeats": args.repeats,
        "gl_renderer": renderer_name,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            # other processes on the same cores swing wall times by 2-3x: read with the load
            "load_average_1min_at_start": load_at_start,
            "load_average_1min_at_end": os.getloadavg()[0],
            "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"),
        },
        "reference": REFERENCE_VIEWS_PER_S,
        "ratio_vs_reference_10k_rgb_depth": ref["views_per_s"]
        / REFERENCE_VIEWS_PER_S["views_per_s"],
        "runs": runs,
        "side_by_side_10k": side,
        "worker_runs": worker_runs,
    }
    atomic_write_json(args.out, result)
    print(
        f"ratio vs reference (10k vertices, rgb+depth): {result['ratio_vs_reference_10k_rgb_depth']:.2f}"
    )
    print(f"wrote {args.out}")
    if args.sheet is not None:
        write_sheet(args.sheet, meshes)


if __name__ == "__main__":
    main()
