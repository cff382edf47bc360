"""Shard writer, DALI index, commit marker, verify, info and card: byte-level tests.

The helpers at the top (``make_sample``, ``build_dataset``) are also used by
``test_shard_readers.py``; they build a tiny dataset of random 32-px images.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import polars as pl
import pytest
from PIL import Image

from mvdata.shards import reader as shard_reader
from mvdata.shards import writer as shard_writer
from mvdata.shards.card import dataset_card
from mvdata.shards.codecs import encode_jpeg, encode_png8, encode_png16
from mvdata.shards.index import read_index
from mvdata.shards.info import dataset_info, write_contact_sheet
from mvdata.shards.names import member_names, shard_name, shard_paths
from mvdata.shards.reader import is_committed, list_shards, read_stats
from mvdata.shards.verify import verify_dataset
from mvdata.shards.writer import SampleMeta, ShardWriter
from schemas.models import (
    DatasetMetadata,
    Labels,
    ManifestRow,
    Modality,
    Normalisation,
    SampleJson,
    ViewCamera,
)
from schemas.tables import frame_from_rows

SIZE = 32
FRAMES = 2
VIEWS = 2
MODALITIES: tuple[Modality, ...] = ("rgb", "depth", "normal")
EXPRESSIONS = ("anger", "happiness", "surprise")

_EYE = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
CAMERAS = [
    ViewCamera(
        index=v,
        yaw=30.0 * v,
        pitch=0.0,
        fov_y=20.0,
        distance=3.0,
        world_to_camera=_EYE,
        projection=_EYE,
    )
    for v in range(VIEWS)
]


def make_sample(i: int, seed: int = 0, frames: int = FRAMES) -> tuple[str, dict[str, bytes]]:
    """One deterministic sample: key and members (``json`` + one image per frame/view/modality)."""
    rng = np.random.default_rng([seed, i])
    key = f"synth_S{i % 3:04d}_seq{i:03d}"
    sj = SampleJson(
        key=key,
        dataset="synthetic",
        source="synthetic",
        subject=f"S{i % 3:04d}",
        sequence=f"seq{i:03d}",
        kind="sequence" if frames > 1 else "static",
        fold=i % 3,
        frames=list(range(frames)),
        num_views=VIEWS,
        modalities=list(MODALITIES),
        image_size=SIZE,
        views=CAMERAS,
        normalisation=[
            Normalisation(
                method="bbox",
                centre=[0.0, 0.0, 0.0],
                scale=1.0,
                rotation=[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]],
            )
        ]
        * frames,
        landmarks=None,
        depth_scale_mm=0.1,
        labels=Labels(expression=EXPRESSIONS[i % 3], intensity=1 + i % 4),
        source_paths=[f"S{i % 3:04d}/seq{i:03d}.ply"],
    )
    members: dict[str, bytes] = {"json": sj.model_dump_json().encode()}
    for t in range(frames):
        for v in range(VIEWS):
            p = f"t{t:02d}.v{v:02d}."
            members[p + "rgb.jpg"] = encode_jpeg(
                rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), 90
            )
            members[p + "depth.png"] = encode_png16(
                rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
            )
            members[p + "normal.png"] = encode_png8(
                rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            )
    return key, members


def meta_of(i: int) -> SampleMeta:
    return SampleMeta(
        subject=f"S{i % 3:04d}",
        sequence=f"seq{i:03d}",
        fold=i % 3,
        expression=EXPRESSIONS[i % 3],
        intensity=1 + i % 4,
        num_frames=FRAMES,
    )


def write_shard(out: str, name: str, indices: list[int], failed: tuple[int, ...] = ()) -> None:
    with ShardWriter(out, name, member_names=member_names(FRAMES, VIEWS, MODALITIES)) as w:
        for i in indices:
            if i in failed:
                w.add_failed(
                    f"synth_S{i % 3:04d}_seq{i:03d}", "MeshReadError", "bad ply", meta_of(i)
                )
            else:
                w.add_sample(*make_sample(i))
        w.commit({"render": 0.0})


def build_dataset(
    out: str, num_shards: int = 2, per_shard: int = 3, failed: tuple[int, ...] = (4,)
) -> list[str]:
    """Write ``num_shards`` shards plus the root files a finalize step writes; return shard names."""
    names = [shard_name("train", s) for s in range(num_shards)]
    rows = []
    for s, name in enumerate(names):
        idx = list(range(s * per_shard, (s + 1) * per_shard))
        write_shard(out, name, idx, failed)
        for j, i in enumerate(idx):
            m = meta_of(i)
            rows.append(
                ManifestRow(
                    key=f"synth_S{i % 3:04d}_seq{i:03d}",
                    source="synthetic",
                    dataset="synthetic",
                    subject=m.subject,
                    sequence=m.sequence,
                    kind="sequence",
                    num_source_frames=FRAMES,
                    expression=m.expression,
                    intensity=m.intensity,
                    fold=m.fold,
                    split="train",
                    shard=s,
                    shard_name=name,
                    index_in_shard=j,
                    order=i,
                )
            )
    fs, root = fsspec.core.url_to_fs(out)
    with fs.open(f"{root}/manifest.parquet", "wb") as f:
        frame_from_rows(ManifestRow, rows).write_parquet(f)
    sizes = shard_reader.sizes_json(out)
    with fs.open(f"{root}/sizes.json", "w") as f:
        f.write(sizes.model_dump_json(indent=2))
    n_failed = sum(1 for i in failed if i < num_shards * per_shard)
    meta = DatasetMetadata(
        name="tiny",
        source="synthetic",
        dataset="synthetic",
        source_root="/x",
        licence="cc-by-4.0",
        publishable=True,
        seed=0,
        num_folds=3,
        split="train",
        views=CAMERAS,
        modalities=list(MODALITIES),
        image_size=SIZE,
        clip_frames=FRAMES,
        clip_sampling="uniform",
        jpeg_quality=90,
        depth_scale_mm=0.1,
        member_names=member_names(FRAMES, VIEWS, MODALITIES),
        num_samples=num_shards * per_shard - n_failed,
        num_failed=n_failed,
        num_shards=num_shards,
        samples_per_shard=per_shard,
        generator_version="test",
    )
    with fs.open(f"{root}/dataset.json", "w") as f:
        f.write(meta.model_dump_json(indent=2))
    with fs.open(f"{root}/README.md", "w") as f:
        f.write(dataset_card(meta, sizes))
    return names


# --------------------------------------------------------------------------- names, encoders
def test_names() -> None:
    assert shard_name("train", 3) == "train-000003"
    exts = member_names(2, 2, ["rgb", "depth"])
    assert exts[0] == "json" and exts == sorted(exts) and len(exts) == 9
    assert "t01.v00.depth.png" in exts
    with pytest.raises(ValueError):
        shard_name("tr.ain", 0)
    with pytest.raises(ValueError):
        member_names(1, 1, ["xray"])


def test_encoders_round_trip_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 65536, (16, 24), dtype=np.uint16)
    png = encode_png16(depth)
    assert png[12:16] == b"IHDR" and png[24] == 16 and png[25] == 0  # 16-bit greyscale
    assert png == encode_png16(depth.copy())
    back = np.asarray(Image.open(io.BytesIO(png)))
    assert back.dtype.itemsize == 2 or back.dtype == np.int32
    np.testing.assert_array_equal(back.astype(np.int64), depth.astype(np.int64))
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png8(rgb)))), rgb)
    jpg = encode_jpeg(rgb, 95)
    assert jpg == encode_jpeg(rgb, 95) and jpg[:2] == b"\xff\xd8"
    assert np.abs(np.asarray(Image.open(io.BytesIO(jpg))).astype(int) - rgb).mean() < 20


# --------------------------------------------------------------------------- tar + index
def test_tar_is_deterministic_ustar_sorted(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_shard(a, "train-000000", [0, 1, 2])
    write_shard(b, "train-000000", [0, 1, 2])
    pa, pb = shard_paths(a, "train-000000"), shard_paths(b, "train-000000")
    for kind in ("tar", "idx", "parquet"):
        assert Path(pa[kind]).read_bytes() == Path(pb[kind]).read_bytes(), kind
    raw = Path(pa["tar"]).read_bytes()
    assert len(raw) % 10240 == 0 and raw[-1024:] == b"\0" * 1024
    assert raw[257:263] == b"ustar\x00"  # USTAR magic of the first header
    with tarfile.open(pa["tar"]) as tar:
        infos = tar.getmembers()
    names = [m.name for m in infos]
    per_sample = 1 + FRAMES * VIEWS * len(MODALITIES)
    assert len(names) == 3 * per_sample
    for s in range(3):
        chunk = names[s * per_sample : (s + 1) * per_sample]
        assert chunk == sorted(chunk) and len({n.split(".")[0] for n in chunk}) == 1
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname, m.type) for m in infos} == {
        (0, 0o644, 0, 0, "", "", tarfile.REGTYPE)
    }
    stats = read_stats(a, "train-000000")
    assert stats.tar_sha256 == hashlib.sha256(raw).hexdigest() and stats.tar_bytes == len(raw)
    assert stats.num_written == 3 and stats.num_failed == 0


def test_index_points_at_member_bytes_and_matches_wds2idx(tmp_path: Path) -> None:
    out = str(tmp_path)
    write_shard(out, "train-000000", [0, 1, 2, 3], failed=(1,))
    p = shard_paths(out, "train-000000")
    raw = Path(p["tar"]).read_bytes()
    idx = Path(p["idx"]).read_bytes()
    samples = read_index(idx)
    assert len(samples) == 3
    with tarfile.open(p["tar"]) as tar:
        for comps in samples:
            for ext, off, size, name in comps:
                assert name.split(".", 1)[1] == ext
                data = tar.extractfile(name).read()  # type: ignore[union-attr]
                assert raw[off : off + size] == data
    # The reference: DALI's own index tool (shipped with the wheel as the module ``wds2idx``).
    wds2idx = pytest.importorskip("wds2idx")
    ref = tmp_path / "ref.idx"
    with wds2idx.IndexCreator(p["tar"], str(ref), verbose=False) as ic:
        ic.create_index()
    assert ref.read_bytes() == idx
    # Parquet rows: offsets/num_bytes delimit each sample's headers + data; failed row kept.
    rows = shard_reader.read_shard_rows(out, "train-000000")
    assert [r.status for r in rows] == ["ok", "failed", "ok", "ok"]
    assert rows[1].error_kind == "MeshReadError" and rows[1].offset is None
    ok = [r for r in rows if r.status == "ok"]
    for r, comps in zip(ok, samples, strict=True):
        assert r.offset is not None and r.num_bytes is not None
        assert r.offset == comps[0][1] - 512
        assert r.offset + r.num_bytes == comps[-1][1] + comps[-1][2] + (-comps[-1][2] % 512)
    assert read_stats(out, "train-000000").errors == {"MeshReadError": 1}


def test_memory_url(tmp_path: Path) -> None:
    out = "memory://mvdata-test-shards"
    try:
        write_shard(out, "train-000000", [0, 1])
        assert is_committed(out, "train-000000") and list_shards(out) == ["train-000000"]
        fs = fsspec.filesystem("memory")
        raw = fs.cat("/mvdata-test-shards/data/train-000000.tar")
        local = str(tmp_path)
        write_shard(local, "train-000000", [0, 1])
        assert raw == Path(shard_paths(local, "train-000000")["tar"]).read_bytes()
        assert [s["__key__"] for s in shard_reader.iter_samples(out, "train-000000")] == [
            "synth_S0000_seq000",
            "synth_S0001_seq001",
        ]
    finally:
        fsspec.filesystem("memory").rm("/mvdata-test-shards", recursive=True)


# --------------------------------------------------------------------------- commit / abort
def _visible(out: Path) -> set[str]:
    return {p.name for p in (out / "data").iterdir() if not p.name.startswith(".")}


def test_exception_midway_leaves_nothing_finished(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), ShardWriter(str(tmp_path), "train-000000") as w:
        w.add_sample(*make_sample(0))
        raise Boom
    assert not is_committed(str(tmp_path), "train-000000")
    assert list((tmp_path / "data").iterdir()) == []  # temp files removed too


def test_killed_writer_has_only_temp_names(tmp_path: Path) -> None:
    w = ShardWriter(str(tmp_path), "train-000000")
    w.add_sample(*make_sample(0))
    # Simulates a SIGKILL: nothing is closed; only hidden temp names exist.
    assert _visible(tmp_path) == set()
    assert list_shards(str(tmp_path), committed_only=False) == []
    assert not is_committed(str(tmp_path), "train-000000")
    assert len(list((tmp_path / "data").iterdir())) == 1  # the tar temp; the rest comes at commit
    # What a resumed build does before rewriting the shard: drop the dead writer's leftovers.
    assert len(shard_writer.clean_temp_files(str(tmp_path))) == 1
    assert list((tmp_path / "data").iterdir()) == []
    w.abort()  # harmless afterwards


def test_commit_refuses_and_overwrites(tmp_path: Path) -> None:
    out = str(tmp_path)
    write_shard(out, "train-000000", [0])
    assert _visible(tmp_path) == {
        f"train-000000.{e}" for e in ("tar", "idx", "parquet", "stats.json")
    }
    with pytest.raises(FileExistsError):
        ShardWriter(out, "train-000000")
    w = ShardWriter(out, "train-000000", overwrite=True)
    assert not is_committed(out, "train-000000")  # un-committed before anything else
    w.add_sample(*make_sample(1))
    w.commit({})
    assert [s["__key__"] for s in shard_reader.iter_samples(out, "train-000000")] == [
        "synth_S0001_seq001"
    ]
    # A stats file that does not parse is not a commit.
    Path(shard_paths(out, "train-000000")["stats"]).write_text("{")
    assert not is_committed(out, "train-000000")


def test_writer_rejects_bad_samples(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path), "train-000000") as w:
        key, members = make_sample(0)
        with pytest.raises(ValueError, match="no dots"):
            w.add_sample("a.b", members)
        with pytest.raises(ValueError, match="carries key"):
            w.add_sample("other", members)
        w.add_sample(key, members)
        with pytest.raises(ValueError, match="duplicate"):
            w.add_sample(key, members)
        key1, members1 = make_sample(1)
        del members1["t00.v00.rgb.jpg"]
        with pytest.raises(ValueError, match="member set differs"):
            w.add_sample(key1, members1)
        w.abort()


# --------------------------------------------------------------------------- verify
def test_verify_ok(tmp_path: Path) -> None:
    build_dataset(str(tmp_path))
    report = verify_dataset(str(tmp_path))
    assert report.ok, report.describe()
    assert report.num_samples == 5 and report.num_shards == 2 and not report.bad_shards


def test_verify_fsspec_url() -> None:
    out = "memory://mvdata-test-verify"
    try:
        build_dataset(out)
        report = verify_dataset(out)
        assert report.ok and report.num_samples == 5, report.describe()
        assert dataset_info(out).num_samples == 5
    finally:
        fsspec.filesystem("memory").rm("/mvdata-test-verify", recursive=True)


def _corrupt_jpeg_byte(out: str) -> None:
    p = shard_paths(out, "train-000001")
    comps = read_index(Path(p["idx"]).read_bytes())[0]
    off = next(o for e, o, _, _ in comps if e.endswith("rgb.jpg"))
    raw = bytearray(Path(p["tar"]).read_bytes())
    raw[off + 200] ^= 0xFF
    Path(p["tar"]).write_bytes(bytes(raw))


def _truncate(out: str) -> None:
    p = Path(shard_paths(out, "train-000001")["tar"])
    p.write_bytes(p.read_bytes()[:3000])


def _delete_idx(out: str) -> None:
    Path(shard_paths(out, "train-000001")["idx"]).unlink()


def _stats_mismatch(out: str) -> None:
    p = Path(shard_paths(out, "train-000001")["stats"])
    d = json.loads(p.read_text())
    d["num_written"] += 1
    p.write_text(json.dumps(d))


def _uncommitted_foreign_tar(out: str) -> None:
    # A tar written by hand (no stats): a crashed or foreign shard must be reported.
    p = shard_paths(out, "train-000001")
    key, members = make_sample(3)
    fs = fsspec.filesystem("file")
    for f in p.values():
        fs.rm(f)
    with tarfile.open(p["tar"], "w", format=tarfile.USTAR_FORMAT) as tar:
        for ext in sorted(members):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(members[ext])
            tar.addfile(info, io.BytesIO(members[ext]))


def _json_disagrees_with_images(out: str) -> None:
    # A valid SampleJson whose image_size disagrees with the images, committed by the writer.
    with ShardWriter(out, "train-000001", overwrite=True) as w:
        for i in (3, 4, 5):
            key, members = make_sample(i)
            d = json.loads(members["json"])
            d["image_size"] = 64
            members["json"] = json.dumps(d).encode()
            w.add_sample(key, members)
        w.commit({})


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        (_corrupt_jpeg_byte, "sha256"),
        (_truncate, "tar"),
        (_delete_idx, "idx"),
        (_stats_mismatch, "num_written"),
        (_uncommitted_foreign_tar, "not committed"),
        (_json_disagrees_with_images, "expected 64x64"),
    ],
)
def test_verify_catches(tmp_path: Path, damage: Any, expect: str) -> None:
    out = str(tmp_path)
    build_dataset(out)
    damage(out)
    report = verify_dataset(out)
    assert not report.ok
    assert list(report.bad_shards) == ["train-000001"], report.describe()
    assert any(expect in r for r in report.bad_shards["train-000001"]), report.describe()


def test_verify_catches_undecodable_image_with_valid_checksums(tmp_path: Path) -> None:
    out = str(tmp_path)
    build_dataset(out, num_shards=1, failed=())
    key, members = make_sample(0)
    members["t01.v01.depth.png"] = encode_png16(np.zeros((SIZE, SIZE + 1), dtype=np.uint16))
    members["t00.v01.rgb.jpg"] = b"not a jpeg"
    with ShardWriter(out, "train-000000", overwrite=True) as w:
        w.add_sample(key, members)
        for i in (1, 2):
            w.add_sample(*make_sample(i))
        w.commit({})
    report = verify_dataset(out)
    reasons = " | ".join(report.bad_shards.get("train-000000", []))
    assert "t00.v01.rgb.jpg" in reasons and "t01.v01.depth.png" in reasons, report.describe()


def test_verify_root_files(tmp_path: Path) -> None:
    out = str(tmp_path)
    build_dataset(out)
    (tmp_path / "sizes.json").write_text(json.dumps({"shards": {"data/train-000000.tar": 3}}))
    report = verify_dataset(out)
    assert not report.ok and any("sizes.json" in p for p in report.root_problems)
    (tmp_path / "dataset.json").unlink()
    assert any("dataset.json" in p for p in verify_dataset(out).root_problems)


def test_cli_verify_and_info(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.mvdata_app import app

    out = str(tmp_path)
    build_dataset(out)
    runner = CliRunner()
    res = runner.invoke(app, ["verify", out])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", out, "--contact-sheet", str(tmp_path / "sheet.png")])
    assert res.exit_code == 0, res.output
    assert "MeshReadError" in res.output and (tmp_path / "sheet.png").exists()
    _truncate(out)
    res = runner.invoke(app, ["verify", out])
    assert res.exit_code == 1 and "train-000001" in res.output
    res = runner.invoke(app, ["verify", str(tmp_path / "missing")])
    assert res.exit_code == 2


# --------------------------------------------------------------------------- info + card
def test_info_and_contact_sheet(tmp_path: Path) -> None:
    out = str(tmp_path)
    build_dataset(out)
    info = dataset_info(out)
    assert (info.num_samples, info.num_failed, info.num_shards) == (5, 1, 2)
    assert info.errors == {"MeshReadError": 1}
    assert info.subjects == 3 and sum(info.folds.values()) == 5
    assert sum(info.expressions.values()) == 5 and info.tar_bytes > 0
    png = tmp_path / "sheet.png"
    write_contact_sheet(out, str(png), n=2)
    im = Image.open(png)
    assert im.width >= VIEWS * SIZE and im.height >= 2 * SIZE


def test_card_front_matter(tmp_path: Path) -> None:
    import yaml

    build_dataset(str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("---\n")
    fm = yaml.safe_load(text.split("---\n")[1])
    assert fm["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.tar"}]}
    ]
    assert (
        fm["license"] == "cc-by-4.0" and "zero-shot-image-classification" in fm["task_categories"]
    )
    meta = DatasetMetadata.model_validate_json((tmp_path / "dataset.json").read_text())
    other = meta.model_copy(update={"licence": "BU-3DFE academic licence", "publishable": False})
    card = dataset_card(
        other, shard_reader.sizes_json(str(tmp_path)), licence_text="Terms: no resale."
    )
    fm = yaml.safe_load(card.split("---\n")[1])
    assert fm["license"] == "other" and fm["license_name"] == "bu-3dfe-academic-licence"
    assert "Terms: no resale." in card and "do not redistribute" in card
    assert "t00.v00.rgb.jpg" in card


def test_parquet_schema(tmp_path: Path) -> None:
    build_dataset(str(tmp_path))
    frame = pl.read_parquet(shard_paths(str(tmp_path), "train-000001")["parquet"])
    assert frame["status"].to_list() == ["ok", "failed", "ok"]
    assert sys.modules["mvdata.shards.reader"] is shard_reader


# ------------------------------------------------------------------- bad input named by file
def test_read_index_names_the_file_and_checks_bounds() -> None:
    """Every index problem is a ``ValueError`` starting with the file it came from (before: a
    UnicodeDecodeError, or a count mismatch naming no file), and entries are checked against the
    tar's size before anything is read (a size of 10**12 reached ``read()``: MemoryError)."""
    from mvdata.shards.index import format_index, outside_tar

    where = "/d/data/train-000000.idx"
    good = format_index([[("json", 512, 10, "k.json"), ("t00.v00.rgb.jpg", 1536, 900, "k.x")]])
    assert read_index(good, where=where)[0][1] == ("t00.v00.rgb.jpg", 1536, 900, "k.x")
    for data, why in [
        (bytes(range(200, 256)), "not a DALI index (byte 0 is not ASCII"),
        (b"v1.2 2\njson 512 10 k.json\n", "header says 2 samples, the body has 1 lines"),
        (b"v1.3 1\njson 512 10 k.json\n", "is not 'v1.2 <num_samples>'"),
        (b"v1.2 \xc2\xb2\n", "not a DALI index"),
        (b"v1.2 1\njson 512 ten k.json\n", "are not non-negative integers"),
        (b"v1.2 1\njson 512 10\n", "line 2 has 3 fields"),
        (b"v1.2 1\njson 512 10 k.json", "does not end with a newline"),
    ]:
        with pytest.raises(ValueError, match="^" + where.replace(".", r"\.") + ": ") as err:
            read_index(data, where=where)
        assert why in str(err.value)
    huge = read_index(b"v1.2 1\njson 512 1000000000000 k.json t00 2048 5 k.t00\n", where=where)
    assert outside_tar(huge, tar_size=4096) == [(0, "json", "k.json")]
    assert outside_tar([[("json", 100, 5, "k.json")]], tar_size=4096) == [(0, "json", "k.json")]


def test_image_problem_checks_what_dali_checks() -> None:
    """PNG chunk CRCs (PIL skips the IDAT one), the declared size before decoding, the mode."""
    from mvdata.shards.codecs import image_problem, png_crc_problem

    png = encode_png16(np.full((8, 8), 300, np.uint16))
    assert png_crc_problem(png) is None and image_problem("depth.png", png, 8) is None
    b = bytearray(png)
    i = b.find(b"IDAT")
    b[i + 4 + int.from_bytes(b[i - 4 : i], "big")] ^= 1
    Image.open(io.BytesIO(bytes(b))).load()  # PIL alone takes it
    assert "fails its CRC" in str(image_problem("depth.png", bytes(b), 8))
    assert "truncated PNG" in str(image_problem("depth.png", png[:-5], 8))
    assert "image is 8x8, expected 16x16" in str(image_problem("depth.png", png, 16))
    rgb = encode_png8(np.zeros((8, 8, 3), np.uint8))
    assert "mode RGB" in str(image_problem("depth.png", rgb, 8))
    jpg = encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90)
    assert image_problem("rgb.jpg", jpg, 8) is None
    assert "does not decode" in str(image_problem("rgb.jpg", jpg[:60], 8))


def test_unreadable_stats_and_parquet_name_the_file(tmp_path: Path) -> None:
    """A garbage stats.json or shard parquet: a ``ValueError`` naming the file (before: a
    pydantic error naming no shard, a polars error), and the shard counts as not committed."""
    build_dataset(str(tmp_path), num_shards=1)
    stats = tmp_path / "data" / "train-000000.stats.json"
    stats.write_text('{"shard_name": 3}')
    with pytest.raises(ValueError, match=r"train-000000.stats.json: not a valid stats.json"):
        read_stats(str(tmp_path), "train-000000")
    assert not is_committed(str(tmp_path), "train-000000")
    (tmp_path / "data" / "train-000000.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(ValueError, match=r"train-000000.parquet: not a readable parquet file"):
        shard_reader.read_shard_rows(str(tmp_path), "train-000000")
