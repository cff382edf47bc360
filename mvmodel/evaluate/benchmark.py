"""``mvmodel benchmark OUT --seed S``: the synthetic benchmark, from a seed to a report.

1. ``mvdata synth`` (a subprocess: the model half never imports the generator): identities with
   per-identity expression variation (the generator's own), head-pose jitter, scanner-like noise
   along normals, static scans at every intensity and 4D sequences.
2. ``mvdata build``: static shards (rgb + depth + normals) and 4D clip shards, with the same
   seed, so both carry the same subject-independent folds.
3. ``mvmodel train`` once per method, each a real run directory under ``OUT/runs/`` with its
   config written to ``OUT/configs/NAME.yaml`` first: MultiviewVLM, the supervised upper bound,
   single-view SimCLR-style, multiview contrastive without pseudo-labels, no geometric prior,
   and the variants (population reference instead of each subject's neutral scan, rgb only,
   rgb + depth without normals, 4D clips). Every run keeps the held-out folds out of training
   (``data.exclude_folds``): the report is on subjects no model saw.
4. ``mvmodel evaluate`` (in process): ``OUT/report/`` (static, the two highest intensities,
   every method, the geometry and the random-init encoder), ``OUT/report/all-intensities/`` and
   ``OUT/report/clips/`` (sequence level).

Every setting is a field of :class:`BenchmarkSettings` (written to ``OUT/benchmark.json`` and
into every report); the seed drives the data, the folds and every training run alike: nothing is
tuned to one seed. Run again, the command skips what is complete (synth output, finished runs),
resumes a run that has a checkpoint and re-evaluates; an ``OUT`` made with other settings is
refused, except for the method set: a later call may name other ``--baselines`` / ``--variants``
(the runs there are reused, new ones trained, the report covers the methods named now; the 4D
clip variant only where the data was generated with sequences).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mvdata.core import differing_settings
from mvdata.io import atomic_write, atomic_write_json
from mvmodel.evaluate.protocols import make_protocol
from mvmodel.train.logs import logged_training_seconds, run_progress

__all__ = [
    "BASELINES",
    "VARIANTS",
    "BenchmarkSettings",
    "quick_settings",
    "run_benchmark",
    "training_config",
]

Echo = Callable[[str], None]

#: Trained baselines: configs of the one training loop (README, "Training MultiviewVLM").
BASELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "supervised": ("supervised (upper bound)", ("loss.supervised=true",)),
    "simclr": (
        "single-view SimCLR-style",
        (
            "data.views=[0]",
            "loss.second_crop=true",
            "loss.w_image_text=0",
            "loss.mask_false_negatives=false",
        ),
    ),
    "multiview": (
        "multiview contrastive, no pseudo-labels",
        ("loss.w_image_text=0", "loss.mask_false_negatives=false"),
    ),
    "no-prior": (
        "no geometric prior",
        ("pseudo.prior=false", "pseudo.adaptive_alpha=false", "pseudo.alpha_start=1"),
    ),
}
#: Variants of MultiviewVLM reported without targets ("clips" trains on the 4D clip shards).
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "population-reference": (
        "MultiviewVLM, population reference (no neutral scan)",
        ("prior.reference=population",),
    ),
    "rgb": ("MultiviewVLM, rgb only", ("model.channels=rgb",)),
    # the default channels are rgb + depth + normals (chosen on a validation fold, 2026-12-05):
    # this variant is the former default, without normals
    "rgb-depth": ("MultiviewVLM, rgb + depth (no normals)", ("model.channels=rgb+depth",)),
    "clips": ("MultiviewVLM on 4D clips", ()),
}

#: The quick run's model: seconds per run on 2 CPU cores.
_QUICK_OVERRIDES: tuple[str, ...] = (
    "model.embed_dim=32",
    "model.proj_hidden=64",
    "model.fusion_depth=1",
    "data.num_workers=1",
    "text.prompts.max_per_class=4",
    "optim.warmup_steps=2",
    "optim.max_steps=4",
    "run.checkpoint_every=1000",
    "run.log_every=1",
)


class BenchmarkSettings(BaseModel):
    """Everything that decides the benchmark's numbers (frozen; written into the report)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(0, ge=0)
    quick: bool = False
    # ---- data (mvdata synth)
    identities: int = Field(100, ge=2)
    #: ``sfm`` (the default: its files must be found, else the benchmark stops before anything
    #: is generated), ``procedural`` or ``auto``. Never a silent fallback: the built-in procedural
    #: face moves its expressions mostly within the surface, so they barely show in the renders
    #: (seed 0's first benchmark fell back to it unnoticed and its image models stayed at chance
    #: while seed 1 on the SFM reached 79 %); numbers of the two face models are not comparable.
    face_model: Literal["sfm", "procedural", "auto"] = "sfm"
    pose_jitter_deg: float = Field(3.0, ge=0)
    noise_mm: float = Field(0.2, ge=0)
    sequence_frames: int = Field(50, ge=10)
    texture_size: int = Field(256, ge=16)
    # ---- shards (mvdata build)
    #: Rendered and model image size (None: the base config's, else 112). The shards are
    #: rendered at the main run's resolved ``model.image_size`` (``--set`` included).
    image_size: int | None = Field(None, ge=16)
    views: str = "0,0;-20,0;20,0"
    folds: int = Field(10, ge=2)
    clip_frames: int = Field(8, ge=1)
    clip_sampling: str = "motion"
    build_workers: int = Field(0, ge=0)
    # ---- training (mvmodel train)
    holdout_folds: tuple[int, ...] = (0, 1, 2)
    #: None: the base config's value, else the built-in CPU config's (20 epochs, batch 16,
    #: resnet18); a value here replaces the base config's.
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    backbone: str | None = None
    #: A YAML training config every run starts from (None: the built-in CPU config).
    base_config: str | None = None
    #: ``section.key=value`` overrides applied to every run after the settings above.
    overrides: tuple[str, ...] = ()
    baselines: tuple[str, ...] = tuple(BASELINES)
    variants: tuple[str, ...] = tuple(VARIANTS)
    #: Processes per training run (``torchrun --nproc_per_node``; 1 = a plain process).
    nproc: int = Field(1, ge=1)
    device: str = "auto"
    # ---- evaluation
    eval_batch_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self) -> BenchmarkSettings:
        unknown = [b for b in self.baselines if b not in BASELINES]
        unknown += [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(
                f"unknown baselines/variants {unknown}: choose from "
                f"{', '.join(BASELINES)} / {', '.join(VARIANTS)}"
            )
        bad = [f for f in self.holdout_folds if not 0 <= f < self.folds]
        if bad or not self.holdout_folds or len(set(self.holdout_folds)) >= self.folds:
            raise ValueError(
                f"holdout_folds {list(self.holdout_folds)}: need one or more of 0..{self.folds - 1}, "
                "and at least one fold left to train on"
            )
        return self


def quick_settings(seed: int = 0, **overrides: Any) -> BenchmarkSettings:
    """A tiny benchmark (6 identities, 32 px, 4 training steps a run) for smoke tests."""
    base: dict[str, Any] = {
        "seed": seed,
        "quick": True,
        "identities": 6,
        "sequence_frames": 10,
        "texture_size": 64,
        "image_size": 32,
        "folds": 3,
        "clip_frames": 2,
        "holdout_folds": (0,),
        "epochs": 1,
        "batch_size": 8,
        "eval_batch_size": 16,
        "build_workers": 1,
        # a smoke test runs where the SFM files may be absent (CI): the SFM when found
        "face_model": "auto",
    }
    base.update(overrides)
    return BenchmarkSettings.model_validate(base)


def _builtin_config(s: BenchmarkSettings) -> dict[str, Any]:
    """The built-in training config (configs/cpu.yaml's choices) before the knobs."""
    return {
        "seed": s.seed,
        "data": {"batch_size": 16, "num_workers": 2},
        "model": {
            "backbone": "resnet18",
            "image_size": 112,
            "channels": "rgb+depth+normal",
            "embed_dim": 256,
        },
        "text": {"encoder": "minilm", "prompts": {"max_per_class": 128}},
        "optim": {"lr": 1.0e-3, "epochs": 20, "warmup_steps": 50},
        "run": {"checkpoint_every": 200, "log_every": 10, "progress": False},
    }


def training_config(s: BenchmarkSettings, out: Path, extra: Sequence[str]) -> str:
    """The YAML of one run's full config: the base (file or built-in), the benchmark's knobs,
    the quick model when quick, ``s.overrides``, then the method's own ``extra`` overrides."""
    import yaml

    from mvmodel.config import dump_config, load_config

    knobs = [f"seed={s.seed}"]
    for key, value in (
        ("model.image_size", s.image_size),
        ("model.backbone", s.backbone),
        ("data.batch_size", s.batch_size),
        ("optim.epochs", s.epochs),
    ):
        if value is not None:  # None: the base config's value stands
            knobs.append(f"{key}={value}")
    if s.device != "auto":
        knobs.append(f"data.device={s.device}")
    knobs += [
        f"data.exclude_folds=[{', '.join(map(str, s.holdout_folds))}]",
        f"text.cache_dir={out / 'cache' / 'prompts'}",
        "run.progress=false",
    ]
    quick = list(_QUICK_OVERRIDES) if s.quick else []
    overrides = [*knobs, *quick, *s.overrides, *extra]
    if s.base_config is not None:
        cfg = load_config(s.base_config, overrides)
    else:
        tmp = out / "configs" / ".base.yaml"
        atomic_write(tmp, yaml.safe_dump(_builtin_config(s), sort_keys=False).encode())
        cfg = load_config(tmp, overrides)
    return dump_config(cfg)


# --------------------------------------------------------------------------- subprocesses
#: Seconds between two progress lines of a long stage (a training run is 1-2 h on 2 cores).
PROGRESS_EVERY_S = 300.0


def _run(
    cmd: Sequence[str],
    log: Path,
    echo: Echo,
    what: str,
    *,
    progress: Callable[[], str | None] | None = None,
    every: float = PROGRESS_EVERY_S,
) -> float:
    """Run ``cmd`` with its output in ``log``; raise ``RuntimeError`` naming the log on failure.
    Every ``every`` seconds while it runs, ``progress()`` (when given) is echoed after ``what``,
    so an hour-long stage is not silent. Any exception while waiting (Ctrl-C included) kills
    the child first: no training is left running behind a stopped benchmark. Returns the
    seconds it took."""
    log.parent.mkdir(parents=True, exist_ok=True)
    echo(f"{what}: {' '.join(cmd)}  (log: {log})")
    t0 = time.perf_counter()
    with log.open("ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = _wait_saying_progress(proc, echo, what, progress, every)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {rc}); its log is {log}:\n" + "\n".join(tail))
    return seconds


def _wait_saying_progress(
    proc: subprocess.Popen[bytes],
    echo: Echo,
    what: str,
    progress: Callable[[], str | None] | None,
    every: float,
) -> int:
    """Wait for ``proc``; each ``every`` seconds echo ``what: progress()`` (unless ``None``)."""
    if progress is None:
        return proc.wait()
    while True:
        try:
            return proc.wait(timeout=every)
        except subprocess.TimeoutExpired:
            line = progress()
            if line:
                echo(f"{what}: {line}")


def _mvdata(*args: str) -> list[str]:
    """The ``mvdata`` command of this environment (``python -m cli.mvdata_app``: the same app
    as the console script, found without relying on PATH)."""
    return [sys.executable, "-m", "cli.mvdata_app", *args]


def _mvmodel_train(s: BenchmarkSettings, *args: str) -> list[str]:
    if s.nproc > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(s.nproc),
            "-m",
            "cli.mvmodel_app",
            "train",
            *args,
        ]
    return [sys.executable, "-m", "cli.mvmodel_app", "train", *args]


#: Settings that name which methods run, not how: an OUT may gain (or leave out) baselines and
#: variants on a later invocation. Each run is still skipped only when its own config hash
#: matches, so the runs already there are reused exactly when they are what this call asks for.
_METHOD_SET = ("baselines", "variants")


def _check_out(out: Path, s: BenchmarkSettings) -> dict[str, Any]:
    """Refuse an OUT made by other settings (its runs and data would not be this benchmark's);
    the method set (``--baselines``, ``--variants``) may differ. Returns what earlier
    invocations recorded (``benchmark.json``; {} for a new OUT)."""
    path = out / "benchmark.json"
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            old = {k: v for k, v in record["settings"].items() if k not in _METHOD_SET}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a benchmark record ({exc}); choose another OUT") from exc
        new = s.model_dump(mode="json", exclude=set(_METHOD_SET))
        if old != new:
            diff = differing_settings(old, new)
            raise ValueError(
                f"{out} holds a benchmark made with other settings (differing: {diff}): "
                "choose another OUT, or repeat the same settings to resume"
            )
        return dict(record)
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"{out} exists, is not empty and holds no benchmark.json: choose another OUT"
        )
    return {}


def _train(
    s: BenchmarkSettings, out: Path, name: str, shards: Path, extra: Sequence[str], echo: Echo
) -> dict[str, Any]:
    """One training run (config written first); skipped when finished with this config."""
    from mvmodel.config import config_hash, load_config

    cfg_path = out / "configs" / f"{name}.yaml"
    atomic_write(cfg_path, training_config(s, out, extra).encode())
    run_dir = out / "runs" / name
    want = config_hash(load_config(cfg_path))
    finished = (run_dir / "model.safetensors").is_file() and (run_dir / "config.yaml").is_file()
    if finished and config_hash(load_config(run_dir / "config.yaml", recorded=True)) == want:
        echo(f"train {name}: finished earlier ({run_dir})")
        return {
            "run": str(run_dir),
            "config": str(cfg_path),
            "seconds": None,
            "skipped": True,
            **_logged(run_dir),
        }
    args = [str(shards), "--out", str(run_dir), "--config", str(cfg_path)]
    if (run_dir / "config.yaml").is_file():
        args.append("--resume")
    seconds = _run(
        _mvmodel_train(s, *args),
        out / "logs" / f"train-{name}.log",
        echo,
        f"train {name}",
        progress=lambda: run_progress(run_dir),
    )
    return {
        "run": str(run_dir),
        "config": str(cfg_path),
        "seconds": round(seconds, 1),
        "skipped": False,
        **_logged(run_dir),
    }


def _logged(run_dir: Path) -> dict[str, Any]:
    """The training time the run's own log accounts for, over all its sittings: unlike
    ``seconds`` (this invocation's wall time, plus what earlier invocations recorded), it keeps
    the time of a sitting that was killed before it could record anything."""
    got = logged_training_seconds(run_dir)
    return {"logged_seconds": got[0], "sittings": got[1]} if got else {}


def _resolved(s: BenchmarkSettings, out: Path) -> dict[str, Any]:
    """The main run's settings after the base config, the knobs and ``--set``: the shards are
    rendered at its image size, and the report names what was trained."""
    import yaml

    cfg = yaml.safe_load(training_config(s, out, ()))
    return {
        "image_size": cfg["model"]["image_size"],
        "backbone": cfg["model"]["backbone"],
        "channels": cfg["model"]["channels"],
        "embed_dim": cfg["model"]["embed_dim"],
        "epochs": cfg["optim"]["epochs"],
        "max_steps": cfg["optim"]["max_steps"],
        "batch_size": cfg["data"]["batch_size"],
        "lr": cfg["optim"]["lr"],
    }


def _warn_emulated_bf16(s: BenchmarkSettings, out: Path, echo: Echo) -> None:
    """Say on the benchmark's own output, before any training, when the runs would emulate bf16
    autocast on this CPU (``mvmodel train`` says it too, but only into a log file)."""
    import torch
    import yaml

    from mvmodel.config import TrainConfig
    from mvmodel.dist import resolve_device_name
    from mvmodel.train.loop import emulated_bf16_note

    cfg = TrainConfig.model_validate(yaml.safe_load(training_config(s, out, ())))
    device = torch.device(resolve_device_name(s.device))
    note = emulated_bf16_note(cfg.optim.amp, device)
    if note:
        echo(f"warning: {note}")


def _face_model_used(synth: Path, s: BenchmarkSettings) -> str:
    """The face model ``synth.json`` says made the data; a ``sfm`` benchmark whose data came
    from another model (an OUT generated before the SFM files were found) is refused."""
    path = synth / "synth.json"
    try:
        used = str(json.loads(path.read_text())["face_model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read the face model that made the data ({exc})") from exc
    if s.face_model == "sfm" and not used.startswith("sfm"):
        raise ValueError(
            f"{path}: the data was made with the {used!r} face model, not the SFM: "
            "choose another OUT (or --face-model procedural to keep it)"
        )
    return used


def _check_has_sequences(synth: Path) -> None:
    """The 4D clip variant needs sequences; an OUT whose data was generated without them (a
    benchmark first run without ``clips``) cannot gain them without changing its static data's
    provenance, so it is refused before any work."""
    path = synth / "synth.json"
    try:
        has = bool(json.loads(path.read_text())["sequences"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot read whether it holds 4D sequences ({exc})") from exc
    if not has:
        raise ValueError(
            f"{path}: this benchmark's data was generated without 4D sequences (its first run "
            "left out the clips variant): run the clips variant into another OUT"
        )


def _earlier_seconds(old: dict[str, Any]) -> dict[str, float]:
    """Seconds that earlier invocations spent on synth, the builds and each training run (their
    record, ``old``), so that a resumed benchmark reports what the whole took (evaluations are
    redone each time and count once)."""
    got: dict[str, float] = {}
    for stage in ("synth", "build static", "build clips"):
        value = (old.get("stages") or {}).get(stage)
        if isinstance(value, int | float):
            got[stage] = float(value)
    for name, rec in _earlier_runs(old).items():
        if isinstance(rec.get("seconds"), int | float):
            got[f"train {name}"] = float(rec["seconds"])
    return got


def _earlier_runs(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run an earlier invocation recorded: those of its report (``runs``) and those it
    carried from before without reporting them (``other_runs``, when the method set shrank)."""
    got: dict[str, dict[str, Any]] = {}
    for key in ("other_runs", "runs"):
        section = record.get(key)
        if isinstance(section, dict):
            got.update({k: v for k, v in section.items() if isinstance(v, dict)})
    return got


def run_benchmark(
    out: str | Path,
    settings: BenchmarkSettings,
    *,
    command: str | None = None,
    echo: Echo = print,
) -> Path:
    """Run the whole benchmark into ``out`` (see the module doc); returns ``OUT/report/report.md``.

    ``command``: the command line to record (default: ``mvmodel benchmark OUT --seed S``).
    """
    from mvmodel.evaluate.pipeline import evaluate
    from mvmodel.evaluate.report import machine_info

    t0 = time.perf_counter()
    out = Path(out).resolve()
    s = settings
    old_record = _check_out(out, s)
    synth = out / "synth"
    want_clips = "clips" in s.variants
    if want_clips and (synth / "synth.json").is_file():
        _check_has_sequences(synth)  # before the record is rewritten: nothing of it is lost
    out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_seconds(old_record)
    earlier_runs = _earlier_runs(old_record)
    if command is None:
        command = f"mvmodel benchmark {out} --seed {s.seed}" + (" --quick" if s.quick else "")
    record: dict[str, Any] = {
        "settings": s.model_dump(mode="json"),
        "command": command,
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": {},
    }
    atomic_write_json(out / "benchmark.json", record)
    stages: dict[str, Any] = record["stages"]
    _warn_emulated_bf16(s, out, echo)

    # 1. data
    if not (synth / "synth.json").is_file():
        args = [
            "synth",
            str(synth),
            "--identities",
            str(s.identities),
            "--seed",
            str(s.seed),
            "--pose-jitter",
            str(s.pose_jitter_deg),
            "--noise",
            str(s.noise_mm),
            "--texture-size",
            str(s.texture_size),
            "--face-model",
            s.face_model,
        ]
        if want_clips:
            args += ["--sequences", "--frames", str(s.sequence_frames)]
        stages["synth"] = round(_run(_mvdata(*args), out / "logs" / "synth.log", echo, "synth"), 1)
    else:
        stages["synth"] = earlier.get("synth")
    face_model = _face_model_used(synth, s)
    # every run's shards carry normals: the default channels use them, variants take fewer
    modalities = "rgb,depth,normal"
    resolved = {**_resolved(s, out), "face_model": face_model}
    record["resolved"] = resolved
    common = [
        "--views",
        s.views,
        "--image-size",
        str(resolved["image_size"]),
        "--folds",
        str(s.folds),
        "--seed",
        str(s.seed),
        "--workers",
        str(s.build_workers),
    ]
    static = out / "shards" / "static"
    stages["build static"] = round(
        _run(
            _mvdata(
                "build",
                str(synth),
                str(static),
                "--kind",
                "static",
                "--modalities",
                modalities,
                *common,
            ),
            out / "logs" / "build-static.log",
            echo,
            "build static",
        ),
        1,
    )
    clips = out / "shards" / "clips"
    if want_clips:
        stages["build clips"] = round(
            _run(
                _mvdata(
                    "build",
                    str(synth),
                    str(clips),
                    "--kind",
                    "sequence",
                    "--modalities",
                    modalities,
                    "--clip-frames",
                    str(s.clip_frames),
                    "--clip-sampling",
                    s.clip_sampling,
                    *common,
                ),
                out / "logs" / "build-clips.log",
                echo,
                "build clips",
            ),
            1,
        )
    for stage in ("build static", "build clips"):
        if stage in stages and earlier.get(stage) is not None:
            stages[stage] = round(stages[stage] + earlier[stage], 1)
    atomic_write_json(out / "benchmark.json", record)

    # 2. training runs
    runs: dict[str, Any] = {}
    record["runs"] = runs
    plan: list[tuple[str, Path, tuple[str, ...]]] = [("main", static, ())]
    plan += [(b, static, BASELINES[b][1]) for b in s.baselines]
    plan += [(v, clips if v == "clips" else static, VARIANTS[v][1]) for v in s.variants]
    # runs of an earlier, larger method set stay on record (and on disk), outside this report
    planned = {name for name, _, _ in plan}
    record["other_runs"] = {k: v for k, v in earlier_runs.items() if k not in planned}
    for name, data, extra in plan:
        runs[name] = _train(s, out, name, data, extra, echo)
        # time spent on this run by earlier invocations (a finished or resumed run) counts too
        before = earlier.get(f"train {name}")
        if before is not None:
            runs[name]["seconds"] = round(before + (runs[name]["seconds"] or 0.0), 1)
        atomic_write_json(out / "benchmark.json", record)
    atomic_write_json(out / "benchmark.json", record)

    # 3. reports (the sub-reports first, so that the main one can link them and time them)
    report = out / "report"
    static_runs = {BASELINES[b][0]: runs[b]["run"] for b in s.baselines}
    static_runs.update({VARIANTS[v][0]: runs[v]["run"] for v in s.variants if v != "clips"})
    variant_names = [VARIANTS[v][0] for v in s.variants if v != "clips"]
    settings_doc = {**s.model_dump(mode="json"), "resolved": resolved}
    links: dict[str, str] = {}
    cache = out / "cache" / "evaluate"
    # what every report of this benchmark shares (the model, data and protocol differ)
    report_of = functools.partial(
        evaluate,
        mode="holdout",
        batch_size=s.eval_batch_size,
        device=s.device,
        seed=s.seed,
        command=command,
        cache_dir=cache,
        echo=echo,
    )
    t = time.perf_counter()
    report_of(
        runs["main"]["run"],
        static,
        report / "all-intensities",
        protocol=make_protocol("bu3dfe", intensities=None, num_subjects=None, num_folds=None),
        benchmark=settings_doc,
        baselines=static_runs,
        variants=variant_names,
    )
    stages["evaluate all intensities"] = round(time.perf_counter() - t, 1)
    links["all four intensities"] = "all-intensities/report.md"
    if want_clips:
        t = time.perf_counter()
        report_of(
            runs["clips"]["run"],
            clips,
            report / "clips",
            protocol=make_protocol("bu4dfe"),
            benchmark=settings_doc,
        )
        stages["evaluate clips"] = round(time.perf_counter() - t, 1)
        links["4D clips (sequence level)"] = "clips/report.md"
    t = time.perf_counter()
    bench_doc = {
        **settings_doc,
        "stage_seconds": stages,
        "train_seconds": {k: v["seconds"] for k, v in runs.items()},
        "train_logged": {
            k: {"seconds": v["logged_seconds"], "sittings": v["sittings"]}
            for k, v in runs.items()
            if "logged_seconds" in v
        },
        "runs": {k: v["run"] for k, v in runs.items()},
    }
    result = report_of(
        runs["main"]["run"],
        static,
        report,
        protocol=make_protocol("bu3dfe", num_subjects=None, num_folds=None),
        benchmark=bench_doc,
        links=links,
        baselines=static_runs,
        variants=variant_names,
    )
    stages["evaluate main"] = round(time.perf_counter() - t, 1)
    record["wall_seconds"] = round(time.perf_counter() - t0, 1)
    record["report"] = str(result.markdown)
    atomic_write_json(out / "benchmark.json", record)
    return result.markdown
