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

from mvdata.loaders import (
    Backend,
    LoaderDataError,
    make_loader,
    open_dataset,
    steps_per_epoch,
    without_folds,
)
from mvdata.loaders.batch import MultiviewBatch, normals_from_uint8, unnormalise
from mvdata.loaders.dali.loader import DaliLoader
from mvdata.loaders.wds import WdsLoader
from mvdata.testing import CORRUPT, assign_folds, build_shard_dir, rows, write_build_root_files
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


@pytest.mark.parametrize("backend", ["dali", "wds"])
def test_exclude_folds_never_reads_them(tmp_path: Path, backend: Backend) -> None:
    """``exclude_folds``: the left-out folds' samples are in no batch, every other sample is in
    exactly one valid row per epoch, ``len(loader)`` counts only those, the shard whose samples
    are all left out is not opened, and a resumed loader continues with the same batches."""
    build_shard_dir(tmp_path, [5, 5, 3])
    fold = assign_folds(tmp_path, 3)
    kept = sorted(k for k, f in fold.items() if f not in (0, 2))  # keys 1, 4, 7, 10: fold 1
    kw: dict[str, Any] = dict(
        batch_size=2, backend=backend, device="cpu", train=True, seed=5, num_workers=1
    )
    loader = make_loader(tmp_path, exclude_folds=[0, 2], **kw)
    assert loader.info.total == len(kept) == 4 and loader.info.left_out_folds == (0, 2)
    assert len(loader) == steps_per_epoch(len(kept), 1, 2)  # 2, not 7 (all 13 samples)
    ref = [b for _ in range(2) for b in loader]
    for epoch in (ref[:2], ref[2:]):
        got = [k for k, ok in _rows(epoch) if ok]
        assert sorted(got) == kept  # every training sample once, no held-out one
    part = make_loader(tmp_path, exclude_folds=[0, 2], **kw)
    first = [next(iter(part))]
    state = json.loads(json.dumps(part.state_dict()))
    resumed = make_loader(tmp_path, exclude_folds=[0, 2], state=state, **kw)
    got_rows = first + list(resumed) + list(resumed)
    assert [b.keys for b in got_rows] == [b.keys for b in ref]
    # nothing left out: the plain loader, every sample
    assert make_loader(tmp_path, exclude_folds=[], **kw).info.total == 13


def test_exclude_folds_drops_an_emptied_shard(tmp_path: Path) -> None:
    """A shard all of whose samples are left out is dropped from the view (DALI refuses an empty
    index), and both backends still agree on the rest."""
    build_shard_dir(tmp_path, [4, 2])
    fold = assign_folds(tmp_path, 4)  # shard 1 holds keys 4, 5: folds 0, 1
    info = without_folds(open_dataset(tmp_path), [0, 1])
    assert info.shards == ["train-000000"] and info.sizes == {"train-000000": 2}
    twice = without_folds(without_folds(open_dataset(tmp_path), [0]), [1])  # a view of a view
    assert twice.sizes == info.sizes and twice.left_out_folds == (0, 1)
    assert info.keep == {k for k, f in fold.items() if f >= 2}
    kw: dict[str, Any] = dict(batch_size=3, device="cpu", train=False, exclude_folds=[0, 1])
    a = _rows(make_loader(tmp_path, backend="dali", **kw))
    b = _rows(make_loader(tmp_path, backend="wds", num_workers=0, **kw))
    assert a == b == [("syn_0002", True), ("syn_0003", True), ("", False)]
    index_dir = info.index_dir
    assert index_dir is not None and os.path.isdir(index_dir)
    del info  # the reduced indexes go with the view
    import gc

    gc.collect()
    assert not os.path.exists(index_dir)


def test_exclude_folds_bad_manifest(tmp_path: Path) -> None:
    """One message naming the file: no manifest, a manifest from another build, every sample
    left out."""
    build_shard_dir(tmp_path, [3])
    kw: dict[str, Any] = dict(batch_size=2, device="cpu", exclude_folds=[1])
    with pytest.raises(ValueError, match=r"manifest.parquet not found: leaving folds out"):
        make_loader(tmp_path, **kw)
    (tmp_path / "manifest.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"manifest.parquet: no readable key and fold columns"):
        make_loader(tmp_path, **kw)
    write_build_root_files(tmp_path)
    import polars as pl

    m = pl.read_parquet(tmp_path / "manifest.parquet")
    m.filter(pl.col("key") != "syn_0001").write_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match=r"train-000000.idx lists sample syn_0001, which .*"):
        make_loader(tmp_path, **kw)
    write_build_root_files(tmp_path)  # every sample in fold 0
    with pytest.raises(ValueError, match=r"every sample is in the left-out folds \[0\]"):
        make_loader(tmp_path, batch_size=2, device="cpu", exclude_folds=[0])


def test_normals_from_uint8_against_a_float64_reference() -> None:
    """Every stored triple on a grid (and each channel's extremes) decodes to the unit vector of
    ``2 v / 255 - 1`` (normalised in float64) within float32 rounding; the background (0, 0, 0) to zero; a
    triple with one or two zero channels is still a normal. Laid out ``[B, T, V, 3, H, W]`` as
    the loaders give them."""
    levels = np.unique(np.r_[np.arange(0, 256, 5), [1, 127, 128, 254, 255]]).astype(np.uint8)
    trip = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    side = int(np.ceil(np.sqrt(len(trip))))
    pad = np.zeros((side * side - len(trip), 3), np.uint8)
    stored = np.concatenate([trip, pad]).reshape(side, side, 3)
    got = normals_from_uint8(torch.from_numpy(stored).permute(2, 0, 1)[None, None, None])
    got_np = got[0, 0, 0].permute(1, 2, 0).numpy().reshape(-1, 3)[: len(trip)]
    # The reference starts from the float32 values the loaders compute (2 v / 255 - 1 in
    # float32 has an absolute error of ~6e-8, up to 1e-5 once a short vector is normalised).
    v = (trip.astype(np.float32) * np.float32(2 / 255) - np.float32(1)).astype(np.float64)
    want = v / np.linalg.norm(v, axis=-1, keepdims=True)
    want[(trip == 0).all(-1)] = 0.0
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got_np, want, rtol=0, atol=3e-7)
    background = (trip == 0).all(-1)
    assert background.sum() == 1 and (got_np[background] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(got_np[~background], axis=-1), 1.0, atol=3e-7)


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
    # 2 of 7 bad is over the webdataset loader's default limit (5 %): allow it here.
    extra: dict[str, Any] = {"max_bad_fraction": 0.5} if backend == "wds" else {}
    loader = make_loader(
        tmp_path, batch_size=2, backend=backend, device="cpu", train=False, num_workers=1, **extra
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


def test_corrupt_member_error_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_corrupt="error"`` raises at the first failure, naming the step, the reading window
    and its shard and DALI's reason, without decoding anything to find the culprit."""
    from mvdata.loaders.dali import loader as dali

    build_shard_dir(tmp_path, [4, 3], edit=CORRUPT)
    checked: list[str] = []
    real = dali.member_problem
    monkeypatch.setattr(dali, "member_problem", lambda *a: checked.append(a[0]) or real(*a))
    loader = make_loader(
        tmp_path, batch_size=2, backend="dali", device="cpu", train=False, on_corrupt="error"
    )
    with pytest.raises(LoaderDataError) as err:
        _epoch(loader)
    msg = str(err.value)
    assert "at step 0 of epoch 0" in msg and "in shard(s) train-000000" in msg
    assert "DALI: " in msg and "nvImageCodec failure" in msg and "\n" not in msg
    assert checked == []  # never scans


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
    real = dali.member_problem
    monkeypatch.setattr(dali, "member_problem", lambda *a: decoded.append(1) or real(*a))
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


# ------------------------------------------------------------- bad input: errors never hide
_DALI_HEAD = (
    "Critical error in pipeline:\nError in {dev} operator `nvidia.dali.fn.{op}`,\nwhich was used "
    'in the pipeline definition with the following traceback:\n\n  File "/x/graph.py", line 1, '
    "in define_graph\n    x = fn.{op}(\n\nencountered:\n\n{what}\nCurrent pipeline object is "
    "no longer valid.\nCurrent pipeline object is no longer valid."
)


@pytest.mark.parametrize(
    ("op", "what", "dev", "data"),
    [
        # a JPEG or PNG the decoder gives up on (junk, truncated, empty)
        ("decoders.image", "nvImageCodec failure: '#3'", "CPU", True),
        ("decoders.image", "nvImageCodec failure: '#4'", "MIXED", True),
        # libpng refusing a chunk CRC names the sample
        (
            "decoders.image",
            "Failed to decode sample #1 : /d/data/train-000000.tar:25088:k.t00.v01.depth.png",
            "CPU",
            True,
        ),
        # a member of another size or channel count (graph._stored_shape)
        (
            "reshape",
            'Assert on "actual_volume * input_element_size == requested_volume * '
            'output_element_size" failed: Input and output samples must occupy the same size '
            "in bytes.\nSample index:     1\nInput shape:\t20 x 20 x 3\nRequested shape:\t32 x 32 x 3",
            "CPU",
            True,
        ),
        (
            "stack",
            'Assert on "shape_t == shape_0" failed: Tensor stacking requires that all tensors '
            "being stacked are of equal shape. The first batch has a shape: {3 x 32 x 32}",
            "CPU",
            True,
        ),
        # the machine's trouble, whichever operator met it
        ("decoders.image", "std::bad_alloc", "CPU", False),
        ("decoders.image", "CUDA error: out of memory (cudaErrorMemoryAllocation)", "MIXED", False),
        (
            "decoders.image",
            "nvImageCodec failure: '#3' after cudaErrorMemoryAllocation",
            "MIXED",
            False,
        ),
        # any other operator's failure is a bug, not data
        ("resize", "Invalid argument: roi_start must be within [0, 1]", "CPU", False),
    ],
)
def test_is_data_error_per_message_shape(op: str, what: str, dev: str, data: bool) -> None:
    """The one place that tells DALI's data errors (which send the loader looking for the bad
    member) from everything else (raised at once): one case per message shape, as DALI 2.4
    words them (the data ones were recorded from real runs over the campaign's members)."""
    from mvdata.loaders.dali.loader import is_data_error

    assert is_data_error(RuntimeError(_DALI_HEAD.format(op=op, what=what, dev=dev))) is data


def test_is_data_error_reader_and_types() -> None:
    from mvdata.loaders.dali.loader import is_data_error

    outside = (
        'Critical error in pipeline:\nAssert on "component.offset < static_cast<int64_t>'
        '(current_wds_shard->Size())" failed: Malformed index file at "/d/data/train-000000.idx" '
        "line 3 - offset is outside of the archive file\nC++ context: [/opt/dali/dali/operators/"
        "reader/loader/webdataset_loader.cc:320]"
    )
    assert is_data_error(RuntimeError(outside))
    other_index = 'Malformed index file at "/d/x.idx" line 1 - wrong version'
    assert not is_data_error(RuntimeError(other_index))
    head = _DALI_HEAD.format(op="decoders.image", what="nvImageCodec failure: '#3'", dev="CPU")
    assert not is_data_error(ValueError(head))  # not what DALI raises: a bug of ours
    assert not is_data_error(RuntimeError("something else entirely"))


def _crc_broken(png: bytes) -> bytes:
    b = bytearray(png)
    i = b.find(b"IDAT")
    b[i + 4 + int.from_bytes(b[i - 4 : i], "big")] ^= 0xFF  # first byte of the IDAT CRC
    return bytes(b)


def _member(key: str, ext: str, seed: int = 0) -> bytes:
    from mvdata.testing import sample_members

    return sample_members(key, np.random.default_rng(seed))[ext]


def _dali_rejects_pil_accepts() -> dict[str, dict[str, dict[str, bytes]]]:
    """Members DALI refuses although PIL's plain ``open().load()`` takes them."""
    from mvdata.shards.codecs import encode_jpeg, encode_png8

    return {
        "png-crc": {
            "syn_0006": {"t00.v01.depth.png": _crc_broken(_member("x", "t00.v01.depth.png"))}
        },
        "wrong-size-jpeg": {
            "syn_0006": {"t00.v00.rgb.jpg": encode_jpeg(np.full((20, 20, 3), 90, np.uint8), 90)}
        },
        "rgb-png-in-depth": {
            "syn_0006": {"t01.v00.depth.png": encode_png8(np.full((SIZE, SIZE, 3), 7, np.uint8))}
        },
    }


@pytest.mark.parametrize("case", ["png-crc", "wrong-size-jpeg", "rgb-png-in-depth"])
@pytest.mark.parametrize("train", [False, True])
def test_dali_masks_what_pil_accepts(tmp_path: Path, case: str, train: bool) -> None:
    """A PNG failing its IDAT CRC, a 20 px JPEG in a 32 px set, an RGB PNG in a depth slot:
    DALI refuses each (in training too: the stored-shape check), the culprit search pins it
    (before: "no undecodable member found by PIL" ended the epoch) and the row is masked."""
    edit = _dali_rejects_pil_accepts()[case]
    kw: dict[str, Any] = dict(
        batch_size=2, backend="dali", device="cpu", train=train, seed=1, num_workers=1
    )
    build_shard_dir(tmp_path / "clean", [4, 4])
    build_shard_dir(tmp_path / "bad", [4, 4], edit=edit)
    clean = _rows(make_loader(tmp_path / "clean", **kw))
    loader = make_loader(tmp_path / "bad", **kw)
    assert _rows(loader) == [("", False) if k in edit else (k, ok) for k, ok in clean]
    assert isinstance(loader, DaliLoader) and loader.errors == 1


def test_wds_refuses_what_dali_refuses(tmp_path: Path) -> None:
    """The same members (and an 8-bit PNG in a depth slot) are skipped and counted by the
    webdataset loader; before, a wrong-size JPEG was resized and used, an 8-bit depth PNG was
    read as millimetres and a broken CRC went unseen."""
    from mvdata.shards.codecs import encode_png8

    cases = _dali_rejects_pil_accepts()
    edit = {
        "syn_0001": cases["png-crc"]["syn_0006"],
        "syn_0003": cases["wrong-size-jpeg"]["syn_0006"],
        "syn_0005": cases["rgb-png-in-depth"]["syn_0006"],
        "syn_0006": {"t00.v00.depth.png": encode_png8(np.full((SIZE, SIZE), 9, np.uint8))},
    }
    keys = build_shard_dir(tmp_path, [4, 4], edit=edit)
    loader = make_loader(
        tmp_path,
        batch_size=3,
        backend="wds",
        device="cpu",
        train=False,
        num_workers=0,
        max_bad_fraction=0.5,
    )
    assert [k for k, ok in _rows(loader) if ok] == [k for k in keys if k not in edit]
    assert isinstance(loader, WdsLoader) and loader.errors == 4


def test_wds_decoder_bug_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the decoder (here: the augmentation parameters raise) stops the epoch with that
    error; before, the handler swallowed it and training got all-padding batches."""
    from mvdata.loaders import wds as wds_loader

    build_shard_dir(tmp_path, [3, 2])

    def broken(self: Any, key: str) -> Any:
        raise TypeError("a bug in the augmentation")

    monkeypatch.setattr(wds_loader._Decoder, "_params", broken)
    loader = make_loader(tmp_path, batch_size=2, backend="wds", device="cpu", num_workers=0)
    with pytest.raises(TypeError, match="a bug in the augmentation"):
        _epoch(loader)


def _zero_fill(path: Path) -> None:
    path.write_bytes(b"\0" * path.stat().st_size)


def test_wds_counts_samples_a_broken_tar_loses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A zero-filled tar yields nothing and raises nothing, a bad header ends its shard: every
    sample sizes.json promises and the tar did not yield is counted and logged with the shard
    (before: 0 and 1 counted), and past ``max_bad_fraction`` the epoch stops naming them."""
    import logging

    keys = build_shard_dir(tmp_path, [4, 4, 4])
    _zero_fill(tmp_path / "data" / "train-000001.tar")
    tar2 = tmp_path / "data" / "train-000002.tar"
    idx2 = (tmp_path / "data" / "train-000002.idx").read_text().split("\n")
    header = int(idx2[3].split(" ")[1]) - 512  # sample 2's first header
    data = bytearray(tar2.read_bytes())
    data[header + 148 : header + 156] = b"garbage!"  # its header checksum
    tar2.write_bytes(bytes(data))
    kw: dict[str, Any] = dict(batch_size=4, backend="wds", device="cpu", train=False)
    with caplog.at_level(logging.WARNING, logger="mvdata.loaders.wds"):
        loader = make_loader(tmp_path, num_workers=1, max_bad_fraction=1.0, **kw)
        got = [k for k, ok in _rows(loader) if ok]
    assert got == keys[:4] + keys[8:10]
    assert isinstance(loader, WdsLoader) and loader.errors == 4 + 2
    assert "LOST 4 of the 4 samples of shard" in caplog.text and "train-000001.tar" in caplog.text
    assert "LOST 2 of the 4 samples" in caplog.text and "train-000002.tar" in caplog.text
    with pytest.raises(LoaderDataError, match=r"4 of the 12 samples .* train-000001 \(4\)"):
        _epoch(make_loader(tmp_path, num_workers=0, **kw))


def test_wds_inflated_sizes_json_stops(tmp_path: Path) -> None:
    """sizes.json (with dataset.json, so that they agree) promising 200 samples of a 4-sample
    shard: the loss is counted and the epoch stops; before, 49 all-padding steps, no warning."""
    build_shard_dir(tmp_path, [4, 3])
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    sizes["shards"]["data/train-000000.tar"] = 200
    (tmp_path / "sizes.json").write_text(json.dumps(sizes))
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["num_samples"] = 203
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    loader = make_loader(tmp_path, batch_size=4, backend="wds", device="cpu", num_workers=0)
    with pytest.raises(LoaderDataError, match="196 of the 203 samples"):
        _epoch(loader)
    # DALI compares each index with sizes.json before it starts.
    with pytest.raises(ValueError, match=r"train-000000.idx lists 4 samples, sizes.json 200"):
        make_loader(tmp_path, batch_size=4, backend="dali", device="cpu")


def test_dali_truncated_tar_masked_at_start(tmp_path: Path) -> None:
    """A tar cut short: the samples whose members lie past its end are masked before DALI
    starts (DALI itself stops on "offset is outside of the archive file"); the error policy
    refuses to start, naming the first."""
    keys = build_shard_dir(tmp_path, [4, 3])
    tar = tmp_path / "data" / "train-000000.tar"
    idx = (tmp_path / "data" / "train-000000.idx").read_text().split("\n")
    cut = int(idx[3].split(" ")[1]) + 10  # inside sample 2's json
    tar.write_bytes(tar.read_bytes()[:cut])
    kw: dict[str, Any] = dict(batch_size=2, backend="dali", device="cpu", train=False)
    loader = make_loader(tmp_path, **kw)
    assert [k for k, ok in _rows(loader) if ok] == [k for k in keys if k not in keys[2:4]]
    assert isinstance(loader, DaliLoader) and loader.errors == 2
    with pytest.raises(LoaderDataError, match=r"shard train-000000 key syn_0002 member json"):
        make_loader(tmp_path, on_corrupt="error", **kw)


def test_dali_zero_filled_tar_refused_at_start(tmp_path: Path) -> None:
    build_shard_dir(tmp_path, [4, 3])
    _zero_fill(tmp_path / "data" / "train-000001.tar")
    with pytest.raises(ValueError, match=r"train-000001.tar: not a tar archive .*zero-filled"):
        make_loader(tmp_path, batch_size=2, backend="dali", device="cpu")


def test_dali_error_that_is_not_data_is_raised_at_once(tmp_path: Path) -> None:
    """An out-of-memory in the decoder (a JPEG declaring 60,000² pixels, under a memory limit)
    is raised as DALI raised it, with a note of where it was reading, and nothing is scanned;
    before, every RuntimeError sent the loader decoding its share with PIL."""
    import subprocess
    import sys

    script = f"""
import resource, sys, numpy as np
from pathlib import Path
from mvdata.loaders import make_loader, LoaderDataError
from mvdata.shards.codecs import encode_jpeg
from mvdata.testing import build_shard_dir

data = bytearray(encode_jpeg(np.full((32, 32, 3), 90, np.uint8), 90))
i = data.find(b"\\xff\\xc0")
data[i + 5:i + 9] = (60000).to_bytes(2, "big") * 2
out = Path({str(tmp_path)!r})
build_shard_dir(out, [4, 3], edit={{"syn_0001": {{"t00.v00.rgb.jpg": bytes(data)}}}})
loader = make_loader(out, batch_size=2, backend="dali", device="cpu", train=False, num_workers=1)
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
try:
    list(loader)
except LoaderDataError as exc:
    print("LOADERDATAERROR", exc)
except RuntimeError as exc:
    print("RUNTIMEERROR", "bad_alloc" in str(exc), exc.__notes__)
print("ERRORS", loader.errors)
"""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert "RUNTIMEERROR True" in r.stdout, r.stdout + r.stderr[-2000:]
    assert "at step 0 of epoch 0" in r.stdout and "train-000000" in r.stdout
    assert "ERRORS 0" in r.stdout  # nothing masked: the data was never searched
