"""Re-read a built shard directory and check every contract of the shard format.

Per shard: the commit marker (stats) exists and parses; checksums and sizes of tar, index and
parquet match it; the tar is USTAR with regular-file members grouped by sample and sorted; the
DALI index lists exactly the tar's members with their data offsets and sizes; the parquet rows
agree with the tar (keys, order, offsets) and the stats counts; every ``json`` member validates
against :class:`SampleJson` and names its key; every image decodes with the expected size and
mode; every sample carries the same member set. At the root: ``manifest.parquet``,
``sizes.json``, ``dataset.json`` and ``README.md`` exist, validate, and agree with the shards
(``dataset.json``'s image size, views, frames, modalities, depth scale and schema version with
every sample's ``json``).

Every file is checked to be a regular file before it is opened (a FIFO in place of a tar would
block forever), and index entries are checked against the tar's size before anything is read.
A shard that holds no sample (every planned sample failed) is valid but noted: the loaders leave
it out.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import polars as pl
from pydantic import ValidationError

from mvdata.shards.codecs import IMAGE_MODES, image_problem
from mvdata.shards.index import outside_tar, read_index
from mvdata.shards.names import DATA_DIR, member_names, parse_shard_name, shard_paths
from mvdata.shards.reader import EndGuard, file_type_problem, filesystem, list_shards
from schemas.models import (
    SCHEMA_VERSION,
    DatasetMetadata,
    ManifestRow,
    SampleJson,
    ShardRow,
    ShardStats,
    SizesJson,
)
from schemas.tables import check_frame

_CHUNK = 1 << 20
_ROOT_FILES = ("manifest.parquet", "sizes.json", "dataset.json", "README.md")
_MODES = IMAGE_MODES


@dataclass(frozen=True)
class SampleShape:
    """What a sample's ``json`` says about its geometry; ``dataset.json`` must agree."""

    image_size: int
    num_views: int
    frames: int
    modalities: tuple[str, ...]
    depth_scale_mm: float
    schema_major: str

    @classmethod
    def of(cls, sample: SampleJson) -> SampleShape:
        return cls(
            sample.image_size,
            len(sample.views),
            len(sample.frames),
            tuple(sample.modalities),
            sample.depth_scale_mm,
            sample.schema_version.split(".")[0],
        )


@dataclass
class ShardCheck:
    """What :func:`verify_shard` found in one shard."""

    name: str
    problems: list[str] = field(default_factory=list)
    num_samples: int = 0
    member_names: list[str] | None = None
    keys: list[str] = field(default_factory=list)
    stats: ShardStats | None = None
    #: The distinct :class:`SampleShape` of the shard's samples.
    shapes: set[SampleShape] = field(default_factory=set)


@dataclass
class VerifyReport:
    """The result of :func:`verify_dataset`; ``ok`` when no shard and no root file is bad."""

    out_dir: str
    num_shards: int = 0
    num_samples: int = 0
    bad_shards: dict[str, list[str]] = field(default_factory=dict)
    root_problems: list[str] = field(default_factory=list)
    #: Facts worth saying that are not problems (e.g. shards holding no sample).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_shards and not self.root_problems

    def describe(self) -> str:
        """A human-readable list of every problem."""
        lines = [f"{self.out_dir}: {self.num_shards} shards, {self.num_samples} samples"]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"root: {p}" for p in self.root_problems]
        for name, problems in self.bad_shards.items():
            lines += [f"{name}: {p}" for p in problems]
        return "\n".join(lines)


def _sha256(f: IO[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def _check_image(ext: str, data: bytes, size: int) -> str | None:
    problem = image_problem(ext.split(".", 2)[2], data, size)
    return None if problem is None else f"image {ext}: {problem}"


def _iter_tar(f: IO[bytes], where: str) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=EndGuard(f, where), mode="r|") as tar:
        for info in tar:
            fobj = tar.extractfile(info) if info.isreg() else None
            yield info, fobj.read() if fobj is not None else b""


def verify_shard(out_dir: str, name: str, expected_members: list[str] | None = None) -> ShardCheck:
    """Check one shard; problems are collected, not raised."""
    fs, root = filesystem(out_dir)
    paths = shard_paths(root, name)
    check = ShardCheck(name)
    bad = check.problems.append

    # Every file a regular one before anything is opened (a FIFO would block the open).
    missing: list[str] = []
    for kind in ("stats", "tar", "idx", "parquet"):
        try:
            problem = file_type_problem(fs, paths[kind])
        except FileNotFoundError:
            missing.append(kind)
            continue
        if problem:
            bad(problem)
            return check
    if "stats" in missing:
        bad("not committed: no stats.json")
        return check
    try:
        with fs.open(paths["stats"], "rb") as f:
            stats = ShardStats.model_validate_json(f.read())
    except ValidationError as exc:
        err0 = exc.errors()[0]
        bad(
            f"stats.json invalid: {exc.error_count()} errors, first: {err0['msg']} at {err0['loc']}"
        )
        return check
    check.stats = stats
    if stats.shard_name != name:
        bad(f"stats.json names shard {stats.shard_name!r}")
    if stats.schema_version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        bad(f"schema_version {stats.schema_version} incompatible with {SCHEMA_VERSION}")

    # Checksums, file by file.
    for kind in missing:
        bad(f"{kind} file missing")
    tar_size: int | None = None
    for kind, want in (
        ("tar", stats.tar_sha256),
        ("idx", stats.index_sha256),
        ("parquet", stats.parquet_sha256),
    ):
        if kind in missing:
            continue
        with fs.open(paths[kind], "rb") as f:
            got, n = _sha256(f)
        if got != want:
            bad(f"{kind} sha256 differs from stats.json")
        if kind == "tar":
            tar_size = n
            if n != stats.tar_bytes:
                bad(f"tar has {n} bytes, stats.json says {stats.tar_bytes}")

    # Parquet rows against the stats.
    rows: list[ShardRow] = []
    if "parquet" not in missing:
        try:
            with fs.open(paths["parquet"], "rb") as f:
                frame = pl.read_parquet(f)
            check_frame(ShardRow, frame, where=f"{name}.parquet")
            rows = [ShardRow.model_validate(r) for r in frame.to_dicts()]
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            bad(f"parquet unreadable: {exc}")
    ok_rows = [r for r in rows if r.status == "ok"]
    failed = [r for r in rows if r.status == "failed"]
    errors: dict[str, int] = {}
    for r in failed:
        errors[str(r.error_kind)] = errors.get(str(r.error_kind), 0) + 1
    if rows:
        for field_name, got_n, want_n in (
            ("num_planned", len(rows), stats.num_planned),
            ("num_written", len(ok_rows), stats.num_written),
            ("num_failed", len(failed), stats.num_failed),
        ):
            if got_n != want_n:
                bad(f"stats.json {field_name}={want_n} but parquet has {got_n}")
        if errors != stats.errors:
            bad(f"stats.json errors {stats.errors} but parquet has {errors}")
        if any(r.shard_name != name for r in rows):
            bad("parquet rows name another shard")

    # Index.
    index: list[list[tuple[str, int, int, str]]] | None = None
    if "idx" not in missing:
        try:
            with fs.open(paths["idx"], "rb") as f:
                index = read_index(f.read(), where=f"{name}.idx")
        except ValueError as exc:
            bad(f"idx unreadable: {exc}")
        if index is not None and tar_size is not None:
            outside = outside_tar(index, tar_size)
            if outside:
                line, _, member = outside[0]
                bad(
                    f"idx points outside the tar ({tar_size} bytes) for {len(outside)} "
                    f"member(s), first {member} on line {line + 2} (tar cut short?)"
                )

    # The tar itself, streamed once.
    if "tar" in missing:
        return check
    samples: list[tuple[str, int, list[tuple[str, int, int, str]]]] = []  # key, header off, comps
    end = 0
    try:
        with fs.open(paths["tar"], "rb") as f:
            sample_json: SampleJson | None = None
            images: list[tuple[str, bytes]] = []

            def finish() -> None:
                if not samples:
                    return
                key = samples[-1][0]
                if sample_json is None:
                    bad(f"sample {key}: no valid json member")
                    return
                for ext, data in images:
                    problem = _check_image(ext, data, sample_json.image_size)
                    if problem:
                        bad(f"sample {key}: {problem}")

            for info, data in _iter_tar(f, paths["tar"]):
                if not info.isreg():
                    bad(f"member {info.name} is not a regular file")
                    continue
                key, _, ext = info.name.partition(".")
                if not samples or samples[-1][0] != key:
                    finish()
                    if any(s[0] == key for s in samples):
                        bad(f"sample {key} appears twice / not contiguous")
                    samples.append((key, info.offset, []))
                    sample_json, images = None, []
                comps = samples[-1][2]
                if comps and ext <= comps[-1][0]:
                    bad(f"sample {key}: members not sorted at {ext}")
                comps.append((ext, info.offset_data, info.size, info.name))
                end = info.offset_data + info.size + (-info.size % tarfile.BLOCKSIZE)
                if ext == "json":
                    try:
                        sample_json = SampleJson.model_validate_json(data)
                    except ValidationError as exc:
                        bad(
                            f"sample {key}: json fails SampleJson: {exc.errors()[0]['msg']}"
                            f" at {exc.errors()[0]['loc']}"
                        )
                        continue
                    if sample_json.key != key:
                        bad(f"sample {key}: json names key {sample_json.key!r}")
                    check.shapes.add(SampleShape.of(sample_json))
                    if sample_json.schema_version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
                        bad(f"sample {key}: schema_version {sample_json.schema_version}")
                elif ext.split(".", 2)[-1] in _MODES and ext.count(".") == 3:
                    images.append((ext, data))
                else:
                    bad(f"sample {key}: unexpected member {ext}")
            finish()
    except (tarfile.TarError, OSError, EOFError) as exc:
        bad(f"tar unreadable: {exc}")
        return check

    check.num_samples = len(samples)
    check.keys = [s[0] for s in samples]
    # Member sets.
    for key, _, comps in samples:
        exts = [c[0] for c in comps]
        if check.member_names is None:
            check.member_names = exts
        if exts != (expected_members or check.member_names):
            bad(f"sample {key}: member set differs from the dataset's")

    # Index against the tar, entry by entry.
    if index is not None:
        in_tar = [comps for _, _, comps in samples]
        if len(index) != len(in_tar):
            bad(f"idx lists {len(index)} samples, tar has {len(in_tar)}")
        elif index != in_tar:
            first = next(i for i, (a, b) in enumerate(zip(index, in_tar, strict=True)) if a != b)
            bad(f"idx offsets/sizes differ from the tar at sample {first} ({samples[first][0]})")

    # Parquet against the tar.
    if rows:
        if [r.key for r in ok_rows] != check.keys:
            bad("parquet ok rows do not list the tar's keys in order")
        else:
            for r, (key, header_off, comps) in zip(ok_rows, samples, strict=True):
                last = comps[-1]
                stop = last[1] + last[2] + (-last[2] % tarfile.BLOCKSIZE)
                if r.offset != header_off or r.num_bytes != stop - header_off:
                    bad(f"sample {key}: parquet offset/num_bytes do not match the tar")
    if stats.num_written != len(samples):
        bad(f"stats.json num_written={stats.num_written} but tar has {len(samples)} samples")
    if end and stats.tar_bytes < end + 2 * tarfile.BLOCKSIZE:
        bad("tar ends without its end-of-archive blocks")
    return check


def _check_meta_against_samples(
    meta: DatasetMetadata, checks: dict[str, ShardCheck], bad: Callable[[str], None]
) -> None:
    """``dataset.json``'s geometry against every sample's ``json`` (a loader sizes its tensors
    from ``dataset.json``: a wrong image size there breaks it on the first batch)."""
    if meta.schema_version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        bad(f"dataset.json schema_version {meta.schema_version} incompatible with {SCHEMA_VERSION}")
    shapes = set().union(*(c.shapes for c in checks.values())) if checks else set()
    want = SampleShape(
        meta.image_size,
        len(meta.views),
        meta.clip_frames,
        tuple(meta.modalities),
        meta.depth_scale_mm,
        meta.schema_version.split(".")[0],
    )
    for what, attr in (
        ("image_size", "image_size"),
        ("views", "num_views"),
        ("clip_frames", "frames"),
        ("modalities", "modalities"),
        ("depth_scale_mm", "depth_scale_mm"),
        ("schema_version (major)", "schema_major"),
    ):
        got = sorted({getattr(sh, attr) for sh in shapes}, key=str)
        if got and got != [getattr(want, attr)]:
            bad(
                f"dataset.json {what}={getattr(want, attr)} but the shards' samples have "
                f"{', '.join(str(g) for g in got)}"
            )


def _check_root(out_dir: str, report: VerifyReport, checks: dict[str, ShardCheck]) -> None:
    fs, root = filesystem(out_dir)
    bad = report.root_problems.append
    usable: set[str] = set()
    for fname in _ROOT_FILES:
        try:
            problem = file_type_problem(fs, f"{root}/{fname}")
        except FileNotFoundError:
            bad(f"{fname} missing")
            continue
        if problem:
            bad(problem)
        else:
            usable.add(fname)
    committed = {n: c for n, c in checks.items() if c.stats is not None}
    meta: DatasetMetadata | None = None
    try:
        if "dataset.json" in usable:
            with fs.open(f"{root}/dataset.json", "rb") as f:
                meta = DatasetMetadata.model_validate_json(f.read())
    except FileNotFoundError:
        pass
    except ValidationError as exc:
        first = exc.errors()[0]
        bad(
            f"dataset.json invalid: {exc.error_count()} errors, first: {first['msg']}"
            f" at {first['loc']}"
        )
    if meta is not None:
        _check_meta_against_samples(meta, checks, bad)
        n_written = sum(c.stats.num_written for c in committed.values() if c.stats)
        n_failed = sum(c.stats.num_failed for c in committed.values() if c.stats)
        for what, got, want in (
            ("num_shards", len(checks), meta.num_shards),
            ("num_samples", n_written, meta.num_samples),
            ("num_failed", n_failed, meta.num_failed),
        ):
            if got != want:
                bad(f"dataset.json {what}={want} but the shards give {got}")
        try:
            expected = member_names(meta.clip_frames, len(meta.views), meta.modalities)
        except ValueError as exc:
            bad(f"dataset.json: {exc}")
            expected = meta.member_names
        if meta.member_names != expected:
            bad("dataset.json member_names do not match clip_frames x views x modalities")
        seen = {tuple(c.member_names) for c in checks.values() if c.member_names}
        if seen and seen != {tuple(meta.member_names)}:
            bad("dataset.json member_names differ from the shards' members")
    try:
        if "sizes.json" not in usable:
            raise FileNotFoundError
        with fs.open(f"{root}/sizes.json", "rb") as f:
            sizes = SizesJson.model_validate_json(f.read())
        want_sizes = {
            f"{DATA_DIR}/{n}.tar": c.stats.num_written for n, c in committed.items() if c.stats
        }
        got_sizes = {k if "/" in k else f"{DATA_DIR}/{k}": v for k, v in sizes.shards.items()}
        if got_sizes != want_sizes:
            bad("sizes.json does not match the shards' stats")
    except FileNotFoundError:
        pass
    except ValidationError as exc:
        bad(f"sizes.json invalid: {exc.error_count()} errors")
    try:
        if "manifest.parquet" not in usable:
            raise FileNotFoundError
        with fs.open(f"{root}/manifest.parquet", "rb") as f:
            manifest = pl.read_parquet(f)
        check_frame(ManifestRow, manifest, where="manifest.parquet")
        planned = set(manifest["shard_name"].unique().to_list())
        if planned != set(checks):
            bad(
                f"manifest plans shards {sorted(planned - set(checks))} that are absent"
                if planned - set(checks)
                else f"shards {sorted(set(checks) - planned)} are not in the manifest"
            )
        for name, c in committed.items():
            keys = manifest.filter(pl.col("shard_name") == name).sort("index_in_shard")["key"]
            if c.stats and len(keys) != c.stats.num_planned:
                report.bad_shards.setdefault(name, []).append(
                    f"manifest plans {len(keys)} samples, stats.json {c.stats.num_planned}"
                )
            elif not set(c.keys) <= set(keys.to_list()):
                report.bad_shards.setdefault(name, []).append("tar keys not in the manifest")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        bad(f"manifest.parquet unreadable: {exc}")


def verify_dataset(out_dir: str) -> VerifyReport:
    """Check every shard (committed or not) and the root files of ``out_dir``."""
    fs, root = filesystem(out_dir)
    if not fs.exists(root):
        raise FileNotFoundError(f"{out_dir} does not exist")
    if not fs.isdir(root):
        raise ValueError(f"{out_dir}: not a directory (verify takes a shard directory)")
    report = VerifyReport(out_dir)
    meta_members: list[str] | None = None
    try:
        if file_type_problem(fs, f"{root}/dataset.json") is None:
            with fs.open(f"{root}/dataset.json", "rb") as f:
                meta_members = json.loads(f.read()).get("member_names")
    except (FileNotFoundError, ValueError, AttributeError):
        meta_members = None
    names = list_shards(out_dir, committed_only=False)
    for name in names:
        parse_shard_name(name)
    checks = {name: verify_shard(out_dir, name, meta_members) for name in names}
    first_members = next((c.member_names for c in checks.values() if c.member_names), None)
    for name, c in checks.items():
        if c.member_names and first_members and c.member_names != first_members:
            c.problems.append("member set differs from the other shards'")
        if c.problems:
            report.bad_shards[name] = c.problems
        elif c.stats is not None and c.stats.num_written == 0:
            report.notes.append(
                f"shard {name} holds no sample (all {c.stats.num_planned} planned samples "
                "failed; see its parquet): the loaders leave it out"
            )
    report.num_shards = len(checks)
    report.num_samples = sum(c.num_samples for c in checks.values())
    _check_root(out_dir, report, checks)
    return report
