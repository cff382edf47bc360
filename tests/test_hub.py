"""`mvdata publish` / `mvdata pull` end to end: the real CLI (subprocesses) and the real
``huggingface_hub`` client against a local Hub on 127.0.0.1 (:mod:`tests.hub_server`).

The datasets are tiny real builds: procedural-face synthetic data (publishable) and the same
faces in BU-3DFE's native layout read by the ``bu3dfe`` reader (licensed: not publishable).
Every run sets ``HF_ENDPOINT`` to the local Hub, a recognisable ``HF_TOKEN``, a private
``HF_HOME``, ``HF_HUB_DISABLE_XET=1`` (plain LFS uploads) and unsets ``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mvdata.build.config import BuildConfig
from mvdata.build.driver import build
from mvdata.hub.card import PROCEDURAL_NOTE, SFM_LICENCE_NAME, hub_card
from mvdata.shards.verify import verify_dataset
from mvdata.synth.facemodel import SFM_TERMS, procedural_face
from mvdata.synth.generate import SynthConfig
from mvdata.synth.writer import write_synth
from schemas.models import DatasetMetadata
from tests.hub_server import GITATTRIBUTES, Blob, HubServer

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_mvdataTESTtoken0123456789abcdefXYZ"
#: 4 shards of 4 files: 8 files a commit gives 2 shard commits, then the root-files commit.
LIMIT = ("--max-commit-files", "8")
SMALL = dict(image_size=32, samples_per_shard=1, num_folds=2, views=((0.0, 0.0), (20.0, 0.0)))


def _synth_build(root: Path, *, fmt: str = "default", model=None, **build_kw) -> Path:
    cfg = SynthConfig(
        num_identities=2, expressions=("happiness",), intensities=(2, 4), texture_size=32, seed=3
    )
    write_synth(cfg, model or procedural_face(), root / "raw", fmt=fmt)
    source = "synthetic" if fmt == "default" else fmt
    bcfg = BuildConfig(source=source, source_root=str(root / "raw"), **{**SMALL, **build_kw})
    summary = build(bcfg, str(root / "out"), workers=1)
    assert summary.finalized and summary.num_failed == 0
    return root / "out"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Procedural-face synthetic set: 2 identities x happiness 2, 4 -> 4 samples in 4 shards."""
    return _synth_build(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def licensed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same faces as a BU-3DFE folder, built by the bu3dfe reader: 4 samples in 2 shards."""
    return _synth_build(tmp_path_factory.mktemp("bu3dfe"), fmt="bu3dfe", samples_per_shard=2)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """A fresh local Hub, and the environment that points the client at it."""
    server = HubServer(TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # conftest sets it for all other tests
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield server
    server.close()


def mvdata(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The ``mvdata`` CLI in a subprocess with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "cli.mvdata_app", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def expected_files(out: Path) -> dict[str, bytes]:
    """What a publish of ``out`` must leave in the repo (besides ``.gitattributes``): the shard
    files and root files byte for byte, the card and contact sheet publish rendered."""
    files = {f"data/{p.name}": p.read_bytes() for p in sorted((out / "data").iterdir())}
    files |= {n: (out / n).read_bytes() for n in ("manifest.parquet", "sizes.json", "dataset.json")}
    work = out / ".mvdata" / "hub"
    files["README.md"] = (work / "README.md").read_bytes()
    files["assets/contact_sheet.png"] = (work / "contact_sheet.png").read_bytes()
    return files


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def writes(hub: HubServer) -> int:
    """Requests that upload or commit anything."""
    return sum(
        hub.state.count(m, p)
        for m, p in (("POST", r"/preupload/"), ("PUT", r"^/lfs-upload/"), ("POST", r"/commit/"))
    )


# --------------------------------------------------------------------------- dry run + card
def test_dry_run_writes_card_and_plan_without_network(built: Path, hub: HubServer) -> None:
    res = mvdata("publish", built, "--repo", "me/tiny", "--dry-run", *LIMIT)
    assert res.returncode == 0, res.stderr
    assert hub.state.requests == []  # not even a repo lookup
    work = built / ".mvdata" / "hub"
    meta = DatasetMetadata.model_validate_json((built / "dataset.json").read_bytes())
    card = (work / "README.md").read_text()
    assert card == hub_card(str(built), meta, "me/tiny")
    fm = front_matter(card)
    assert fm["pretty_name"] == "synthetic-multiview"
    assert fm["license"] == "other" and fm["license_name"]
    assert fm["annotations_creators"] == ["machine-generated"]
    assert fm["source_datasets"] == ["original"]
    assert fm["size_categories"] == ["n<1K"]
    assert "zero-shot-image-classification" in fm["task_categories"]
    assert fm["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.tar"}]}
    ]
    # Counts, the contact sheet, how it was built and how to load it from the Hub.
    assert "| happiness | 4 |" in card and "| 2 | 2 |" in card and "| train | 4 |" in card
    assert "![contact sheet](assets/contact_sheet.png)" in card
    assert "32 x 32 px" in card and "seed 0" in card and "schema version" in card
    assert 'load_dataset("me/tiny", split="train")' in card
    assert 'make_loader("hf://datasets/me/tiny"' in card and "mvdata pull me/tiny" in card
    assert PROCEDURAL_NOTE in card and "do not redistribute" not in card
    with Image.open(work / "contact_sheet.png") as im:
        assert im.format == "PNG" and im.width >= 2 * 32
    # The plan: every file once, its hash, shards whole, the card last.
    plan = json.loads((work / "upload-plan.json").read_text())
    want = expected_files(built)
    got = {f["path_in_repo"]: f for c in plan["commits"] for f in c["files"]}
    assert sorted(got) == sorted(want) and plan["num_files"] == len(want)
    for path, f in got.items():
        assert f["sha256"] == hashlib.sha256(want[path]).hexdigest() and f["size"] == len(
            want[path]
        )
    assert [len(c["files"]) for c in plan["commits"]] == [8, 8, 5]
    for c in plan["commits"][:-1]:
        shards = {Path(f["path_in_repo"]).name.split(".")[0] for f in c["files"]}
        assert len(c["files"]) == 4 * len(shards)
    assert "README.md" in {f["path_in_repo"] for f in plan["commits"][-1]["files"]}
    assert plan["private"] is True and TOKEN not in json.dumps(plan)


def test_sfm_synthetic_card_carries_the_model_terms(sfm_model, tmp_path: Path) -> None:
    from mvdata.hub.publish import publish

    out = _synth_build(tmp_path, model=sfm_model)
    meta = DatasetMetadata.model_validate_json((out / "dataset.json").read_bytes())
    assert meta.publishable is False
    with pytest.raises(PermissionError, match="--i-have-redistribution-rights"):
        publish(str(out), "me/sfm", public=True, dry_run=True)
    report = publish(str(out), "me/sfm", dry_run=True)
    card = Path(report.card_path).read_text()
    fm = front_matter(card)
    assert fm["license"] == "other" and fm["license_name"] == SFM_LICENCE_NAME
    assert SFM_TERMS in card and "NON-COMMERCIAL" in card and "do not redistribute" in card


# --------------------------------------------------------------------------- publish + pull
def test_publish_private_then_pull(
    built: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = mvdata("publish", built, "--repo", "me/tiny", *LIMIT)
    assert res.returncode == 0, res.stderr
    assert "3 commits made" in res.stdout and "(private)" in res.stdout
    repo = hub.state.repos["me/tiny"]
    assert repo.private is True
    want = expected_files(built)
    assert hub.files("me/tiny") == {**want, ".gitattributes": GITATTRIBUTES}
    assert [c["summary"].rsplit(" ", 1)[-1] for c in repo.commits[1:]] == [
        "(1/3)",
        "(2/3)",
        "(3/3)",
    ]
    assert hub.state.unknown == []

    # Run again: everything is there, nothing is sent.
    before = writes(hub)
    res = mvdata("publish", built, "--repo", "me/tiny", *LIMIT)
    assert res.returncode == 0, res.stderr
    assert "0 commits made, 3 skipped" in res.stdout and writes(hub) == before

    pulled = tmp_path / "pulled"
    res = mvdata("pull", "me/tiny", pulled)
    assert res.returncode == 0, res.stderr
    files = {str(p.relative_to(pulled)): p.read_bytes() for p in pulled.rglob("*") if p.is_file()}
    assert files == hub.files("me/tiny")  # no download metadata left behind
    assert not (tmp_path / ".pulled.pull").exists()
    assert verify_dataset(str(pulled)).ok

    # `datasets` reads the pulled folder offline, by data_files and by the card's configs.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": str(pulled / "data" / "train-*.tar")},
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    members = json.loads((built / "dataset.json").read_text())["member_names"]
    cols = {c for c in ds.column_names if not c.startswith("__")}
    assert cols == set(members) and len(ds) == 4
    for ext in members:
        kind = ds.features[ext]
        assert isinstance(kind, datasets.Image) if ext != "json" else isinstance(kind, dict)
    row = ds[0]
    assert row["json"]["key"] == row["__key__"] and row["t00.v01.rgb.jpg"].size == (32, 32)
    by_card = datasets.load_dataset(str(pulled), split="train", cache_dir=str(tmp_path / "c2"))
    assert by_card["__key__"] == ds["__key__"] and by_card.features == ds.features


def test_pull_is_atomic_and_resumes(built: Path, hub: HubServer, tmp_path: Path) -> None:
    assert mvdata("publish", built, "--repo", "me/atomic").returncode == 0
    # A shard damaged on the server: the pull does not verify and leaves no DIR behind.
    repo = hub.state.repos["me/atomic"]
    tree = repo.trees[repo.refs["main"]]
    good = tree["data/train-000001.tar"].data
    tree["data/train-000001.tar"] = Blob(good[:700] + b"x" * 100 + good[800:], lfs=True)
    dest = tmp_path / "copy"
    res = mvdata("pull", "me/atomic", dest)
    assert res.returncode == 2 and "does not verify" in res.stderr and "train-000001" in res.stderr
    assert not dest.exists() and (tmp_path / ".copy.pull").is_dir()  # kept for the next run
    # Publish again repairs exactly that file (its hash differs from the local one) ...
    res = mvdata("publish", built, "--repo", "me/atomic")
    assert res.returncode == 0, res.stderr
    assert [op["value"]["path"] for op in repo.commits[-1]["operations"]] == [
        "data/train-000001.tar"
    ]
    # ... and the next pull downloads only that file into the kept folder.
    before = hub.state.count("GET", r"/resolve/")
    res = mvdata("pull", "me/atomic", dest)
    assert res.returncode == 0, res.stderr
    assert hub.state.count("GET", r"/resolve/") - before == 1
    assert verify_dataset(str(dest)).ok and not (tmp_path / ".copy.pull").exists()
    assert (dest / "data" / "train-000001.tar").read_bytes() == good


def test_revision_goes_to_a_branch(built: Path, hub: HubServer, tmp_path: Path) -> None:
    res = mvdata("publish", built, "--repo", "me/rev", "--revision", "v1")
    assert res.returncode == 0, res.stderr
    assert hub.files("me/rev", "main") == {".gitattributes": GITATTRIBUTES}
    assert hub.files("me/rev", "v1") == {**expected_files(built), ".gitattributes": GITATTRIBUTES}
    res = mvdata("pull", "me/rev", tmp_path / "v1", "--revision", "v1")
    assert res.returncode == 0, res.stderr
    assert verify_dataset(str(tmp_path / "v1")).ok


# --------------------------------------------------------------------------- licence guard
def test_licence_guard(licensed: Path, hub: HubServer) -> None:
    meta = DatasetMetadata.model_validate_json((licensed / "dataset.json").read_bytes())
    assert meta.source == "bu3dfe" and meta.publishable is False

    res = mvdata("publish", licensed, "--repo", "me/bu", "--public")
    assert res.returncode == 2
    assert (
        "--i-have-redistribution-rights" in res.stderr and "refusing a public upload" in res.stderr
    )
    assert hub.state.requests == []  # refused before any request

    res = mvdata("publish", licensed, "--repo", "me/bu")  # private: the default
    assert res.returncode == 0, res.stderr
    assert hub.state.repos["me/bu"].private is True
    card = hub.files("me/bu")["README.md"].decode()
    fm = front_matter(card)
    assert fm["license"] == "other" and fm["license_name"].startswith("bu-3dfe")
    assert fm["source_datasets"] == ["extended|BU-3DFE"] and fm["annotations_creators"] == ["found"]
    assert "not redistributable" in card and "do not redistribute" in card

    res = mvdata(
        "publish", licensed, "--repo", "me/bu-public", "--public", "--i-have-redistribution-rights"
    )
    assert res.returncode == 0, res.stderr
    assert hub.state.repos["me/bu-public"].private is False
    # Made public only after the last commit: a half-uploaded dataset is never public.
    last_write = max(i for i, (m, p) in enumerate(hub.state.requests) if p.endswith("/settings"))
    assert all("/commit/" not in p for _, p in hub.state.requests[last_write:])

    # Publishing without --public into a repo that is public is refused before any upload.
    before = writes(hub)
    res = mvdata("publish", licensed, "--repo", "me/bu-public")
    assert res.returncode == 2 and "exists and is public" in res.stderr
    assert writes(hub) == before


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kind", ["commit", "lfs"])
def test_resume_after_a_failure_uploads_only_what_is_missing(
    built: Path, hub: HubServer, kind: str
) -> None:
    hub.state.fail = {kind: 2}  # the 2nd commit, or the 2nd LFS upload, fails once
    res = mvdata("publish", built, "--repo", "me/resume", *LIMIT)
    assert res.returncode == 1
    assert "run the same command again to resume" in res.stderr and "injected failure" in res.stderr
    if kind == "commit":  # the server echoed the credentials: the CLI blanks them out
        assert "Bearer ***" in res.stderr and TOKEN not in res.stderr + res.stdout
    want = expected_files(built)
    arrived = {p for p, b in hub.files("me/resume").items() if want.get(p) == b}
    assert len(arrived) == (8 if kind == "commit" else 0)
    commits_before = len(hub.state.repos["me/resume"].commits)
    puts_before = len(hub.state.lfs_puts)

    res = mvdata("publish", built, "--repo", "me/resume", *LIMIT)
    assert res.returncode == 0, res.stderr
    assert hub.files("me/resume") == {**want, ".gitattributes": GITATTRIBUTES}
    # The second run committed exactly the files that had not arrived ...
    sent = [
        op["value"]["path"]
        for c in hub.state.repos["me/resume"].commits[commits_before:]
        for op in c["operations"]
    ]
    assert sorted(sent) == sorted(set(want) - arrived)
    assert len(hub.state.repos["me/resume"].commits) - commits_before == (
        2 if kind == "commit" else 3
    )
    # ... and uploaded no LFS object twice (those of the failed commit were already stored).
    assert len(hub.state.lfs_puts) == len(set(hub.state.lfs_puts)) > puts_before


# --------------------------------------------------------------------------- token hygiene
_RAISE_AND_PRINT = """
import sys, traceback
from mvdata.hub.client import HubError
from mvdata.hub.publish import publish
try:
    publish(sys.argv[1], "me/leak", max_commit_files=8)
except HubError as exc:
    traceback.print_exception(exc)
    chain, cur = [], exc
    while cur is not None:
        chain.append(repr(cur) + repr(cur.args))
        cur = cur.__cause__ or cur.__context__
    print("\\n".join(chain))
    sys.exit(1)
"""


def test_token_appears_in_no_output_file_or_upload(
    built: Path, hub: HubServer, tmp_path: Path
) -> None:
    outputs: list[str] = []
    # The server echoes the request's Authorization header in the error of the 1st commit.
    hub.state.fail = {"commit": 1}
    res = subprocess.run(
        [sys.executable, "-c", _RAISE_AND_PRINT, str(built)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 1 and "HubError" in res.stderr and "Bearer ***" in res.stderr
    outputs += [res.stdout, res.stderr]
    for args in (
        ("publish", built, "--repo", "me/leak", *LIMIT),
        ("pull", "me/leak", tmp_path / "pulled"),
    ):
        res = mvdata(*args)
        assert res.returncode == 0, res.stderr
        outputs += [res.stdout, res.stderr]
    # The token was used (private repo, authenticated writes) ...
    assert hub.state.repos["me/leak"].private and len(hub.files("me/leak")) > 1
    # ... and appears nowhere: outputs, local files, HF_HOME, and what the server received.
    secret = TOKEN.encode()
    assert not any(TOKEN in o for o in outputs)
    scanned = 0
    for root in (built, tmp_path):
        for p in root.rglob("*"):
            if p.is_file():
                assert secret not in p.read_bytes(), p
                scanned += 1
    assert scanned > 40
    for repo in hub.state.repos.values():
        assert secret not in json.dumps(repo.commits).encode()
        for tree in repo.trees.values():
            assert not any(secret in blob.data for blob in tree.values())
    assert not any(secret in data for data in hub.state.lfs_store.values())


# --------------------------------------------------------------------------- republish
def test_republish_removes_stale_shards(built: Path, licensed: Path, hub: HubServer) -> None:
    assert mvdata("publish", built, "--repo", "me/x").returncode == 0
    res = mvdata("publish", licensed, "--repo", "me/x")
    assert res.returncode == 0, res.stderr
    # 4 shards before, 2 now: the data_files pattern must not pick up the old ones.
    assert "8 stale files removed" in res.stdout
    assert hub.files("me/x") == {**expected_files(licensed), ".gitattributes": GITATTRIBUTES}
