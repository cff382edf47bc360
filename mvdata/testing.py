"""Small shard directories made without rendering, for the tests and the benchmarks alike.

A loader needs shards, ``dataset.json`` and ``sizes.json``; these helpers write exactly that
through the real :class:`~mvdata.shards.writer.ShardWriter` and the pydantic contracts, with
placeholder cameras and synthetic images (smooth colour ramps, a depth map with background, a
camera-facing normal map). Nothing in the library imports this module (an import-linter
contract); ``bench/`` uses it instead of importing from ``tests/``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mvdata.io import atomic_write
from mvdata.shards.codecs import encode_jpeg, encode_png8, encode_png16
from mvdata.shards.names import member_names, shard_name
from mvdata.shards.reader import sizes_json
from mvdata.shards.writer import ShardWriter
from schemas.models import (
    DatasetMetadata,
    Labels,
    Modality,
    Normalisation,
    SampleJson,
    ViewCamera,
)

#: 4x4 identity, the placeholder for every camera matrix.
EYE = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]

#: Members that do not decode, by sample key, for the corrupt-input tests and GPU checks: a JPEG
#: in the first batch and a 16-bit depth PNG later on.
CORRUPT: dict[str, dict[str, bytes]] = {
    "syn_0001": {"t01.v00.rgb.jpg": b"\xff\xd8junk"},
    "syn_0005": {"t00.v01.depth.png": b"\x89PNG\r\n\x1a\nbroken"},
}


def placeholder_cameras(n: int, yaw_span: float = 60.0) -> list[ViewCamera]:
    """``n`` cameras with yaws spread evenly over ``yaw_span`` degrees around 0 and identity
    matrices (a loader only reads their count and indices)."""
    return [
        ViewCamera(
            index=i,
            yaw=-yaw_span / 2 + yaw_span * i / max(n - 1, 1),
            pitch=0.0,
            fov_y=20.0,
            distance=3.0,
            world_to_camera=EYE,
            projection=EYE,
        )
        for i in range(n)
    ]


def placeholder_sample_json(
    key: str,
    *,
    frames: int,
    cameras: list[ViewCamera],
    modalities: Sequence[Modality],
    image_size: int,
    depth_scale_mm: float,
    dataset: str = "synthetic",
    kind: Literal["static", "sequence"] = "sequence",
    subject: str = "S0",
    sequence: str = "seq",
    labels: Labels | None = None,
    source_paths: Sequence[str] = (),
) -> SampleJson:
    """A valid ``json`` member for a sample of ``frames`` clip frames seen by ``cameras``."""
    return SampleJson(
        key=key,
        dataset=dataset,
        source="synthetic",
        subject=subject,
        sequence=sequence,
        kind=kind,
        fold=0,
        frames=list(range(frames)),
        num_views=len(cameras),
        modalities=list(modalities),
        image_size=image_size,
        views=cameras,
        normalisation=[
            Normalisation(method="bbox", centre=[0, 0, 0], scale=1.0, rotation=EYE[:3])
            for _ in range(frames)
        ],
        depth_scale_mm=depth_scale_mm,
        labels=labels or Labels(),
        source_paths=list(source_paths),
    )


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth RGB image (JPEG decoders agree closely on smooth content)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c = rng.uniform(0, 1, (3, 3))
    img = np.stack([c[k, 0] * yy + c[k, 1] * xx + c[k, 2] * 0.5 for k in range(3)], -1)
    return (np.clip(img / 2.0, 0, 1) * 255).astype(np.uint8)


def depth_map(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random 16-bit depth with a background band (value 0) on the left quarter."""
    d = rng.integers(1000, 65535, (size, size)).astype(np.uint16)
    d[:, : size // 4] = 0  # background
    return d


def normal_map(rng: np.random.Generator, size: int) -> np.ndarray:
    """A camera-facing normal map (unit vectors stored as uint8) with :func:`depth_map`'s
    background."""
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    n = np.stack([xx * rng.uniform(0.5, 1.5), yy, np.ones_like(xx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    img = np.round((n * 0.5 + 0.5) * 255).astype(np.uint8)
    img[:, : size // 4] = 0  # background, where depth_map has 0
    return img


def write_root_files(
    out: Path,
    *,
    cameras: list[ViewCamera],
    modalities: Sequence[Modality],
    image_size: int,
    frames: int,
    depth_scale_mm: float,
    num_shards: int,
    samples_per_shard: int,
    seed: int = 0,
    name: str = "fixture",
    jpeg_quality: int = 95,
    indent: int | None = 1,
) -> DatasetMetadata:
    """``dataset.json`` and ``sizes.json`` for the committed shards under ``out``."""
    sizes = sizes_json(str(out))
    meta = DatasetMetadata(
        name=name,
        source="synthetic",
        dataset=name if name != "fixture" else "synthetic",
        source_root="/nowhere",
        licence="CC0",
        publishable=True,
        seed=seed,
        num_folds=2,
        split="train",
        views=cameras,
        modalities=list(modalities),
        image_size=image_size,
        clip_frames=frames,
        clip_sampling="uniform",
        jpeg_quality=jpeg_quality,
        depth_scale_mm=depth_scale_mm,
        member_names=member_names(frames, len(cameras), list(modalities)),
        num_samples=sum(sizes.shards.values()),
        num_failed=0,
        num_shards=num_shards,
        samples_per_shard=samples_per_shard,
        generator_version="test",
    )
    atomic_write(out / "dataset.json", meta.model_dump_json(indent=indent).encode())
    atomic_write(out / "sizes.json", sizes.model_dump_json(indent=indent).encode())
    return meta


MembersFn = Callable[[str, np.random.Generator], dict[str, bytes]]


def sample_members(
    key: str,
    rng: np.random.Generator,
    modalities: Sequence[Modality] = ("rgb", "depth"),
    *,
    size: int = 32,
    frames: int = 2,
    views: int = 2,
    depth_scale_mm: float = 0.25,
) -> dict[str, bytes]:
    """All members of one sample: json + T x V rgb jpg + depth png (+ normal png)."""
    sj = placeholder_sample_json(
        key,
        frames=frames,
        cameras=placeholder_cameras(views),
        modalities=modalities,
        image_size=size,
        depth_scale_mm=depth_scale_mm,
        subject=f"S{key[-2:]}",
        labels=Labels(expression="happiness", intensity=2),
        source_paths=[f"{key}.ply"],
    )
    members = {"json": sj.model_dump_json().encode()}
    for t in range(frames):
        for v in range(views):
            members[f"t{t:02d}.v{v:02d}.rgb.jpg"] = encode_jpeg(smooth_image(rng, size), 95)
            members[f"t{t:02d}.v{v:02d}.depth.png"] = encode_png16(depth_map(rng, size))
            if "normal" in modalities:
                members[f"t{t:02d}.v{v:02d}.normal.png"] = encode_png8(normal_map(rng, size))
    return members


def build_shard_dir(
    out: Path,
    sizes: list[int],
    *,
    seed: int = 0,
    edit: dict[str, dict[str, bytes]] | None = None,
    modalities: Sequence[Modality] = ("rgb", "depth"),
    size: int = 32,
    frames: int = 2,
    views: int = 2,
    depth_scale_mm: float = 0.25,
) -> list[str]:
    """Write shards of ``sizes`` samples + ``dataset.json`` + ``sizes.json``; return the keys in
    order (``syn_0000``, ...). ``edit[key]`` replaces members of that sample (e.g. corrupt
    bytes)."""
    rng = np.random.default_rng(seed)
    keys: list[str] = []
    names = member_names(frames, views, list(modalities))
    geometry: dict[str, Any] = dict(
        size=size, frames=frames, views=views, depth_scale_mm=depth_scale_mm
    )
    for s, n in enumerate(sizes):
        with ShardWriter(str(out), shard_name("train", s), member_names=names) as w:
            for _ in range(n):
                key = f"syn_{len(keys):04d}"
                members = sample_members(key, rng, modalities, **geometry)
                members.update((edit or {}).get(key, {}))
                w.add_sample(key, members)
                keys.append(key)
            w.commit(seconds={})
    write_root_files(
        out,
        cameras=placeholder_cameras(views),
        modalities=modalities,
        image_size=size,
        frames=frames,
        depth_scale_mm=depth_scale_mm,
        num_shards=len(sizes),
        samples_per_shard=max(sizes),
        seed=seed,
    )
    return keys


def rows(batches: Iterable[Any]) -> list[tuple[str, bool]]:
    """``(key, valid)`` of every row of ``batches`` (``MultiviewBatch`` objects), in order."""
    return [(k, bool(ok)) for b in batches for k, ok in zip(b.keys, b.valid.tolist(), strict=True)]


def write_build_root_files(out: Path) -> None:
    """The root files a build adds to what :func:`build_shard_dir` writes, so that ``mvdata
    verify`` passes: ``manifest.parquet`` (one :class:`~schemas.models.ManifestRow` per sample
    of the shards' parquets, in shard order) and the dataset card ``README.md``."""
    import io

    from mvdata.shards.card import dataset_card
    from mvdata.shards.names import parse_shard_name
    from mvdata.shards.reader import list_shards, read_shard_rows
    from schemas.models import ManifestRow, SizesJson
    from schemas.tables import frame_from_rows

    meta = DatasetMetadata.model_validate_json((out / "dataset.json").read_bytes())
    manifest: list[dict[str, Any]] = []
    for name in list_shards(str(out)):
        split, index = parse_shard_name(name)
        for i, r in enumerate(read_shard_rows(str(out), name)):
            manifest.append(
                dict(
                    key=r.key,
                    source=meta.source,
                    dataset=meta.dataset,
                    subject=r.subject,
                    sequence=r.sequence,
                    kind="sequence" if r.num_frames > 1 else "static",
                    num_source_frames=r.num_frames,
                    expression=r.expression,
                    intensity=r.intensity,
                    fold=r.fold,
                    split=split,
                    shard=index,
                    shard_name=name,
                    index_in_shard=i,
                    order=len(manifest),
                )
            )
    buf = io.BytesIO()
    frame_from_rows(ManifestRow, manifest).write_parquet(buf, statistics=False)
    atomic_write(out / "manifest.parquet", buf.getvalue())
    sizes = SizesJson.model_validate_json((out / "sizes.json").read_bytes())
    atomic_write(out / "README.md", dataset_card(meta, sizes).encode())


def assign_folds(out: Path, num_folds: int) -> dict[str, int]:
    """Write the build root files of :func:`write_build_root_files` with sample ``i`` (in
    manifest order) in fold ``i % num_folds`` (:func:`build_shard_dir` puts every sample in fold
    0; a loader's ``exclude_folds`` reads the manifest's folds); returns key -> fold."""
    import polars as pl

    write_build_root_files(out)
    manifest = pl.read_parquet(out / "manifest.parquet")
    manifest = manifest.with_columns(
        (pl.col("order") % num_folds).cast(manifest.schema["fold"]).alias("fold")
    )
    buf = io.BytesIO()
    manifest.write_parquet(buf, statistics=False)
    atomic_write(out / "manifest.parquet", buf.getvalue())
    return dict(zip(manifest["key"].to_list(), manifest["fold"].to_list(), strict=True))
