"""Three independent readers load the same shards and agree with what was written.

- ``webdataset.WebDataset`` (keys, member sets, json),
- DALI ``fn.readers.webdataset`` on the CPU with our ``.idx`` files (member bytes),
- ``datasets.load_dataset("webdataset", data_files=...)`` offline (keys, member sets, json).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvdata.shards.names import member_names, shard_paths
from mvdata.shards.reader import iter_samples
from tests.test_shards import FRAMES, MODALITIES, SIZE, VIEWS, build_dataset

EXTS = member_names(FRAMES, VIEWS, MODALITIES)


def _real_build(out: str) -> list[str]:
    """Shards made by ``mvdata build`` itself (synthetic 4D clips: 2 frames x 2 views)."""
    from pathlib import Path

    from mvdata.build.config import BuildConfig
    from mvdata.build.driver import build
    from mvdata.shards.reader import list_shards
    from mvdata.synth.facemodel import procedural_face
    from mvdata.synth.generate import SynthConfig
    from mvdata.synth.writer import write_synth

    synth = Path(out) / "synth"
    write_synth(
        SynthConfig(
            num_identities=2,
            expressions=("happiness", "surprise"),
            static=False,
            sequences=True,
            num_frames=10,
            texture_size=32,
        ),
        procedural_face(),
        synth,
    )
    cfg = BuildConfig(
        source="synthetic",
        source_root=str(synth),
        kind="sequence",
        clip_frames=FRAMES,
        views=((0.0, 0.0), (20.0, 0.0)),
        modalities=MODALITIES,
        image_size=SIZE,
        samples_per_shard=3,
    )
    build(cfg, f"{out}/shards", workers=1)
    return list_shards(f"{out}/shards")


@pytest.fixture(scope="module", params=["writer", "mvdata-build"])
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[str], dict[str, dict]]:
    """A multi-shard dataset (from the writer directly, or from a real ``mvdata build``) and
    the expected samples ``key -> {ext: bytes}``, in tar order."""
    out = str(tmp_path_factory.mktemp("readers"))
    if request.param == "writer":
        names = build_dataset(out)
    else:
        names = _real_build(out)
        out = f"{out}/shards"
    expected: dict[str, dict] = {}
    for name in names:
        for s in iter_samples(out, name):
            expected[s.pop("__key__")] = s
    return out, names, expected


def test_webdataset_reader(dataset: tuple[str, list[str], dict[str, dict]]) -> None:
    import webdataset as wds

    out, names, expected = dataset
    urls = [shard_paths(out, n)["tar"] for n in names]
    got = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in got] == list(expected)
    for s in got:
        exts = sorted(k for k in s if not k.startswith("__"))
        assert exts == EXTS
        want = expected[s["__key__"]]
        assert all(s[e] == want[e] for e in exts)
        assert json.loads(s["json"])["key"] == s["__key__"]
    decoded = next(iter(wds.WebDataset(urls[:1], shardshuffle=False).decode("rgb8")))
    assert decoded["t00.v00.rgb.jpg"].shape == (SIZE, SIZE, 3)


def test_dali_reader_with_our_index(dataset: tuple[str, list[str], dict[str, dict]]) -> None:
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import Pipeline, fn
    from nvidia.dali.data_node import DataNode

    out, names, expected = dataset
    paths = [shard_paths(out, n) for n in names]
    keys = list(expected)
    n = len(keys)

    # All members, json included: DALI returns them as raw bytes, one output per ext.
    p = Pipeline(batch_size=n, num_threads=1, device_id=None, seed=0)
    with p:
        raw = fn.readers.webdataset(
            paths=[q["tar"] for q in paths],
            index_paths=[q["idx"] for q in paths],
            ext=EXTS,
            missing_component_behavior="error",
            random_shuffle=False,
            name="reader",
        )
        assert isinstance(raw, list)
        p.set_outputs(*raw)
    p.build()
    outs = p.run()
    assert len(outs) == len(EXTS)
    for j, ext in enumerate(EXTS):
        for i, key in enumerate(keys):
            # Ragged json outputs are fine in a TensorList (only iterators need padding).
            assert np.array(outs[j][i]).tobytes() == expected[key][ext], (key, ext)
    meta = p.reader_meta("reader")
    assert meta["epoch_size"] == n

    # A single ext gives a single node (not a list); decode the RGB views on the CPU.
    q = Pipeline(batch_size=n, num_threads=1, device_id=None, seed=0)
    with q:
        one = fn.readers.webdataset(
            paths=[x["tar"] for x in paths],
            index_paths=[x["idx"] for x in paths],
            ext="t01.v01.rgb.jpg",
            missing_component_behavior="error",
        )
        assert isinstance(one, DataNode)
        q.set_outputs(fn.decoders.image(one, device="cpu"))
    q.build()
    (images,) = q.run()
    first = np.array(images[0])
    ref = np.asarray(Image.open(io.BytesIO(expected[keys[0]]["t01.v01.rgb.jpg"])))
    assert first.shape == (SIZE, SIZE, 3)
    assert np.abs(first.astype(int) - ref.astype(int)).max() <= 8  # decoders may differ by IDCT


def test_hf_datasets_reader(
    dataset: tuple[str, list[str], dict[str, dict]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    out, names, expected = dataset
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": [shard_paths(out, n)["tar"] for n in names]},
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    assert ds["__key__"] == list(expected)
    cols = sorted(c for c in ds.column_names if not c.startswith("__"))
    assert cols == EXTS
    # json is parsed into a dict; image members become PIL images.
    row = ds[0]
    assert row["json"]["key"] == row["__key__"]
    assert row["json"]["subject"] == json.loads(expected[row["__key__"]]["json"])["subject"]
    assert row["t00.v01.rgb.jpg"].size == (SIZE, SIZE)
    depth = np.asarray(row["t01.v00.depth.png"])
    ref = np.asarray(Image.open(io.BytesIO(expected[row["__key__"]]["t01.v00.depth.png"])))
    np.testing.assert_array_equal(depth.astype(np.int64), ref.astype(np.int64))
