"""`mvdata build` end to end on a synthetic set: shards, resume after kill -9, failures, workers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import webdataset as wds

from mvdata.build.clips import motion_clip, uniform_clip
from mvdata.build.config import BuildConfig, parse_views, read_subject_folds
from mvdata.build.driver import build, finalize
from mvdata.build.plan import assign_folds, make_plan
from mvdata.render.normalise import apply_normalisation
from mvdata.shards.verify import verify_dataset
from mvdata.sources.registry import get_source, load_frame
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig, iter_synth
from mvdata.synth.writer import write_synth
from schemas.models import Normalisation
from tests.faces import facescape_set, store_images_upside_down

SMALL = dict(image_size=48, samples_per_shard=4, num_folds=3)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    cfg = SynthConfig(
        num_identities=3,
        expressions=("neutral", "happiness", "surprise"),
        intensities=(2, 4),
        sequences=True,
        num_frames=12,
        texture_size=64,
        seed=1,
    )
    write_synth(cfg, procedural_face(), root)
    return root


def _digests(out: Path) -> dict[str, str]:
    res = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and ".mvdata" not in p.parts:
            data = p.read_bytes()
            if p.name.endswith(".stats.json"):  # timings differ run to run; the rest must not
                doc = json.loads(data)
                doc.pop("seconds")
                data = json.dumps(doc, sort_keys=True).encode()
            res[str(p.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return res


def _cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.mvdata_app", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def test_plan_folds_are_subject_independent(synth_root):
    plan = make_plan(BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL))
    m = plan.manifest
    assert len(m) == 3 * 5 and m["key"].n_unique() == len(m)
    assert (m.group_by("subject").agg(pl.col("fold").n_unique())["fold"] == 1).all()
    assert sorted(m["fold"].unique().to_list()) == [0, 1, 2]
    assert m["order"].to_list() == list(range(len(m)))
    # The global shuffle mixes subjects across shards (not one subject per shard).
    assert m.filter(pl.col("shard") == 0)["subject"].n_unique() > 1
    assert assign_folds(["a", "b", "c", "d"], 2, 0) == assign_folds(["d", "c", "b", "a"], 2, 0)


def test_clip_sampling():
    assert uniform_clip(10, 4) == [0, 3, 6, 9]
    energy = np.zeros(100)
    energy[70] = 1.0
    clip = motion_clip(energy, 8)
    assert len(clip) == 8 and clip[0] < 70 < clip[-1] and clip == sorted(clip)
    assert motion_clip(np.arange(10.0), 4)[-1] == 9
    assert parse_views("0;-20;20") == ((0.0, 0.0), (-20.0, 0.0), (20.0, 0.0))
    with pytest.raises(ValueError, match="bad view"):
        parse_views("left")


def test_build_verify_and_readers(synth_root, tmp_path):
    out = tmp_path / "shards"
    cfg = BuildConfig(
        source="synthetic",
        source_root=str(synth_root),
        modalities=("rgb", "depth", "normal"),
        **SMALL,
    )
    s = build(cfg, str(out), workers=1)
    assert s.finalized and s.num_written == 15 and s.num_failed == 0 and s.num_shards == 4
    assert verify_dataset(str(out)).ok
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["num_samples"] == 15 and meta["modalities"] == ["rgb", "depth", "normal"]
    assert meta["folds_from"] is None  # folds from the seeded shuffle
    assert "by a shuffle seeded with" in (out / "README.md").read_text()
    # webdataset reads every sample with the same member set and the json contract.
    urls = sorted(str(p) for p in (out / "data").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 15
    expected = set(meta["member_names"])
    for smp in samples:
        assert {k for k in smp if not k.startswith("__")} == expected
        doc = json.loads(smp["json"])
        assert (
            doc["key"] == smp["__key__"] and len(doc["views"]) == 3 and doc["labels"]["expression"]
        )
    # Sample order follows the manifest's global shuffle.
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert [s["__key__"] for s in samples] == manifest.sort("shard", "index_in_shard")[
        "key"
    ].to_list()


def test_sequences_build_clips(synth_root, tmp_path):
    out = tmp_path / "clips"
    cfg = BuildConfig(
        source="synthetic",
        source_root=str(synth_root),
        kind="sequence",
        clip_frames=3,
        clip_sampling="motion",
        views=((0.0, 0.0), (30.0, 10.0)),
        **SMALL,
    )
    s = build(cfg, str(out), workers=1)
    assert s.num_written == 6 and verify_dataset(str(out)).ok
    smp = next(iter(wds.WebDataset(str(out / "data" / "train-000000.tar"), shardshuffle=False)))
    assert {"t02.v01.rgb.jpg", "t00.v00.depth.png"} <= set(smp)
    doc = json.loads(smp["json"])
    assert (
        len(doc["frames"]) == 3
        and doc["frames"] == sorted(doc["frames"])
        and doc["kind"] == "sequence"
    )
    assert doc["views"][1]["yaw"] == 30.0 and doc["views"][1]["pitch"] == 10.0
    # The sequence's first frame travels as the prior's reference, in the clip's normalisation,
    # whether or not the motion-cut clip holds it (schema 1.1).
    assert doc["reference_frame"] == 0
    items = {it.key: it for it in get_source("synthetic").scan(synth_root).items}
    first = load_frame(items[doc["key"]], 0)
    norm = Normalisation.model_validate(doc["normalisation"][0])
    np.testing.assert_allclose(
        doc["reference_landmarks"], apply_normalisation(first.landmarks, norm), atol=1e-3
    )
    assert len(doc["reference_landmarks"]) == len(doc["landmark_names"])


def test_kill9_then_resume_is_byte_identical(synth_root, tmp_path):
    args = [
        "build",
        str(synth_root),
        "--image-size",
        "96",
        "--samples-per-shard",
        "1",
        "--folds",
        "3",
        "--workers",
        "2",
    ]
    ref = tmp_path / "ref"
    r = _cli(*args[:2], str(ref), *args[2:])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.mvdata_app", args[0], args[1], str(out), *args[2:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "data").glob("*.stats.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list((out / "data").glob("*.stats.json")))
    assert 3 <= committed < 15, "the kill must land mid-build"
    assert not (out / "manifest.parquet").exists()
    r = _cli(*args[:2], str(out), *args[2:])
    assert r.returncode == 0, r.stderr
    assert "15" in r.stdout
    got, want = _digests(out), _digests(ref)
    assert got == want  # same files (the killed writers' temp files cleaned up), same bytes
    assert verify_dataset(str(out)).ok


def test_failed_items_are_recorded_and_counted(synth_root, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(synth_root, root)
    victims = sorted((root / "static").rglob("*.ply"))[:2]
    victims[0].write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"
    )  # truncated
    victims[1].write_bytes(b"")
    out = tmp_path / "out"
    r = _cli(
        "build",
        str(root),
        str(out),
        "--image-size",
        "32",
        "--samples-per-shard",
        "4",
        "--max-failed-fraction",
        "0.5",
    )
    assert r.returncode == 0, r.stderr
    rows = pl.concat([pl.read_parquet(p) for p in sorted((out / "data").glob("*.parquet"))])
    failed = rows.filter(pl.col("status") == "failed")
    assert len(failed) == 2 and all(
        victims[0].name in m or victims[1].name in m for m in failed["error_message"]
    )
    assert verify_dataset(str(out)).ok
    # Over the limit: the build says so and exits non-zero, but what it built stays valid.
    r = _cli(
        "build",
        str(root),
        str(tmp_path / "out2"),
        "--image-size",
        "32",
        "--max-failed-fraction",
        "0.01",
    )
    assert r.returncode == 1 and "failed" in r.stderr


def test_bad_input_and_settings_mismatch(synth_root, tmp_path):
    r = _cli("build", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert r.returncode == 2 and "no such dataset folder" in r.stderr
    r = _cli("build", str(synth_root), str(tmp_path / "o"), "--source", "bu5dfe")
    assert r.returncode == 2 and "unknown source" in r.stderr
    r = _cli("build", str(synth_root), str(tmp_path / "o"), "--modalities", "rgb,infrared")
    assert r.returncode == 2 and "modalities" in r.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    r = _cli("build", str(synth_root), str(foreign))
    assert r.returncode == 2 and "not an mvdata build" in r.stderr
    assert (foreign / "thesis.tex").read_text() == "precious"
    out = tmp_path / "o"
    build(
        BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL), str(out), workers=1
    )
    with pytest.raises(ValueError, match=r"other settings .*image_size: \d+ there, 64 now"):
        build(
            BuildConfig(
                source="synthetic", source_root=str(synth_root), **{**SMALL, "image_size": 64}
            ),
            str(out),
        )
    # the default modalities changed (rgb + depth -> + normal): a resume names the setting
    with pytest.raises(ValueError) as err:
        build(
            BuildConfig(
                source="synthetic",
                source_root=str(synth_root),
                modalities=("rgb", "depth"),
                **SMALL,
            ),
            str(out),
        )
    assert "modalities: ['rgb', 'depth', 'normal'] there, ['rgb', 'depth'] now" in str(err.value)
    assert "image_size" not in str(err.value)
    s = build(
        BuildConfig(source="synthetic", source_root=str(synth_root), **{**SMALL, "image_size": 64}),
        str(out),
        mode="overwrite",
        workers=1,
    )
    assert s.shards_built == 4


def test_multi_worker_split_and_finalize(synth_root, tmp_path):
    out = tmp_path / "multi"
    url = f"file://{out}"  # an fsspec URL
    cfg = BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL)
    a = build(cfg, url, worker_rank=0, num_workers=2, workers=1)
    assert not a.finalized and a.shards_built == 2
    assert not (out / "manifest.parquet").exists()
    with pytest.raises(ValueError, match="not built yet"):
        finalize(url)
    b = build(cfg, url, worker_rank=1, num_workers=2, workers=1)
    assert b.finalized and b.shards_built == 2
    ref = tmp_path / "pool"
    build(cfg, str(ref), workers=2)  # spawned worker processes render the same bytes
    assert _digests(out) == _digests(ref)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed): about half of what the
    full-disk build below writes."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_fails_clearly_and_leaves_nothing_finished(synth_root, tiny_disk):
    out = tiny_disk / "shards"
    r = _cli(
        "build",
        str(synth_root),
        str(out),
        "--image-size",
        "224",
        "--samples-per-shard",
        "2",
        "--modalities",
        "rgb,depth,normal",
        "--workers",
        "2",
    )
    assert r.returncode == 1, r.stderr
    assert "No space left on device" in r.stderr and "rerun the same command" in r.stderr
    committed = {p.name.split(".")[0] for p in (out / "data").glob("*.stats.json")}
    tars = {p.name.split(".")[0] for p in (out / "data").glob("*.tar")}
    assert tars == committed  # no tar under a final name without its commit marker
    assert not (out / "manifest.parquet").exists()
    for name in committed:  # whatever was committed is whole
        from mvdata.shards.verify import verify_shard

        assert verify_shard(str(out), name).problems == [], name


def test_motion_energy_without_landmarks_or_correspondence():
    """Scan-like frames (re-sampled, shuffled vertices) with their landmarks removed: the
    nearest-vertex motion energy still peaks inside the apex, and the clip is centred there."""
    from mvdata.build.clips import motion_energy

    cfg = SynthConfig(
        num_identities=1,
        expressions=("surprise",),
        static=False,
        sequences=True,
        registered=False,
        num_frames=30,
        seed=3,
        texture_size=16,
    )
    seq = list(iter_synth(cfg, procedural_face()))
    for sm in seq:
        sm.mesh.landmarks = None
    energy = motion_energy([sm.mesh for sm in seq])
    peak = int(np.argmax(energy))
    assert seq[peak].phase == "apex" and energy[0] == min(energy)
    clip = motion_clip(energy, 6)
    assert clip[0] <= peak <= clip[-1]
    assert energy[0] == 0.0 and energy[peak] > 2 * energy[1]  # frame 1 is still neutral


# ----------------------------------------------------------------- bad input: errors never hide
def test_config_digest_is_unchanged() -> None:
    """The digest of a build's settings is what existing builds recorded (computed before the
    settings gained per-field checks): identical settings keep resuming."""
    # modalities named: the default became rgb + depth + normals on 2026-12-05, so a build of
    # the former default resumes only when asked for rgb + depth explicitly (other settings,
    # other bytes)
    old_default = BuildConfig(
        source="synthetic", source_root="/data/x", modalities=("rgb", "depth")
    )
    assert old_default.digest() == "c923d3373facd494"
    assert BuildConfig(source="synthetic", source_root="/data/x").digest() != old_default.digest()
    cfg = BuildConfig(
        source="bu3dfe",
        source_root="/data/y",
        kind="sequence",
        modalities=("rgb", "depth", "normal"),
        image_size=96,
        seed=7,
        split="val",
        num_folds=3,
    )
    assert cfg.digest() == "f30fe9421d879cde"


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--num-workers", "0"], {}, "--num-workers"),
        (["--worker-rank", "2", "--num-workers", "2"], {}, "--worker-rank 2"),
        (["--workers", "-2"], {}, "--workers"),
        (["--seed", "-1"], {}, "--seed: must be at least 0"),
        (["--folds", "1"], {}, "--folds: must be at least 2"),
        (["--image-size", "5"], {}, "--image-size: must be within 16..2048"),
        (["--jpeg-quality", "0"], {}, "--jpeg-quality"),
        (["--split", "a" * 300], {}, "--split: 'aaaa"),
        (["--split", "tränen"], {}, "--split"),
        (["--modalities", "rgb,rgb"], {}, "--modalities: must be distinct"),
        (
            [],
            {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
            "SLURM_ARRAY_TASK_ID='x'",
        ),
        ([], {"RANK": "5", "WORLD_SIZE": "2"}, "RANK = 5 is not within 0..1"),
    ],
)
def test_option_errors_name_the_option(tmp_path, args, env, named):
    """A bad option or environment variable: one line naming it (before: "worker rank 0 not in
    [0, 0)", numpy's complaint about a negative seed, a traceback for SLURM_ARRAY_TASK_ID=x,
    "rerun to resume" for a 300-character split), exit 2, and nothing written."""
    from typer.testing import CliRunner

    from cli.mvdata_app import app

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["build", str(tmp_path), str(out), *args], env=env)
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert named in r.output, r.output
    assert not out.exists()


def test_changed_sources_are_refused(synth_root, tmp_path):
    """A source file changed between two workers, or before a resume: refused naming the file
    (before: duplicates and missing samples, exit 0, "root files written: yes")."""
    import shutil

    from mvdata.build.state import SourcesChangedError

    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    cfg = BuildConfig(source="synthetic", source_root=str(root), **SMALL)
    out = tmp_path / "out"
    build(cfg, str(out), worker_rank=0, num_workers=2, workers=1)
    state = json.loads((out / ".mvdata" / "build.json").read_text())
    victim = sorted(state["sources"])[3]
    assert state["sources"][victim][0] == (root / victim).stat().st_size
    st = (root / victim).stat()
    os.utime(root / victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    with pytest.raises(
        SourcesChangedError,
        match=rf"refusing to resume: 1 source file\(s\) changed: {victim} \(changed\)",
    ):
        build(cfg, str(out), worker_rank=1, num_workers=2, workers=1)
    with pytest.raises(SourcesChangedError, match="refusing to finalize"):
        finalize(str(out))
    # The CLI says it in one line, exit 2.
    r = _cli("finalize", str(out))
    assert r.returncode == 2 and f"{victim} (changed)" in r.stderr and "Traceback" not in r.stderr
    os.utime(root / victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # as it was: resumes
    s = build(cfg, str(out), worker_rank=1, num_workers=2, workers=1)
    assert s.finalized and verify_dataset(str(out)).ok
    # A removed file is named too; so is an added one (a new item).
    (root / victim).unlink()
    with pytest.raises(SourcesChangedError, match=rf"{victim} \(removed\)"):
        build(cfg, str(out), workers=1)
    # An output from before fingerprints resumes and records them.
    del state["sources"]
    (out / ".mvdata" / "build.json").write_text(json.dumps(state))
    shutil.copy(synth_root / victim, root / victim)
    build(cfg, str(out), workers=1)
    assert "sources" in json.loads((out / ".mvdata" / "build.json").read_text())


def test_corrupt_build_json_is_named(synth_root, tmp_path):
    out = tmp_path / "out"
    cfg = BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL)
    build(cfg, str(out), workers=1)
    (out / ".mvdata" / "build.json").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"\.mvdata/build.json: not valid JSON"):
        build(cfg, str(out), workers=1)
    r = _cli("finalize", str(out))
    assert r.returncode == 2 and "build.json: not valid JSON" in r.stderr


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill9_of_the_build_kills_its_workers_and_the_lock_refuses_a_second(synth_root, tmp_path):
    """A real ``mvdata build`` with 2 worker processes: a second build into the same output is
    refused by the lock while it runs; ``kill -9`` of the main process alone takes its workers
    with it (before: they went on committing shards, ~250 MB each); the lock goes with the
    process, and the resumed build finishes and verifies."""
    from mvdata.build.lock import BuildLockedError

    out = tmp_path / "out"
    args = [
        "build",
        str(synth_root),
        str(out),
        "--kind",
        "sequence",
        "--clip-frames",
        "12",
        "--samples-per-shard",
        "1",
        "--folds",
        "3",
        "--workers",
        "2",
        "--views",
        "0,0;-20,0;20,0;-40,0;40,0",
        "--modalities",
        "rgb,depth,normal",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.mvdata_app", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and proc.poll() is None:
            workers = [
                p
                for p in _children(proc.pid)
                if b"spawn_main" in (Path("/proc") / str(p) / "cmdline").read_bytes()
                and b"resource_tracker" not in (Path("/proc") / str(p) / "cmdline").read_bytes()
            ]
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert len(workers) == 2, "the build never started its 2 workers"
        cfg = BuildConfig(
            source="synthetic",
            source_root=str(synth_root),
            kind="sequence",
            clip_frames=12,
            samples_per_shard=1,
            num_folds=3,
            views=parse_views("0,0;-20,0;20,0;-40,0;40,0"),
            modalities=("rgb", "depth", "normal"),
        )
        with pytest.raises(BuildLockedError, match=r"another mvdata build is writing into it"):
            build(cfg, str(out), workers=1)
        assert proc.poll() is None, "the first build ended before the kill: make it longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "a worker outlived the killed build"
    assert not (out / "manifest.parquet").exists()
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert verify_dataset(str(out)).ok


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def test_blank_render_is_a_counted_failure(tmp_path):
    """One far outlier vertex (no landmarks: the bounding box normalises) shrinks the face to a
    dot in every view: a ``blank-render`` failure naming the file (before: written as ok)."""
    from mvdata.build.worker import blank_views

    face = procedural_face()
    verts, faces = face.mean, face.faces
    root = tmp_path / "meshes"
    root.mkdir()
    _write_obj(root / "face.obj", verts, faces)
    far = np.vstack([verts, verts[:1] + [1e5, 0.0, 0.0]])
    _write_obj(root / "outlier.obj", far, np.vstack([faces, [[0, 1, len(verts)]]]))
    cfg = BuildConfig(source="meshdir", source_root=str(root), image_size=32, num_folds=2)
    s = build(cfg, str(tmp_path / "out"), workers=1)
    assert s.num_written == 1 and s.errors == {"blank-render": 1}
    rows_ = pl.read_parquet(tmp_path / "out" / "data" / "train-000000.parquet")
    failed = rows_.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["error_kind"] == "blank-render" and "outlier.obj" in failed["error_message"]
    # the rule itself: any view under 1 % foreground (depth, else normals, else rgb)
    depth = np.zeros((3, 10, 10), np.uint16)
    depth[0, :5] = 7
    depth[2, 0, 0] = 7  # 1 % of 100 pixels is not blank
    assert blank_views({"depth": depth}) == [1]
    assert blank_views({"rgb": np.zeros((2, 10, 10, 3), np.uint8)}) == [0, 1]


def test_read_only_output_and_odd_paths(synth_root, tmp_path):
    """A read-only output is one line naming it (before: a traceback), and a path with square
    brackets is printed as it is (before: rich's markup error)."""
    odd = tmp_path / "o[" / "]x"
    r = _cli("build", str(synth_root), str(odd), "--image-size", "16", "--samples-per-shard", "8")
    assert r.returncode == 0, r.stderr
    assert "o[/]x" in "".join(r.stdout.split())
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        r = _cli("build", str(synth_root), str(ro / "out"), "--image-size", "16")
        assert r.returncode == 2 and "Read-only file system" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and str(ro / "out") in r.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_shard_whose_samples_all_failed(synth_root, tmp_path):
    """Every sample of one shard fails: the build commits it empty (a resume skips it), verify
    says so plainly and passes, and both loaders leave it out (before: DALI refused the empty
    index, "Malformed index file")."""
    import shutil

    from mvdata.loaders import make_loader

    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    cfg = BuildConfig(source="synthetic", source_root=str(root), **SMALL)
    plan = make_plan(cfg)
    for key in plan.manifest.filter(pl.col("shard") == 1)["key"]:
        for rel in plan.items[key].source_paths:
            if rel.endswith(".ply"):
                (root / rel).write_bytes(b"")
    out = tmp_path / "out"
    s = build(cfg, str(out), workers=1)
    assert s.num_failed == 4 and s.finalized
    report = verify_dataset(str(out))
    assert report.ok and any("train-000001 holds no sample" in n for n in report.notes)
    assert json.loads((out / "sizes.json").read_text())["shards"]["data/train-000001.tar"] == 0
    for backend in ("dali", "wds"):
        loader = make_loader(out, batch_size=4, backend=backend, device="cpu", train=False)
        got = [k for b in loader for k, ok in zip(b.keys, b.valid.tolist(), strict=True) if ok]
        assert len(got) == 11 and len(set(got)) == 11, backend


def test_a_reader_bug_on_one_file_is_a_counted_failure(tmp_path, monkeypatch, capfd):
    """A reader raising something other than MeshReadError on one file (a case its checks did
    not foresee) fails that sample as ``reader-bug``, naming the file and the exception; the
    other samples are written and the build succeeds."""
    import mvdata.build.worker as worker

    face = procedural_face()
    root = tmp_path / "meshes"
    root.mkdir()
    for name in ("a.obj", "odd.obj", "b.obj"):
        _write_obj(root / name, face.mean, face.faces)

    def failing_on_odd(load):
        def buggy(item, t):
            if item.frame_paths[t][0].endswith("odd.obj"):
                raise ZeroDivisionError("division by zero")
            return load(item, t)

        return buggy

    monkeypatch.setattr(worker, "load_frame", failing_on_odd(worker.load_frame))
    cfg = BuildConfig(source="meshdir", source_root=str(root), image_size=32, num_folds=2)
    s = build(cfg, str(tmp_path / "out"), workers=1)  # one worker: in this process
    assert s.num_written == 2 and s.errors == {"reader-bug": 1}
    rows_ = pl.concat([pl.read_parquet(p) for p in (tmp_path / "out" / "data").glob("*.parquet")])
    failed = rows_.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["error_kind"] == "reader-bug"
    assert str(root / "odd.obj") in failed["error_message"]
    assert "ZeroDivisionError: division by zero" in failed["error_message"]
    assert "Traceback" in capfd.readouterr().err
    # mvdata inspect lists it the same way instead of stopping
    from mvdata.sources.inspect import inspect_dataset

    src = get_source("meshdir")
    monkeypatch.setattr(src, "load_frame", failing_on_odd(src.load_frame))
    rep = inspect_dataset(root, "meshdir")
    assert [(e.kind, Path(e.path).name) for e in rep.errors] == [("reader-bug", "odd.obj")]


def test_folds_are_shared_by_static_and_sequence_builds(synth_root, tmp_path):
    """Folds come from every subject the reader found, of either kind: where one subject has
    no sequences, the static and the sequence build of the root still give every shared
    subject the same fold (and the static build the folds of the complete root)."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    meta = pl.read_parquet(root / "metadata.parquet")
    lacking = sorted(meta["subject"].unique().to_list())[0]
    keep = ~((pl.col("kind") == "sequence") & (pl.col("subject") == lacking))
    meta.filter(keep).write_parquet(root / "metadata.parquet")

    def folds(r: Path, kind: str) -> dict[str, int]:
        cfg = BuildConfig(source="synthetic", source_root=str(r), kind=kind, **SMALL)
        m = make_plan(cfg).manifest
        return dict(zip(m["subject"].to_list(), m["fold"].to_list(), strict=True))

    static, seq = folds(root, "static"), folds(root, "sequence")
    assert lacking in static and lacking not in seq
    assert all(static[s] == f for s, f in seq.items())
    assert static == folds(synth_root, "static")


def test_a_sequence_named_twice_is_a_duplicate_not_a_replacement(synth_root, tmp_path):
    """A hand-merged synthetic set naming one sequence under two subjects: the second is a
    "duplicate" error, never a sample that silently replaces the first."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    meta = pl.read_parquet(root / "metadata.parquet")
    static = meta.filter(pl.col("kind") == "static").sort("sequence")
    first = static.row(0, named=True)
    a = first["sequence"]
    b = static.filter(pl.col("subject") != first["subject"])["sequence"][0]

    def write_renamed(old: str) -> None:
        """metadata.parquet with sequence ``old`` renamed to ``a``."""
        named = pl.when(pl.col("sequence") == old).then(pl.lit(a)).otherwise(pl.col("sequence"))
        meta.with_columns(named.alias("sequence")).write_parquet(root / "metadata.parquet")

    write_renamed(b)
    res = get_source("synthetic").scan(root)
    assert [e.kind for e in res.errors] == ["duplicate"]
    assert sum(it.meta.sequence == a for it in res.items) == 1
    # the same under ONE subject: the second row is another scan, not a second frame
    same = static.filter(pl.col("subject") == first["subject"])["sequence"][1]
    write_renamed(same)
    res = get_source("synthetic").scan(root)
    assert [e.kind for e in res.errors] == ["duplicate"]
    (item,) = [it for it in res.items if it.meta.sequence == a]
    assert item.num_frames == 1


def test_folds_from_an_earlier_manifest_or_a_csv(synth_root, tmp_path):
    """``subject_folds`` (``--folds-from``) replaces the seeded assignment: an earlier build's
    manifest gives every subject its fold again under another seed; a CSV split list is read
    with its subjects as text; a subject without a fold, a subject in two folds, folds counted
    from 1, or a missing column are each one error naming the file."""
    first = make_plan(BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL))
    manifest = tmp_path / "manifest.parquet"
    first.manifest.write_parquet(manifest)
    want = dict(zip(first.manifest["subject"], first.manifest["fold"], strict=True))

    given = read_subject_folds(manifest)
    cfg = BuildConfig(
        source="synthetic",
        source_root=str(synth_root),
        subject_folds=given,
        folds_from=str(manifest),
        **{**SMALL, "seed": 7},
    )
    again = make_plan(cfg).manifest
    assert dict(zip(again["subject"], again["fold"], strict=True)) == want
    assert again["key"].to_list() != first.manifest["key"].to_list()  # the shuffle did move
    assert cfg.digest() != BuildConfig(**{**cfg.model_dump(), "subject_folds": None}).digest()

    # A build without the field hashes as before it existed (recorded builds still resume).
    plain = BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL)
    old = {k: v for k, v in plain.model_dump().items() if k not in ("subject_folds", "folds_from")}
    text = json.dumps(old, sort_keys=True).encode()
    assert plain.digest() == hashlib.sha256(text).hexdigest()[:16]

    subjects = sorted(want)
    csv = tmp_path / "split.csv"
    csv.write_text("subject,fold\n" + "".join(f"{s},{i % 3}\n" for i, s in enumerate(subjects)))
    assert read_subject_folds(csv) == tuple((s, i % 3) for i, s in enumerate(subjects))
    numeric = tmp_path / "numeric.csv"  # subject ids that look like numbers stay text
    numeric.write_text("subject,fold\n007,0\n12,1\n")
    assert read_subject_folds(numeric) == (("007", 0), ("12", 1))

    short = tmp_path / "short.csv"
    short.write_text("subject,fold\n" + "".join(f"{s},0\n" for s in subjects[1:]))
    cfg = BuildConfig(
        source="synthetic",
        source_root=str(synth_root),
        subject_folds=read_subject_folds(short),
        folds_from=str(short),
        **SMALL,
    )
    with pytest.raises(ValueError, match=rf"short\.csv: no fold for 1 subject.*{subjects[0]}"):
        make_plan(cfg)

    one_based = tmp_path / "one_based.csv"
    one_based.write_text("subject,fold\n" + "".join(f"{s},3\n" for s in subjects))
    with pytest.raises(ValueError, match=r"fold 3 in .*one_based\.csv.*folds count from 0"):
        BuildConfig(
            source="synthetic",
            source_root=str(synth_root),
            subject_folds=read_subject_folds(one_based),
            folds_from=str(one_based),
            **SMALL,
        )
    bad = {
        "twice.csv": ("subject,fold\na,0\na,1\n", r"twice\.csv: 1 subject\(s\) in two folds.*a"),
        "nofold.csv": ("subject,split\na,0\n", r"nofold\.csv: no column fold"),
        "text.csv": ("subject,fold\na,x\n", r"text\.csv: the fold column holds"),
        "half.csv": ("subject,fold\na,1.5\nb,2.0\n", r"half\.csv: the fold column holds"),
        "empty.csv": ("subject,fold\n", r"empty\.csv: no rows"),
        "blank.csv": ("subject,fold\na,\n", r"blank\.csv: an empty subject or fold"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_subject_folds(tmp_path / name)
    with pytest.raises(ValueError, match=r"nothere\.csv: no such file"):
        read_subject_folds(tmp_path / "nothere.csv")


def test_build_cli_folds_from(synth_root, tmp_path):
    """``mvdata build --folds-from SPLIT.csv`` writes the file's folds into the manifest; a
    bad file stops the build before any work with one message naming it (exit 2)."""
    subjects = sorted(
        make_plan(BuildConfig(source="synthetic", source_root=str(synth_root), **SMALL))
        .manifest["subject"]
        .unique()
    )
    split = tmp_path / "split.csv"
    split.write_text("subject,fold\n" + "".join(f"{s},{i}\n" for i, s in enumerate(subjects)))
    out = tmp_path / "out"
    args = ["--image-size", "32", "--samples-per-shard", "8", "--folds", "3", "--workers", "1"]
    r = _cli("build", str(synth_root), str(out), "--folds-from", str(split), *args)
    assert r.returncode == 0, r.stderr
    m = pl.read_parquet(out / "manifest.parquet")
    assert dict(zip(m["subject"], m["fold"], strict=True)) == {s: i for i, s in enumerate(subjects)}
    # dataset.json and the card name the file (not its local path) and digest its pairs.
    meta = json.loads((out / "dataset.json").read_text())
    pairs = json.dumps(sorted([s, i] for i, s in enumerate(subjects))).encode()
    digest = hashlib.sha256(pairs).hexdigest()[:16]
    assert meta["folds_from"] == f"split.csv ({len(subjects)} subjects, pairs sha256 {digest})"
    assert str(tmp_path) not in meta["folds_from"]
    assert f"read from `{meta['folds_from']}`" in (out / "README.md").read_text()
    broken = tmp_path / "broken.csv"
    broken.write_text("subject,fold\n" + "".join(f"{s},{i + 1}\n" for i, s in enumerate(subjects)))
    r = _cli("build", str(synth_root), str(tmp_path / "o2"), "--folds-from", str(broken), *args)
    assert r.returncode == 2 and "broken.csv" in r.stderr and "count from 0" in r.stderr
    assert not (tmp_path / "o2").exists()


def test_build_warns_before_rendering_when_a_convention_looks_wrong(tmp_path: Path) -> None:
    """A fresh build spot-checks the reader's conventions on a few frames before it renders
    anything (mvdata.sources.inspect.spot_check). FaceScape files as written: no warning. The
    same files with their textures stored upside down: one warning naming the texture v, handed
    to ``notice`` before the first shard is written and kept in the summary; the build goes on.
    A resumed build does not check again."""
    root = facescape_set(procedural_face(), tmp_path / "fs")
    cfg = BuildConfig(source="facescape", source_root=str(root), **SMALL)
    assert build(cfg, str(tmp_path / "a"), workers=1).warnings == []

    store_images_upside_down(root, "*.jpg", "JPEG")
    out = tmp_path / "b"
    seen: list[tuple[str, int]] = []

    def notice(line: str) -> None:
        seen.append((line, len(list((out / "data").glob("*.tar")))))

    s = build(cfg, str(out), workers=1, notice=notice)
    assert len(seen) == 1 and seen[0][1] == 0  # before any shard
    assert "the facescape reader's texture v disagrees with these files" in seen[0][0]
    assert s.warnings == [seen[0][0]] and s.finalized and s.num_failed == 0
    seen.clear()
    assert build(cfg, str(out), workers=1, notice=notice).warnings == [] and seen == []
