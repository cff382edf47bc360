"""Loaders: DALI (CPU pipeline, for real) and webdataset give the same batches; resume, bad input.

The fixture writes a small shard directory with :class:`mvdata.shards.writer.ShardWriter` plus
the root files a loader reads (``dataset.json``, ``sizes.json``), validated by the pydantic
contracts (:mod:`mvdata.testing`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mvdata.loaders import Backend, LoaderDataError, make_loader, open_dataset, steps_per_epoch
from mvdata.loaders.batch import MultiviewBatch, unnormalise
from mvdata.loaders.dali.loader import DaliLoader
from mvdata.loaders.wds import WdsLoader
from mvdata.testing import CORRUPT, build_shard_dir, rows
from schemas.models import SampleJson

SIZE, T, V = 32, 2, 2  # mvdata.testing.build_shard_dir's defaults
DEPTH_SCALE = 0.25

_rows = rows
_unnormalise = unnormalise


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("shards")
    return out, build_shard_dir(out, [5, 5, 3])


def _epoch(loader: Any) -> list[MultiviewBatch]:
    return list(loader)


def _reference(out: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """PIL decode of one sample: images [T,V,H,W,3] uint8, depth [T,V,H,W] uint16."""
    import webdataset as wds

    for s in wds.WebDataset(
        sorted(str(p) for p in (out / "data").glob("*.tar")), shardshuffle=False, empty_check=False
    ):
        if s["__key__"] == key:
            img = np.stack(
                [
                    [
                        np.array(Image.open(io.BytesIO(s[f"t{t:02d}.v{v:02d}.rgb.jpg"])))
                        for v in range(V)
                    ]
                    for t in range(T)
                ]
            )
            dep = np.stack(
                [
                    [
                        np.array(Image.open(io.BytesIO(s[f"t{t:02d}.v{v:02d}.depth.png"])))
                        for v in range(V)
                    ]
                    for t in range(T)
                ]
            )
            return img, dep
    raise KeyError(key)


# --------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_eval_batches_shapes_values(shard_dir: tuple[Path, list[str]], backend: Backend) -> None:
    out, keys = shard_dir
    loader = make_loader(
        out, batch_size=4, backend=backend, device="cpu", train=False, num_workers=1
    )
    assert len(loader) == steps_per_epoch(13, 1, 4) == 4
    batches = _epoch(loader)
    assert len(batches) == 4
    b0 = batches[0]
    assert b0.images.shape == (4, T, V, 3, SIZE, SIZE) and b0.images.dtype == torch.float32
    assert b0.depth is not None and b0.depth.shape == (4, T, V, 1, SIZE, SIZE)
    got = [k for b in batches for k, ok in zip(b.keys, b.valid.tolist(), strict=True) if ok]
    assert got == keys  # eval: sorted shard order, stored sample order, nothing lost
    assert batches[-1].valid.tolist() == [True, False, False, False]
    assert batches[-1].meta[1] is None and batches[-1].keys[1] == ""
    m0 = batches[0].meta[0]
    assert m0 is not None and SampleJson.model_validate(m0).key == keys[0]
    # pixel values against a PIL decode of the stored bytes; depth exactly, in mm
    img, dep = _reference(out, keys[1])
    ours = _unnormalise(b0.images[1]).permute(0, 1, 3, 4, 2).numpy()
    assert np.abs(ours - img.astype(np.float32)).mean() < 2.0
    assert torch.equal(b0.depth[1, :, :, 0], torch.from_numpy(dep.astype(np.float32)) * DEPTH_SCALE)
    assert loader.epoch == 1


def test_dali_and_wds_agree(shard_dir: tuple[Path, list[str]]) -> None:
    out, _ = shard_dir
    a = _epoch(make_loader(out, batch_size=5, backend="dali", device="cpu", train=False))
    b = _epoch(
        make_loader(out, batch_size=5, backend="wds", device="cpu", train=False, num_workers=0)
    )
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys == y.keys and torch.equal(x.valid, y.valid)
        m = x.valid
        diff = (_unnormalise(x.images[m]) - _unnormalise(y.images[m])).abs().mean()
        assert diff < 2.0, diff  # 2/255 of the range: decoder tolerance
        assert x.depth is not None and y.depth is not None
        assert torch.equal(x.depth[m], y.depth[m])


def test_remote_url_streams_through_webdataset(shard_dir: tuple[Path, list[str]]) -> None:
    """An fsspec URL (here the in-process ``memory://`` filesystem, no network) is opened,
    checked and streamed by the webdataset loader with the same batches as the local copy; DALI
    refuses it with a message; a ``file://`` URL counts as local and DALI reads it."""
    import fsspec

    out, keys = shard_dir
    mem = fsspec.filesystem("memory")
    mem.put(str(out), "/remote-fixture/shards", recursive=True)
    url = "memory://remote-fixture/shards"
    kw: dict[str, Any] = dict(batch_size=4, device="cpu", train=False, num_workers=0)
    remote = make_loader(url, **kw)
    assert remote.backend == "wds"  # auto: DALI cannot read it
    local = make_loader(out, backend="wds", **kw)
    for x, y in zip(_epoch(remote), _epoch(local), strict=True):
        assert x.keys == y.keys and torch.equal(x.images, y.images)
    with pytest.raises(ValueError, match="remote and DALI reads local files only"):
        make_loader(url, backend="dali", **kw)
    with pytest.raises(ValueError, match="memory://remote-fixture/nothing/dataset.json not found"):
        open_dataset("memory://remote-fixture/nothing")
    as_file = make_loader(f"file://{out}", backend="dali", **kw)
    assert [k for k, ok in _rows(as_file) if ok] == keys


@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_train_epoch_permutes_and_covers(
    shard_dir: tuple[Path, list[str]], backend: Backend
) -> None:
    out, keys = shard_dir
    loader = make_loader(
        out, batch_size=4, backend=backend, device="cpu", train=True, seed=3, num_workers=1
    )
    seen = []
    for _ in range(2):
        seen.append(
            [k for b in loader for k, ok in zip(b.keys, b.valid.tolist(), strict=True) if ok]
        )
    for s in seen:
        assert sorted(s) == keys  # each sample exactly once per epoch
    assert seen[0] != keys or seen[1] != keys  # shuffled
    b = next(iter(loader))
    assert torch.isfinite(b.images).all()
    assert b.depth is not None and (b.depth == 0).any() and (b.depth > 0).any()


@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_checkpoint_resume(shard_dir: tuple[Path, list[str]], backend: Backend) -> None:
    """Read 2 batches, save the state, build a new loader from it: the rest equals a full run."""
    out, _ = shard_dir
    kw: dict[str, Any] = dict(batch_size=2, backend=backend, device="cpu", train=True, seed=7)
    full = make_loader(out, **kw)
    ref = [b for _ in range(2) for b in full]  # two uninterrupted epochs
    part = make_loader(out, **kw)
    it = iter(part)
    first = [next(it), next(it)]
    state = json.loads(json.dumps(part.state_dict()))  # survives a JSON round trip
    assert state["step"] == 2
    assert [b.keys for b in iter(part)][0] == ref[2].keys  # a new iter() continues too
    del it, part
    resumed = make_loader(out, **kw, state=state)
    got = first + list(resumed) + list(resumed)  # rest of epoch 0, then epoch 1
    assert [b.keys for b in got] == [b.keys for b in ref]
    for x, y in zip(got, ref, strict=True):
        assert torch.equal(x.images, y.images)  # augmentation state restored too


def test_normals(tmp_path: Path) -> None:
    """Normal maps: exact stored values (as unit vectors, zero on background) from both backends,
    equal between them; in training the crop that moves depth moves normals the same way."""
    import webdataset as wds

    keys = build_shard_dir(tmp_path, [3, 2], modalities=("rgb", "depth", "normal"))
    ref = {
        s["__key__"]: np.stack(
            [np.array(Image.open(io.BytesIO(s[e]))) for e in sorted(s) if e.endswith("normal.png")]
        )
        for s in wds.WebDataset(
            str(tmp_path / "data" / "train-00000{0..1}.tar"), shardshuffle=False
        )
    }
    kw: dict[str, Any] = dict(batch_size=2, device="cpu", num_workers=1)
    dali = _epoch(make_loader(tmp_path, backend="dali", train=False, **kw))
    web = _epoch(make_loader(tmp_path, backend="wds", train=False, **kw))
    for x, y in zip(dali, web, strict=True):
        assert x.normals is not None and y.normals is not None
        assert x.normals.shape == (2, T, V, 3, SIZE, SIZE)
        assert x.keys == y.keys and torch.equal(x.normals[x.valid], y.normals[y.valid])
        for i, key in enumerate(x.keys):
            if not key:
                continue
            stored = torch.from_numpy(ref[key]).float().reshape(T, V, SIZE, SIZE, 3)
            want = torch.nn.functional.normalize(stored * (2 / 255) - 1, dim=-1)
            want = want * (stored.amax(-1, keepdim=True) > 0)
            assert torch.allclose(x.normals[i].permute(0, 1, 3, 4, 2), want, atol=1e-6)
    assert [k for b in dali for k in b.keys if k] == keys
    fg = dali[0].normals[0].norm(dim=2)  # type: ignore[union-attr]
    assert torch.allclose(fg[fg > 0], torch.ones(1), atol=1e-5) and (fg == 0).any()
    for backend in ("dali", "wds"):
        for b in _epoch(make_loader(tmp_path, backend=backend, train=True, max_zoom=0.3, **kw)):
            assert b.normals is not None and b.depth is not None
            m = b.valid
            assert torch.equal(b.normals[m].norm(dim=3) > 0, b.depth[m, :, :, 0] > 0), backend
    off = make_loader(tmp_path, backend="dali", train=False, with_normals=False, **kw)
    assert next(iter(off)).normals is None


@pytest.mark.parametrize("train", [False, True])
def test_dali_gpu_graph_defines_without_a_gpu(tmp_path: Path, train: bool) -> None:
    """The ``device="mixed"`` graph is defined without a GPU: every operator accepts its inputs'
    placement, and images, depth and normals leave on the device. Building it needs CUDA, so
    only the definition runs here; the GPU run is bench/device/gpu_checks.py."""
    from nvidia.dali import Pipeline

    from mvdata.loaders.dali.graph import define_graph

    build_shard_dir(tmp_path, [3, 2], modalities=("rgb", "depth", "normal"))
    info = open_dataset(tmp_path)
    pipe = Pipeline(batch_size=2, num_threads=1, device_id=0)
    with pipe:
        outs = define_graph(
            info,
            info.shards,
            gpu=True,
            rank=0,
            world_size=1,
            size=24,
            train=train,
            shuffle=train,
            shuffle_seed=0,
            with_depth=True,
            with_normals=True,
            on_missing="skip",
        )
    # json, source stay on the host; images, depth, normals are on the device
    assert [o.device for o in outs] == ["cpu", "cpu", "gpu", "gpu", "gpu"]


@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_corrupt_member_skipped(tmp_path: Path, backend: Backend) -> None:
    """A JPEG in the first batch and a depth PNG later are corrupt: both backends skip and count
    them, and every other sample comes once, in order."""
    keys = build_shard_dir(tmp_path, [4, 3], edit=CORRUPT)
    loader = make_loader(
        tmp_path, batch_size=2, backend=backend, device="cpu", train=False, num_workers=1
    )
    batches = _epoch(loader)
    got = [k for b in batches for k, ok in zip(b.keys, b.valid.tolist(), strict=True) if ok]
    assert got == [k for k in keys if k not in CORRUPT]
    assert len(batches) == len(loader)
    assert isinstance(loader, DaliLoader | WdsLoader) and loader.errors == 2


@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_corrupt_json_reported_when_read(tmp_path: Path, backend: Backend) -> None:
    """A json member that no longer parses (overwritten in place after writing, as the writer
    validates json) leaves the sample's images in the batch (training never reads json) and
    raises, naming shard and key, when its meta is read; the other rows' meta parse."""
    keys = build_shard_dir(tmp_path, [3, 2])
    tar = tmp_path / "data" / "train-000000.tar"
    idx = (tmp_path / "data" / "train-000000.idx").read_text().split("\n")
    _, off, size, _ = idx[3].split(" ")[:4]  # sample 2's first member is its json
    with open(tar, "r+b") as f:
        f.seek(int(off))
        f.write(b"{" + b"!" * (int(size) - 1))
    loader = make_loader(
        tmp_path, batch_size=2, backend=backend, device="cpu", train=False, num_workers=1
    )
    batches = _epoch(loader)
    assert [k for k, ok in _rows(batches) if ok] == keys
    for b in batches:
        for i, key in enumerate(b.keys):
            if key == "syn_0002":
                with pytest.raises(LoaderDataError, match="train-000000.* key syn_0002: json"):
                    b.meta[i]
            elif key:
                meta = b.meta[i]
                assert meta is not None and meta["key"] == key


def test_corrupt_member_error_policy(tmp_path: Path) -> None:
    build_shard_dir(tmp_path, [4, 3], edit=CORRUPT)
    loader = make_loader(
        tmp_path, batch_size=2, backend="dali", device="cpu", train=False, on_corrupt="error"
    )
    with pytest.raises(LoaderDataError) as err:
        _epoch(loader)
    assert "shard train-000000 key syn_0001 member t01.v00.rgb.jpg" in str(err.value)
    assert "shard train-000001 key syn_0005 member t00.v01.depth.png" in str(err.value)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_dali_corrupt_skip_keeps_the_epoch(tmp_path: Path, batch_size: int) -> None:
    """Shuffled training over data with corrupt members deep in the epoch gives exactly the rows
    of the same run over clean data, with the corrupt samples masked: the restart from DALI's
    checkpoint neither repeats nor loses a batch, and the step count is unchanged."""
    bad = {
        "syn_0009": {"t01.v00.rgb.jpg": b"\xff\xd8junk"},
        "syn_0013": {"t00.v01.depth.png": b"\x89PNG\r\n\x1a\nbroken"},
        "syn_0014": {"t00.v00.rgb.jpg": b""},
    }
    kw: dict[str, Any] = dict(
        batch_size=batch_size,
        backend="dali",
        device="cpu",
        train=True,
        num_workers=1,
        initial_fill=4,
        seed=3,
    )
    build_shard_dir(tmp_path / "clean", [6, 6, 5])
    build_shard_dir(tmp_path / "bad", [6, 6, 5], edit=bad)
    clean = _rows(make_loader(tmp_path / "clean", **kw))
    loader = make_loader(tmp_path / "bad", **kw)
    got = _rows(loader)
    assert got == [("", False) if k in bad else (k, ok) for k, ok in clean]
    assert isinstance(loader, DaliLoader) and loader.errors == 3
    # The next epoch reads the patched index from the start: no new failure, same masking.
    again = _rows(loader)
    assert {k for k, ok in again if ok} == {k for k, ok in clean if ok} - set(bad)
    assert loader.errors == 3


def test_dali_corrupt_search_decodes_only_the_failed_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding a corrupt member late in an epoch decodes the batches around the failure, not
    everything read before it."""
    from mvdata.loaders.dali import loader as dali

    keys = build_shard_dir(tmp_path, [8] * 5, edit={"syn_0036": CORRUPT["syn_0001"]})
    decoded: list[int] = []
    real = dali.member_decodes
    monkeypatch.setattr(dali, "member_decodes", lambda b: decoded.append(1) or real(b))
    loader = make_loader(tmp_path, batch_size=2, backend="dali", device="cpu", train=False)
    got = [k for k, ok in _rows(loader) if ok]
    assert got == [k for k in keys if k != "syn_0036"] and loader.errors == 1
    members = 2 * T * V  # rgb + depth of a sample
    assert 0 < len(decoded) <= 12 * members < len(keys) * members


def test_dali_quarantine_survives_resume(tmp_path: Path) -> None:
    """A saved state carries the quarantine: a new loader resumed from it masks the same sample
    without DALI failing on it again, and finishes the epoch with the uninterrupted run's rows."""
    build_shard_dir(tmp_path, [4, 6], edit={"syn_0006": CORRUPT["syn_0001"]})
    kw: dict[str, Any] = dict(batch_size=2, backend="dali", device="cpu", train=False)
    full = _rows(make_loader(tmp_path, **kw))
    first = make_loader(tmp_path, **kw)
    it = iter(first)
    head = [row for _ in range(4) for row in _rows([next(it)])]
    state = json.loads(json.dumps(first.state_dict()))
    assert state["quarantine"][0][:3] == ["train-000001", 2, "t01.v00.rgb.jpg"]
    resumed = make_loader(tmp_path, state=state, **kw)
    assert isinstance(resumed, DaliLoader) and resumed.errors == 1
    assert head + _rows(resumed) == full
    assert ("syn_0006", True) not in full


def test_missing_member_skipped_dali(tmp_path: Path) -> None:
    keys = build_shard_dir(tmp_path, [3, 3])
    idx = tmp_path / "data" / "train-000000.idx"
    lines = idx.read_text().split("\n")
    parts = lines[2].split(" ")
    drop = parts.index("t00.v01.depth.png")
    lines[2] = " ".join(parts[:drop] + parts[drop + 4 :])  # sample 1 loses a member
    idx.write_text("\n".join(lines))
    loader = make_loader(tmp_path, batch_size=2, backend="dali", device="cpu", train=False)
    assert isinstance(loader, DaliLoader) and loader.skipped == 1
    got = [k for b in _epoch(loader) for k, ok in zip(b.keys, b.valid.tolist(), strict=True) if ok]
    assert got == [k for k in keys if k != "syn_0001"]
    with pytest.raises(LoaderDataError, match="train-000000 key syn_0001"):
        make_loader(tmp_path, batch_size=2, backend="dali", device="cpu", on_missing="error")


def test_not_ours_and_version(tmp_path: Path, shard_dir: tuple[Path, list[str]]) -> None:
    with pytest.raises(ValueError, match="dataset.json not found"):
        make_loader(tmp_path, batch_size=2)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="dataset.json: format"):
        open_dataset(tmp_path)
    src, _ = shard_dir
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    meta = json.loads((copy / "dataset.json").read_text())
    meta["schema_version"] = "2.0"
    (copy / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"dataset.json: schema version 2.0 is not compatible"):
        make_loader(copy, batch_size=2)
    meta["schema_version"] = "1.7"  # same major: accepted
    (copy / "dataset.json").write_text(json.dumps(meta))
    assert open_dataset(copy).total == 13
    os.remove(copy / "data" / "train-000001.idx")
    with pytest.raises(ValueError, match="train-000001.idx is missing"):
        open_dataset(copy)


def test_device_checks_dry_run(tmp_path: Path) -> None:
    """bench/device/gpu_checks.py (what a GPU session runs) passes with the CPU standing in, so
    a session with a device spends its minutes measuring, not debugging the script."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "checks.json"
    subprocess.run(
        [sys.executable, "bench/device/gpu_checks.py", "--device", "cpu", "--out", str(out)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        capture_output=True,
    )
    assert json.loads(out.read_text())["all_ok"] is True
