"""A malformed-input campaign against built shard directories: every case damages a tiny shard
directory (:func:`mvdata.testing.build_shard_dir`: 2 shards, 4 + 3 samples of 2 frames x 2 views,
32 px) in one way and runs ``mvdata verify``, ``mvdata info`` and both loaders over it.

What each may do (the README's "Bad input"): give one clear error naming the file (the CLI with a
non-zero exit and no traceback), or skip and count the sample (webdataset) / mask its row (DALI),
never hang (a FIFO in place of a file) and never lose a sample silently. Each case states its
expectation per consumer; the generator is the ``CASES`` table.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.mvdata_app import app
from mvdata.loaders import LoaderDataError, make_loader
from mvdata.shards.codecs import encode_jpeg, encode_png8
from mvdata.shards.index import read_index
from mvdata.shards.writer import SampleMeta, ShardWriter
from mvdata.testing import build_shard_dir, rows, sample_members, write_build_root_files

pytestmark = pytest.mark.timeout(60)  # a hang (a FIFO opened for reading) fails, never blocks

SIZES = [4, 3]
TOTAL = sum(SIZES)


# ------------------------------------------------------------------------------ the damage
def _good(ext: str) -> bytes:
    return sample_members("x", np.random.default_rng(0))[ext]


def _crc_broken(png: bytes) -> bytes:
    b = bytearray(png)
    i = b.find(b"IDAT")
    b[i + 4 + int.from_bytes(b[i - 4 : i], "big")] ^= 0xFF
    return bytes(b)


def _bomb_jpeg(side: int = 60000) -> bytes:
    """A valid 32 px JPEG whose frame header declares ``side`` x ``side`` pixels."""
    data = bytearray(encode_jpeg(np.full((32, 32, 3), 90, np.uint8), 90))
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


def _path(out: Path, shard: int, suffix: str) -> Path:
    return out / "data" / f"train-{shard:06d}{suffix}"


def _entry(out: Path, shard: int, sample: int, ext: str) -> tuple[int, int]:
    """``(data offset, size)`` of a member, from the shard's index."""
    index = read_index(_path(out, shard, ".idx").read_bytes())
    return next((off, size) for e, off, size, _ in index[sample] if e == ext)


def _rewrite(path: Path, fn: Callable[[bytearray], bytes | bytearray]) -> None:
    path.write_bytes(bytes(fn(bytearray(path.read_bytes()))))


def _truncate_tar(out: Path) -> None:  # cut inside sample 2's json: samples 2 and 3 are lost
    _rewrite(_path(out, 0, ".tar"), lambda b: b[: _entry(out, 0, 2, "json")[0] + 10])


def _zero_tar(out: Path) -> None:
    _rewrite(_path(out, 0, ".tar"), lambda b: b"\0" * len(b))


def _bad_header(out: Path) -> None:  # sample 2's first header fails its checksum
    head = _entry(out, 0, 2, "json")[0] - 512

    def damage(b: bytearray) -> bytearray:
        b[head + 148 : head + 156] = b"garbage!"
        return b

    _rewrite(_path(out, 0, ".tar"), damage)


def _huge_member_size(out: Path) -> None:  # sample 1's json header declares 10**12 bytes
    head = _entry(out, 0, 1, "json")[0] - 512

    def damage(b: bytearray) -> bytearray:
        b[head + 124 : head + 136] = b"\x80" + (10**12).to_bytes(11, "big")  # base-256 size
        chk = sum(b[head : head + 148]) + 8 * 32 + sum(b[head + 156 : head + 512])
        b[head + 148 : head + 156] = f"{chk:06o}\0 ".encode()
        return b

    _rewrite(_path(out, 0, ".tar"), damage)


def _unknown_member_huge(out: Path) -> None:
    """Sample 1's json header: an unknown member type declaring 10**12 bytes (a reader that
    skips the member seeks past them in stream mode: 10**8 empty reads, hours, before)."""
    head = _entry(out, 0, 1, "json")[0] - 512

    def damage(b: bytearray) -> bytearray:
        b[head + 124 : head + 136] = b"\x80" + (10**12).to_bytes(11, "big")
        b[head + 156] = ord("Z")  # no such member type
        chk = sum(b[head : head + 148]) + 8 * 32 + sum(b[head + 156 : head + 512])
        b[head + 148 : head + 156] = f"{chk:06o}\0 ".encode()
        return b

    _rewrite(_path(out, 0, ".tar"), damage)


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _idx_lines(out: Path, shard: int, fn: Callable[[list[str]], list[str]]) -> None:
    p = _path(out, shard, ".idx")
    p.write_text("\n".join(fn(p.read_text().split("\n"))))


def _idx_huge_size(lines: list[str]) -> list[str]:
    parts = lines[2].split(" ")
    parts[2] = str(10**12)  # the size of sample 1's first member
    return [*lines[:2], " ".join(parts), *lines[3:]]


def _idx_drop_last(lines: list[str]) -> list[str]:
    body = [line for line in lines[1:] if line][:-1]
    return [f"v1.2 {len(body)}", *body, ""]


def _json_doc(out: Path, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads((out / name).read_text())
    fn(doc)
    (out / name).write_text(json.dumps(doc))


def _inflate_both(out: Path) -> None:
    _json_doc(out, "sizes.json", lambda d: d["shards"].update({"data/train-000000.tar": 200}))
    _json_doc(out, "dataset.json", lambda d: d.update(num_samples=200 + SIZES[1]))


def _overwrite_json_member(out: Path) -> None:  # after the writer validated it
    off, size = _entry(out, 0, 1, "json")
    _rewrite(_path(out, 0, ".tar"), lambda b: b[:off] + b"{" + b"!" * (size - 1) + b[off + size :])


def _add_empty_shard(out: Path) -> None:
    """A third shard whose every planned sample failed: 0 samples, committed (as a build whose
    items all fail writes it), listed in sizes.json and dataset.json."""
    meta = SampleMeta("S0", "seq", 0, None, None, 2)
    with ShardWriter(str(out), "train-000002") as w:
        w.add_failed("syn_9999", "render", "x.ply: failed", meta)
        w.commit(seconds={})
    _json_doc(out, "sizes.json", lambda d: d["shards"].update({"data/train-000002.tar": 0}))
    _json_doc(out, "dataset.json", lambda d: d.update(num_shards=3, num_failed=1))
    write_build_root_files(out)


# ------------------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Case:
    """One malformed input and what each consumer must make of it.

    ``verify``/``info``: ``"ok"`` (exit 0), ``"bad:TEXT"`` (exit 1, TEXT in the report) or
    ``"error:TEXT"`` (exit 2, TEXT in the message). Loaders: ``"ok"`` (every sample once),
    ``"skip:N"`` (N samples left out and counted, the rest once, the epoch keeps its steps),
    ``"error:TEXT"`` (one error naming TEXT), ``"meta:KEY"`` (images fine, reading the row's
    meta raises naming KEY), ``"-"`` (not run: see ``why``)."""

    name: str
    damage: Callable[[Path], None] | None = None
    edit: dict[str, dict[str, bytes]] = field(default_factory=dict)
    verify: str = "ok"
    info: str = "ok"
    sheet: str = "ok"  # `info --contact-sheet` (the first 4 samples: shard 0)
    wds: str = "ok"
    dali: str = "ok"
    why: str = ""


def _member(ext: str, data: bytes, key: str = "syn_0001") -> dict[str, dict[str, bytes]]:
    return {key: {ext: data}}


CASES = [
    Case("clean"),
    # ---- one bad member
    Case(
        "jpeg-junk",
        sheet="error:shard train-000000 key syn_0001 member t01.v00.rgb.jpg: not an image",
        edit=_member("t01.v00.rgb.jpg", b"\xff\xd8junk"),
        verify="bad:syn_0001: image t01.v00.rgb.jpg: not an image",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "jpeg-truncated",
        sheet="error:key syn_0001 member t00.v00.rgb.jpg: does not decode",
        edit=_member("t00.v00.rgb.jpg", _good("t00.v00.rgb.jpg")[:200]),
        verify="bad:image t00.v00.rgb.jpg: does not decode",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "member-empty",
        sheet="error:key syn_0001 member t00.v01.rgb.jpg: not an image",
        edit=_member("t00.v01.rgb.jpg", b""),
        verify="bad:image t00.v01.rgb.jpg: not an image",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "png-idat-crc",
        sheet="error:member t00.v01.depth.png: PNG chunk b'IDAT' at byte 33 fails its CRC",
        edit=_member("t00.v01.depth.png", _crc_broken(_good("t00.v01.depth.png"))),
        verify="bad:fails its CRC",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "jpeg-wrong-size",
        sheet="error:member t00.v00.rgb.jpg: image is 20x20, expected 32x32",
        edit=_member("t00.v00.rgb.jpg", encode_jpeg(np.full((20, 20, 3), 90, np.uint8), 90)),
        verify="bad:image is 20x20, expected 32x32",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "png-rgb-in-depth",
        sheet="error:member t01.v01.depth.png: image has mode RGB",
        edit=_member("t01.v01.depth.png", encode_png8(np.full((32, 32, 3), 9, np.uint8))),
        verify="bad:has mode RGB",
        wds="skip:1",
        dali="skip:1",
    ),
    Case(
        "png-8bit-in-depth",
        sheet="error:member t01.v01.depth.png: image has mode L",
        edit=_member("t01.v01.depth.png", encode_png8(np.full((32, 32), 9, np.uint8))),
        verify="bad:has mode L",
        wds="skip:1",
        dali="skip:1",  # the graph checks the PNG header (the decoder would convert it x257)
    ),
    Case(
        "jpeg-declares-60000px",
        sheet="error:member t00.v00.rgb.jpg: declares too many pixels",
        edit=_member("t00.v00.rgb.jpg", _bomb_jpeg()),
        verify="bad:image t00.v00.rgb.jpg: declares too many pixels",
        wds="skip:1",
        dali="-",
        why="DALI's decoder allocates the declared 10.8 GB (test_loaders covers it under a "
        "memory limit: raised at once, naming the window)",
    ),
    Case(
        "json-member-garbage",
        damage=_overwrite_json_member,
        verify="bad:syn_0001: json fails SampleJson",
        wds="meta:syn_0001",
        dali="meta:syn_0001",
    ),
    # ---- the tar
    Case(
        "tar-truncated",
        sheet="error:train-000000.tar: not a readable tar",
        damage=_truncate_tar,
        verify="bad:idx points outside the tar",
        wds="skip:2",
        dali="skip:2",
    ),
    Case(
        "tar-zero-filled",
        damage=_zero_tar,
        verify="bad:train-000000: tar",
        wds="error:train-000000 (4)",
        dali="error:train-000000.tar: not a tar archive",
    ),
    Case(
        "tar-bad-header",
        damage=_bad_header,
        verify="bad:train-000000",
        wds="skip:2",
        dali="ok",  # DALI reads members by the index: the data is intact
    ),
    Case(
        "tar-member-declares-1e12-bytes",
        sheet="error:train-000000.tar: not a readable tar",
        damage=_huge_member_size,
        verify="bad:tar unreadable",
        wds="skip:3",
        dali="ok",  # the index is intact
    ),
    Case(
        "tar-unknown-member-declares-1e12-bytes",
        damage=_unknown_member_huge,
        verify="bad:train-000000.tar: unexpected end of file",
        sheet="error:train-000000.tar",
        wds="skip:3",
        dali="ok",  # the index is intact
    ),
    Case(
        "tar-is-fifo",
        damage=lambda out: _replace_with_fifo(_path(out, 1, ".tar")),
        verify="bad:train-000001.tar: not a regular file",
        wds="error:train-000001.tar: not a regular file",
        dali="error:train-000001.tar: not a regular file",
    ),
    Case(
        "tar-is-directory",
        damage=lambda out: _replace_with_dir(_path(out, 1, ".tar")),
        verify="bad:train-000001.tar: a directory",
        wds="error:train-000001.tar: not a regular file",
        dali="error:train-000001.tar: not a regular file",
    ),
    Case(
        "tar-missing",
        damage=lambda out: _path(out, 1, ".tar").unlink(),
        verify="bad:tar file missing",
        wds="error:train-000001.tar is missing",
        dali="error:train-000001.tar is missing",
    ),
    Case(
        "tar-trailing-garbage",
        damage=lambda out: _rewrite(_path(out, 1, ".tar"), lambda b: b + b"x" * 700),
        verify="bad:tar sha256 differs",
    ),
    # ---- the DALI index
    Case(
        "idx-binary-garbage",
        damage=lambda out: _path(out, 0, ".idx").write_bytes(bytes(range(256)) * 4),
        verify="bad:not a DALI index",
        wds="error:train-000000.idx: not a DALI index",
        dali="error:train-000000.idx: not a DALI index",
    ),
    Case(
        "idx-wrong-count",
        damage=lambda out: _idx_lines(out, 1, lambda ls: ["v1.2 9", *ls[1:]]),
        verify="bad:header says 9 samples",
        dali="error:train-000001.idx: header says 9 samples",
    ),
    Case(
        "idx-size-1e12",
        damage=lambda out: _idx_lines(out, 1, _idx_huge_size),
        verify="bad:idx points outside the tar",
        dali="skip:1",
    ),
    Case(
        "idx-fewer-samples",
        damage=lambda out: _idx_lines(out, 1, _idx_drop_last),
        verify="bad:idx lists 2 samples, tar has 3",
        dali="error:train-000001.idx lists 2 samples, sizes.json 3",
    ),
    Case(
        "idx-is-fifo",
        damage=lambda out: _replace_with_fifo(_path(out, 1, ".idx")),
        verify="bad:train-000001.idx: not a regular file",
        wds="error:train-000001.idx: not a regular file",
        dali="error:train-000001.idx: not a regular file",
    ),
    # ---- the root and per-shard files
    Case(
        "sizes-inflated",
        damage=lambda out: _json_doc(
            out, "sizes.json", lambda d: d["shards"].update({"data/train-000000.tar": 200})
        ),
        verify="bad:sizes.json does not match",
        wds="error:sizes.json lists 203 samples",
        dali="error:sizes.json lists 203 samples",
    ),
    Case(
        "sizes-and-dataset-inflated",
        damage=_inflate_both,
        verify="bad:sizes.json does not match",
        wds="error:196 of the 203 samples",
        dali="error:train-000000.idx lists 4 samples, sizes.json 200",
    ),
    Case(
        "sizes-garbage",
        damage=lambda out: (out / "sizes.json").write_bytes(b"\xff\xfe{garbage"),
        verify="bad:sizes.json invalid",
        wds="error:sizes.json",
        dali="error:sizes.json",
    ),
    Case(
        "dataset-image-size-wrong",
        damage=lambda out: _json_doc(out, "dataset.json", lambda d: d.update(image_size=64)),
        verify="bad:dataset.json image_size=64 but the shards' samples have 32",
        wds="error:image_size=64",
        dali="error:image_size=64",
    ),
    Case(
        "dataset-schema-major-2",
        damage=lambda out: _json_doc(out, "dataset.json", lambda d: d.update(schema_version="2.0")),
        verify="bad:dataset.json schema_version 2.0",
        wds="error:schema version 2.0",
        dali="error:schema version 2.0",
    ),
    Case(
        "dataset-garbage",
        damage=lambda out: (out / "dataset.json").write_bytes(b"\x00\x01not json"),
        verify="bad:dataset.json invalid",
        info="error:dataset.json: not a valid dataset.json",
        wds="error:dataset.json: not readable JSON",
        dali="error:dataset.json: not readable JSON",
    ),
    Case(
        "dataset-is-fifo",
        damage=lambda out: _replace_with_fifo(out / "dataset.json"),
        verify="bad:dataset.json: not a regular file",
        info="error:dataset.json: not a regular file",
        wds="error:dataset.json: not a regular file",
        dali="error:dataset.json: not a regular file",
    ),
    Case(
        "stats-garbage",
        damage=lambda out: _path(out, 1, ".stats.json").write_text('{"shard_name": 3}'),
        verify="bad:stats.json invalid",
        info="error:train-000001.stats.json: not a valid stats.json",
    ),
    Case(
        "shard-parquet-garbage",
        damage=lambda out: _path(out, 1, ".parquet").write_bytes(b"PAR1" + b"\0" * 64),
        verify="bad:parquet unreadable",
        info="error:train-000001.parquet: not a readable parquet file",
    ),
    Case(
        "manifest-garbage",
        damage=lambda out: (out / "manifest.parquet").write_bytes(b"not parquet"),
        verify="bad:manifest.parquet unreadable",
    ),
    Case("shard-with-no-sample", damage=_add_empty_shard, verify="ok:holds no sample"),
    # ---- beyond the campaign's list
    Case(
        "stats-is-fifo",
        damage=lambda out: _replace_with_fifo(_path(out, 1, ".stats.json")),
        verify="bad:train-000001.stats.json: not a regular file",
        info="error:train-000001.stats.json: not a regular file",
        wds="error:train-000001.stats.json: not a regular file",
        dali="error:train-000001.stats.json: not a regular file",
    ),
    Case(
        "shard-parquet-is-fifo",
        damage=lambda out: _replace_with_fifo(_path(out, 1, ".parquet")),
        verify="bad:train-000001.parquet: not a regular file",
        info="error:train-000001.parquet: not a regular file",
    ),
    Case(
        "manifest-is-fifo",
        damage=lambda out: _replace_with_fifo(out / "manifest.parquet"),
        verify="bad:manifest.parquet: not a regular file",
    ),
    Case(
        "tar-dangling-symlink",
        damage=lambda out: (
            _path(out, 1, ".tar").unlink(),
            _path(out, 1, ".tar").symlink_to(out / "gone.tar"),
        ),
        verify="bad:tar file missing",
        wds="error:train-000001.tar: not a regular file",
        dali="error:train-000001.tar: not a regular file",
    ),
    Case(
        "sizes-negative",
        damage=lambda out: _json_doc(
            out, "sizes.json", lambda d: d["shards"].update({"data/train-000000.tar": -4})
        ),
        verify="bad:sizes.json does not match",
        wds="error:sizes.json lists -1 samples",
        dali="error:sizes.json lists -1 samples",
    ),
    Case(
        "dataset-no-views",
        damage=lambda out: _json_doc(out, "dataset.json", lambda d: d.update(views=[])),
        verify="bad:dataset.json views=0 but the shards' samples have 2",
        wds="error:views=0",
        dali="error:views=0",
    ),
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("clean") / "shards"
    keys = build_shard_dir(out, SIZES)
    write_build_root_files(out)
    return out, keys


def _make(case: Case, clean: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    out = tmp_path / "shards"
    if case.edit:
        keys = build_shard_dir(out, SIZES, edit=case.edit)
        write_build_root_files(out)
    else:
        shutil.copytree(clean[0], out)
        keys = clean[1]
    if case.damage:
        case.damage(out)
    return out, keys


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback from mvdata {args[0]}: {result.exception!r}")
    assert "Traceback" not in result.output
    return result


def _expect_cli(result: Any, expect: str) -> None:
    kind, _, text = expect.partition(":")
    code = {"ok": 0, "bad": 1, "error": 2}[kind]
    assert result.exit_code == code, result.output
    assert text in " ".join(result.output.split()), result.output


# ------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_verify_and_info(case: Case, clean: tuple[Path, list[str]], tmp_path: Path) -> None:
    out, _ = _make(case, clean, tmp_path)
    _expect_cli(_cli("verify", str(out)), case.verify)
    _expect_cli(_cli("info", str(out)), case.info)
    if case.info == "ok":
        sheet = tmp_path / "sheet.png"
        _expect_cli(_cli("info", str(out), "--contact-sheet", str(sheet)), case.sheet)
        assert sheet.exists() == case.sheet.startswith("ok")


def _run_loader(out: Path, backend: str) -> tuple[list[tuple[str, bool]], Any, list[Any]]:
    loader = make_loader(
        out,
        batch_size=3,
        backend=backend,  # type: ignore[arg-type]
        device="cpu",
        train=False,
        num_workers=0 if backend == "wds" else 1,
        **({"max_bad_fraction": 0.5} if backend == "wds" else {}),
    )
    batches = list(loader)
    assert len(batches) == len(loader)  # the epoch keeps its steps, whatever was skipped
    return rows(batches), loader, batches


@pytest.mark.parametrize("backend", ["wds", "dali"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_loaders(case: Case, backend: str, clean: tuple[Path, list[str]], tmp_path: Path) -> None:
    expect = case.wds if backend == "wds" else case.dali
    if expect == "-":
        pytest.skip(case.why)
    out, keys = _make(case, clean, tmp_path)
    kind, _, arg = expect.partition(":")
    if kind == "error":
        with pytest.raises((ValueError, LoaderDataError)) as err:
            _run_loader(out, backend)
        assert arg in str(err.value)
        assert "\n" not in str(err.value).split(" DALI: ")[0]  # one line (DALI's reason apart)
        return
    got, loader, batches = _run_loader(out, backend)
    valid = [k for k, ok in got if ok]
    assert len(valid) == len(set(valid)) and set(valid) <= set(keys)  # nothing twice
    lost = 0 if kind in ("ok", "meta") else int(arg)
    assert len(valid) == len(keys) - lost  # every other sample comes: none lost unseen
    assert loader.errors == lost
    if kind == "meta":
        for b in batches:
            for i, key in enumerate(b.keys):
                if key == arg:
                    with pytest.raises(LoaderDataError, match=f"key {arg}: json"):
                        b.meta[i]


# ------------------------------------------------------------------------------ the CLI
def test_odd_paths_are_printed_verbatim(clean: tuple[Path, list[str]], tmp_path: Path) -> None:
    """Square brackets (rich markup) in a path: before, `verify`/`info` crashed on a markup
    error; the path is printed as it is."""
    out = tmp_path / "o[/]x" / "[bold]shards[/bold]"
    shutil.copytree(clean[0], out)
    r = _cli("info", str(out))
    assert r.exit_code == 0 and "o[/]x/[bold]shards[/bold]" in "".join(r.output.split())
    assert _cli("verify", str(out)).exit_code == 0
    assert [
        k
        for k, ok in rows(make_loader(out, batch_size=4, backend="wds", num_workers=0, train=False))
        if ok
    ] == clean[1]


def test_cli_errors_name_the_place(clean: tuple[Path, list[str]], tmp_path: Path) -> None:
    """`info` on a folder that is not a build (before: an empty table, exit 0), `verify` on a
    file, `info --contact-sheet` into a folder: one line naming it, exit 2, no traceback."""
    plain = tmp_path / "thesis"
    (plain / "data").mkdir(parents=True)
    (plain / "notes.txt").write_text("precious")
    _expect_cli(_cli("info", str(plain)), "error:not an mvdata shard directory")
    _expect_cli(_cli("verify", str(plain / "notes.txt")), "error:notes.txt: not a directory")
    _expect_cli(_cli("info", str(plain / "notes.txt")), "error:notes.txt: not a directory")
    _expect_cli(
        _cli("info", str(clean[0]), "--contact-sheet", str(tmp_path)), "error:is a directory"
    )
    _expect_cli(_cli("verify", str(tmp_path / "nowhere")), "error:does not exist")
