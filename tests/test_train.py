"""``mvmodel train`` on real shards (a tiny procedural-face build), on the CPU: a whole run,
exact resume after a real ``kill -9``, config checks, labels that never reach training, bad
input before any work, a NaN stop that keeps the last good checkpoint, and 2 gloo ranks."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mvdata.build.config import BuildConfig
from mvdata.build.driver import build
from mvdata.loaders import steps_per_epoch
from mvdata.shards.names import member_names
from mvdata.shards.reader import iter_samples, list_shards
from mvdata.shards.writer import ShardWriter
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig
from mvdata.synth.writer import write_synth
from mvdata.testing import build_shard_dir
from mvmodel.checkpoint import CheckpointError, latest_checkpoint
from mvmodel.config import ConfigError, config_hash, load_config
from mvmodel.train.logs import read_log
from mvmodel.train.loop import TrainingDiverged, cpu_has_native_bf16, train, uses_bf16
from mvmodel.train.module import MultiviewVLMTrainer

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 static samples of 3 procedural identities, 3 views, 32 px, rgb + depth + normals (the
    default modalities), 3 shards."""
    root = tmp_path_factory.mktemp("train-data")
    cfg = SynthConfig(
        num_identities=3,
        expressions=("neutral", "happiness", "surprise", "sadness"),
        intensities=(3, 4),
        texture_size=64,
        seed=2,
    )
    write_synth(cfg, procedural_face(), root / "synth")
    out = root / "shards"
    bcfg = BuildConfig(
        source="synthetic", source_root=str(root / "synth"), image_size=32, samples_per_shard=8
    )
    build(bcfg, str(out), workers=1)
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prompt-embedding cache for every run of this module (MiniLM encodes once)."""
    return tmp_path_factory.mktemp("prompt-cache")


def tiny(cache_dir: Path, *extra: str) -> list[str]:
    """Overrides for a run that takes seconds on 2 cores."""
    return [
        "model.image_size=32",
        "model.embed_dim=32",
        "model.proj_hidden=64",
        "model.fusion_depth=1",
        "data.batch_size=4",
        "data.num_workers=1",
        "text.prompts.max_per_class=4",
        f"text.cache_dir={cache_dir}",
        "optim.warmup_steps=2",
        "optim.max_steps=6",
        "run.checkpoint_every=2",
        "run.log_every=1",
        "run.progress=false",
        *extra,
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_writes_a_whole_run(shards: Path, cache_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny(cache_dir))
    run = tmp_path / "run"
    summary = train(str(shards), run, cfg, echo=lambda _m: None)
    assert summary.steps == 6 and summary.samples_seen > 0
    for name in ("config.yaml", "run.json", "log.jsonl", "model.safetensors", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_log(run)
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for r in steps:
        for key in ("loss", "loss_multiview", "loss_i2t", "loss_t2i", "tau", "lr", "alpha"):
            assert isinstance(r[key], float), key
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs and "pseudo/overall" in epochs[0] and "prior/overall" in epochs[0]
    # The final weights are the trainer's, loadable without running any code (safetensors).
    trainer = MultiviewVLMTrainer(cfg, text_dim=384)
    trainer.load_state_dict(_weights(run / "model.safetensors"))
    assert latest_checkpoint(run) is not None
    # A second run into the same directory is refused; --resume of a finished run does nothing new.
    with pytest.raises(ValueError, match="already holds a training run"):
        train(str(shards), run, cfg, echo=lambda _m: None)


def test_bf16_autocast_trains_on_the_cpu(shards: Path, cache_dir: Path, tmp_path: Path) -> None:
    """The bf16 path (the GPU default, and the faster CPU choice where oneDNN has native bf16)
    runs here: finite losses, float32 weights, and not the float32 run's parameters."""
    said: list[str] = []
    runs = {}
    for amp in ("off", "bf16"):
        cfg = load_config(None, tiny(cache_dir, f"optim.amp={amp}", "optim.max_steps=3"))
        train(str(shards), tmp_path / amp, cfg, echo=said.append)
        runs[amp] = _weights(tmp_path / amp / "model.safetensors")
        steps = [r for r in read_log(tmp_path / amp) if r["kind"] == "step"]
        assert len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps)
    assert all(t.dtype == torch.float32 for t in runs["bf16"].values() if t.is_floating_point())
    assert not _same(runs["off"], runs["bf16"])
    warned = any("without native bf16" in m for m in said)
    assert warned == (not cpu_has_native_bf16())
    assert uses_bf16("auto", torch.device("cpu")) is False
    assert uses_bf16("auto", torch.device("cuda")) is True
    assert uses_bf16("off", torch.device("cuda")) is False


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        load_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        load_config(None, ["data.batch_size=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("optim:\n  lr: 0.01\nmodel:\n  backbone: resnet34\n")
    cfg = load_config(good, ["--optim.lr=0.02"])
    assert cfg.optim.lr == 0.02 and cfg.model.backbone == "resnet34"
    # YAML reads an unquoted ``off`` as false: the precision switch still means "off".
    assert load_config(None, ["optim.amp=off"]).optim.amp == "off"


def test_resume_refuses_another_config(shards: Path, cache_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(str(shards), run, load_config(None, tiny(cache_dir, "optim.max_steps=2")), echo=print)
    other = load_config(None, tiny(cache_dir, "optim.max_steps=2", "optim.lr=0.5"))
    with pytest.raises(ValueError, match="--resume needs the same settings"):
        train(str(shards), run, other, resume=True, echo=print)
    # The run's own log/checkpoint cadence is not part of the hash: changing it is fine.
    same = load_config(None, tiny(cache_dir, "optim.max_steps=2", "run.log_every=5"))
    assert train(str(shards), run, same, resume=True, echo=print).steps == 2
    # nor is where the prompt embeddings are cached (a moved benchmark OUT): the run goes on
    moved = tmp_path / "moved-cache"
    shutil.copytree(cache_dir, moved)
    on = load_config(None, tiny(moved, "optim.max_steps=2"))
    assert config_hash(on) == config_hash(same) != config_hash(on, legacy_paths=True)
    assert train(str(shards), run, on, resume=True, echo=print).steps == 2
    # ... and a checkpoint written while that location was hashed (before 2026-12-07) resumes
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    state = torch.load(ckpt / "trainer.pt", weights_only=True)
    state["config_hash"] = config_hash(on, legacy_paths=True)
    torch.save(state, ckpt / "trainer.pt")
    assert train(str(shards), run, on, resume=True, echo=print).steps == 2
    state["config_hash"] = "0123456789abcdef"  # a checkpoint of another config stays refused
    torch.save(state, ckpt / "trainer.pt")
    with pytest.raises(CheckpointError, match="0123456789abcdef"):
        train(str(shards), run, on, resume=True, echo=print)


def test_bad_input_is_refused_before_any_work(
    shards: Path, cache_dir: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, tiny(cache_dir))
    with pytest.raises(ValueError, match="not an mvdata shard directory"):
        train(str(tmp_path), tmp_path / "r1", cfg, echo=print)
    # shards built with the former default modalities (rgb, depth) cannot feed the default
    # channels (rgb + depth + normals): refused, naming the file and both ways out
    old = tmp_path / "rgb-depth-shards"
    build_shard_dir(old, [4], modalities=("rgb", "depth"), views=3)
    with pytest.raises(ValueError, match="needs normal") as err:
        train(str(old), tmp_path / "r2", cfg, echo=print)
    assert str(old / "dataset.json") in str(err.value)
    assert "--modalities rgb,depth,normal" in str(err.value)
    assert "model.channels=rgb+depth" in str(err.value)
    assert not (tmp_path / "r2" / "config.yaml").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    shards: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss that turns NaN at step 4 stops the run with the step named; the checkpoint of step 2
    stays the latest (nothing after it is saved)."""
    from mvmodel.losses import MultiviewContrastiveLoss

    calls = {"n": 0}
    real = MultiviewContrastiveLoss.forward

    def poisoned(self: Any, *args: Any, **kw: Any) -> torch.Tensor:
        calls["n"] += 1
        out = real(self, *args, **kw)
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(MultiviewContrastiveLoss, "forward", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"step 4: the loss is not finite.*ckpt-00000002"):
        train(str(shards), run, load_config(None, tiny(cache_dir)), echo=print)
    assert latest_checkpoint(run) == run / "checkpoints" / "ckpt-00000002"
    assert not (run / "model.safetensors").exists()


def _rewrite_shards(
    src: Path, dst: Path, edit: Callable[[int, dict[str, bytes]], dict[str, bytes]]
) -> None:
    """A copy of the shards of ``src`` with every sample's members passed through
    ``edit(index, members)`` (index in reading order); keys and root files unchanged."""
    meta = json.loads((src / "dataset.json").read_text())
    names = member_names(1, len(meta["views"]), meta["modalities"])
    i = 0
    for shard in list_shards(str(src)):
        with ShardWriter(str(dst), shard, member_names=names) as w:
            for s in iter_samples(str(src), shard):
                members = {k: v for k, v in s.items() if k != "__key__"}
                w.add_sample(s["__key__"], edit(i, members))
                i += 1
            w.commit(seconds={})
    for name in ("dataset.json", "sizes.json", "manifest.parquet"):
        (dst / name).write_bytes((src / name).read_bytes())


def _samples(src: Path) -> list[dict[str, Any]]:
    return [s for shard in list_shards(str(src)) for s in iter_samples(str(src), shard)]


def _rewrite_with_scrambled_labels(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose json members carry other expression labels (rotated among the
    samples); images, landmarks and keys unchanged."""
    labels = [json.loads(s["json"])["labels"] for s in _samples(src)]
    rotated = labels[1:] + labels[:1]
    assert rotated != labels

    def edit(i: int, members: dict[str, bytes]) -> dict[str, bytes]:
        doc = json.loads(members["json"])
        doc["labels"] = rotated[i]
        return {**members, "json": json.dumps(doc).encode()}

    _rewrite_shards(src, dst, edit)


def test_scrambled_labels_train_bit_identically(
    shards: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Ground-truth labels never reach training: the same run on shards whose labels are
    scrambled ends with bit-identical weights; only the agreement measurement changes."""
    scrambled = tmp_path / "scrambled"
    _rewrite_with_scrambled_labels(shards, scrambled)
    cfg = load_config(None, tiny(cache_dir, "optim.max_steps=4"))
    a = train(str(shards), tmp_path / "a", cfg, echo=print)
    b = train(str(scrambled), tmp_path / "b", cfg, echo=print)
    assert _same(_weights(a.weights), _weights(b.weights))
    ea = [r for r in read_log(tmp_path / "a") if r["kind"] == "epoch"][-1]
    eb = [r for r in read_log(tmp_path / "b") if r["kind"] == "epoch"][-1]
    assert ea["prior/overall"] != eb["prior/overall"]  # the labels did differ


@pytest.mark.parametrize("skip", [False, True])
def test_held_out_images_never_reach_the_model(
    shards: Path, cache_dir: Path, tmp_path: Path, skip: bool
) -> None:
    """Held-out subjects (data.exclude_folds) take no part in training, not even through
    BatchNorm's batch statistics or the prior's pooled scales: the same run on shards whose
    held-out samples carry other images AND other landmarks ends with bit-identical weights
    and buffers. (Before, their rows went through the backbone in train mode, masked in the
    losses only, and the weights differed; and until prior.fit=training their landmarks shaped
    the prior's robust scales.) With ``data.skip_excluded`` the loader does not read them at
    all: an epoch is the other samples' steps only."""
    samples = _samples(shards)
    folds = [json.loads(s["json"])["fold"] for s in samples]
    held = max(set(folds), key=folds.count)
    rows = [i for i, f in enumerate(folds) if f == held]
    assert len(rows) >= 2
    image_keys = [k for k in samples[0] if k.endswith((".jpg", ".png"))]

    def edit(i: int, members: dict[str, bytes]) -> dict[str, bytes]:
        if i not in rows:
            return members
        other = samples[rows[(rows.index(i) + 1) % len(rows)]]  # another held-out sample's views
        meta = json.loads(members["json"])
        for field in ("landmarks", "reference_landmarks"):  # and other geometry
            if meta.get(field) is not None:
                pts = np.asarray(meta[field], dtype=np.float64)
                meta[field] = (pts + 0.2 * np.sin(np.arange(pts.size)).reshape(pts.shape)).tolist()
        edited = json.dumps(meta).encode()
        return {**members, **{k: other[k] for k in image_keys}, "json": edited}

    swapped = tmp_path / "swapped"
    _rewrite_shards(shards, swapped, edit)
    assert any(
        _samples(swapped)[i][k] != samples[i][k] for i in rows for k in image_keys
    )  # the held-out images did change
    assert any("landmarks" in json.loads(samples[i]["json"]) for i in rows)
    over = ["optim.max_steps=4", f"data.exclude_folds=[{held}]", f"data.skip_excluded={skip}"]
    cfg = load_config(None, tiny(cache_dir, *over))
    a = train(str(shards), tmp_path / "a", cfg, echo=print)
    b = train(str(swapped), tmp_path / "b", cfg, echo=print)
    wa, wb = _weights(a.weights), _weights(b.weights)
    assert any("running_mean" in k for k in wa)  # BatchNorm's statistics are compared too
    assert _same(wa, wb), sorted(k for k in wa if not torch.equal(wa[k], wb[k]))[:8]
    start = next(r for r in read_log(tmp_path / "a") if r.get("event") == "start")
    reads = len(samples) - len(rows) if skip else len(samples)
    assert start["steps_per_epoch"] == steps_per_epoch(reads, 1, 4)


def test_skip_excluded_keeps_the_recorded_hashes(cache_dir: Path) -> None:
    """``data.skip_excluded`` came after runs were recorded: at False (their behaviour) it is left
    out of the config hash, so their hashes and reuse stand; True is another run."""

    base = load_config(None, tiny(cache_dir, "data.exclude_folds=[0]"))
    doc = base.model_dump(mode="json", exclude={"run"})
    del doc["data"]["skip_excluded"]
    # runs written before 2026-12-07 hashed the prompt cache's location too
    legacy_paths = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(base, legacy_paths=True) == legacy_paths
    del doc["text"]["cache_dir"]
    recorded = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(base) == recorded != legacy_paths
    skip = load_config(None, tiny(cache_dir, "data.exclude_folds=[0]", "data.skip_excluded=true"))
    assert config_hash(skip) != recorded
    # prior.fit came later still: "all" (the recorded runs' behaviour) keeps their hashes
    legacy = load_config(None, tiny(cache_dir, "data.exclude_folds=[0]", "prior.fit=all"))
    del doc["prior"]["fit"]
    old = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(legacy) == old != config_hash(base)


def test_a_recorded_config_without_prior_fit_is_read_as_all(
    cache_dir: Path, tmp_path: Path
) -> None:
    """A run recorded before prior.fit existed pooled every sample: its config.yaml (or weights
    metadata) without the field reads as prior.fit=all, so a benchmark never reuses it as a
    run of the new default, and a resume of it with the new default is refused; a user's
    config file without the field gets the default (training)."""
    import yaml

    from mvmodel.config import dump_config, with_recorded_defaults

    doc = yaml.safe_load(dump_config(load_config(None, tiny(cache_dir))))
    del doc["prior"]["fit"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_config(path, recorded=True).prior.fit == "all"
    assert load_config(path).prior.fit == "training"
    assert with_recorded_defaults(doc)["prior"]["fit"] == "all" and "fit" not in doc["prior"]
    as_all = load_config(None, tiny(cache_dir, "prior.fit=all"))
    assert config_hash(load_config(path, recorded=True)) == config_hash(as_all)


def test_forward_rows_keep_the_training_rows() -> None:
    from mvmodel.train.loop import forward_rows

    assert forward_rows([True, False, True, True]) == ([0, 2, 3], False)
    # fewer than two training rows: BatchNorm on its running statistics, never topped up
    # with other (held-out or padding) rows
    assert forward_rows([False, False, True]) == ([2], True)
    assert forward_rows([False, False]) == ([0], True) and forward_rows([True]) == ([0], True)


def _cli_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _train_cli(shards: Path, run: Path, overrides: list[str], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.mvmodel_app",
        "train",
        str(shards),
        "--out",
        str(run),
        *extra,
        *overrides,
    ]


def test_kill_9_and_resume_end_with_the_uninterrupted_parameters(
    shards: Path, cache_dir: Path, tmp_path: Path
) -> None:
    overrides = tiny(cache_dir, "optim.max_steps=8")
    full = subprocess.run(
        _train_cli(shards, tmp_path / "full", overrides),
        env=_cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-3000:]
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cli(shards, run, overrides),
        env=_cli_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        log = run / "log.jsonl"
        steps = [
            json.loads(line)["step"]
            for line in (log.read_text().splitlines() if log.is_file() else [])
            if '"kind": "step"' in line
        ]
        if steps and max(steps) >= 5:
            proc.send_signal(signal.SIGKILL)
            killed_at = max(steps)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "was not killed mid-run"
    assert not (run / "model.safetensors").exists()
    resumed = subprocess.run(
        _train_cli(shards, run, overrides, "--resume"),
        env=_cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout
    assert _same(
        _weights(tmp_path / "full" / "model.safetensors"), _weights(run / "model.safetensors")
    )


@pytest.mark.parametrize("epoch_0_logged", [False, True])
def test_a_resume_marks_only_the_epoch_it_lands_inside_as_partially_measured(
    shards: Path, cache_dir: Path, tmp_path: Path, epoch_0_logged: bool
) -> None:
    """The pseudo-label agreement of an epoch a resume lands inside covers only its steps after
    the checkpoint (the killed sitting's measurements die with it): that record says partial,
    and the epochs after it, measured whole, do not. (Before, the epoch after a mid-epoch resume
    was logged as whole and the run's last epoch as partial, whole or not.) Where the killed
    sitting had logged that epoch whole before it died, the reader keeps its whole record."""
    cfg = load_config(
        None,
        tiny(
            cache_dir,
            "optim.max_steps=null",
            "optim.epochs=2",
            "run.checkpoint_every=1",
            "run.keep=100",
        ),
    )
    run = tmp_path / "run"
    train(str(shards), run, cfg, echo=lambda _m: None)
    per_epoch = next(r for r in read_log(run) if r.get("event") == "start")["steps_per_epoch"]
    assert per_epoch >= 2
    uninterrupted = {r["epoch"]: r for r in read_log(run) if r["kind"] == "epoch"}
    assert sorted(uninterrupted) == [0, 1]
    assert not any(r.get("partial") for r in uninterrupted.values())
    # What a kill leaves when checkpoint 1 (inside epoch 0) is the last one: no weights, and a
    # log that ends inside epoch 0 (or, killed later, just after epoch 0's record).
    (run / "model.safetensors").unlink()
    root = run / "checkpoints"
    for ckpt in root.glob("ckpt-*"):
        if int(ckpt.name.split("-")[1]) > 1:
            shutil.rmtree(ckpt)
    (root / "LATEST").write_text("ckpt-00000001\n")
    last_step = per_epoch if epoch_0_logged else 1
    kept = []
    for line in (run / "log.jsonl").read_text().splitlines(keepends=True):
        rec = json.loads(line)
        if rec["kind"] == "step" and rec["step"] > last_step:
            break
        kept.append(line)
    (run / "log.jsonl").write_text("".join(kept))
    train(str(shards), run, cfg, resume=True, echo=lambda _m: None)
    raw = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r.get("partial") for r in raw if r["kind"] == "epoch" and r["epoch"] == 0] == (
        [False, True] if epoch_0_logged else [True]
    )
    after = {r["epoch"]: r for r in read_log(run) if r["kind"] == "epoch"}
    assert sorted(after) == [0, 1]
    if epoch_0_logged:
        assert after[0]["partial"] is False
        assert after[0]["measured"] == uninterrupted[0]["measured"]
    else:
        assert after[0]["partial"] is True
        assert after[0]["measured"] < uninterrupted[0]["measured"]
    assert after[1]["partial"] is False
    assert after[1]["measured"] == uninterrupted[1]["measured"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("multiview", ["stable", "sigmoid"])
def test_two_gloo_ranks_train_in_step(
    shards: Path, cache_dir: Path, tmp_path: Path, multiview: str
) -> None:
    """torchrun's environment with 2 processes (gloo): both ranks finish, every sample of an
    epoch is seen once across them, and the ranks end with identical parameters (the sigmoid
    loss's learnable bias included)."""
    run = tmp_path / "ddp"
    overrides = tiny(
        cache_dir, "optim.max_steps=3", "data.batch_size=2", f"loss.multiview={multiview}"
    )
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            _cli_env(),
            RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                _train_cli(shards, run, overrides),
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    done = [r for r in read_log(run) if r.get("event") == "done"][-1]
    assert done["world_size"] == 2
    assert len(set(done["param_digests"])) == 1  # one digest per rank, all equal
    steps = [r for r in read_log(run) if r["kind"] == "step"]
    assert steps[-1]["samples_seen"] == 3 * 2 * 2  # 3 steps x 2 ranks x 2 samples, no padding


def test_baseline_variants_run_through_the_same_loop(
    shards: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """The evaluation's baselines are configs of this loop: supervised (labels as targets, the
    one place they train), single-view SimCLR-style (one view + a second crop, no text), no
    prior; and held-out folds never take part."""
    variants = {
        "supervised": ["loss.supervised=true"],
        "simclr": [
            "data.views=[0]",
            "loss.second_crop=true",
            "loss.w_image_text=0",
            "loss.mask_false_negatives=false",
        ],
        "noprior": ["pseudo.prior=false", "pseudo.adaptive_alpha=false", "pseudo.alpha_start=1"],
    }
    weights = {}
    for name, extra in variants.items():
        s = train(
            str(shards),
            tmp_path / name,
            load_config(None, tiny(cache_dir, "optim.max_steps=3", *extra)),
            echo=print,
        )
        assert s.steps == 3 and s.samples_seen > 0
        weights[name] = _weights(s.weights)
    assert not _same(weights["supervised"], weights["noprior"])
    # Holding out every fold but one: only that fold's samples are ever seen.
    folds = {
        json.loads(x["json"])["fold"]
        for sh in list_shards(str(shards))
        for x in iter_samples(str(shards), sh)
    }
    keep = min(folds)
    out = train(
        str(shards),
        tmp_path / "heldout",
        load_config(
            None,
            tiny(cache_dir, "optim.max_steps=6", f"data.exclude_folds={sorted(folds - {keep})}"),
        ),
        echo=print,
    )
    counts = [
        json.loads(x["json"])["fold"]
        for sh in list_shards(str(shards))
        for x in iter_samples(str(shards), sh)
    ]
    assert 0 < out.samples_seen <= 6 * 4 and out.samples_seen <= 2 * counts.count(keep)
