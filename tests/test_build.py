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
from mvdata.build.config import BuildConfig, parse_views
from mvdata.build.driver import build, finalize
from mvdata.build.plan import assign_folds, make_plan
from mvdata.shards.verify import verify_dataset
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig, iter_synth
from mvdata.synth.writer import write_synth

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
    with pytest.raises(ValueError, match="other settings"):
        build(
            BuildConfig(
                source="synthetic", source_root=str(synth_root), **{**SMALL, "image_size": 64}
            ),
            str(out),
        )
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
    """A 2 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
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
