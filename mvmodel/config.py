"""The training run's settings: one frozen pydantic model, validated once.

``mvmodel train SHARDS --out RUN --config FILE.yaml section.key=value ...`` builds it with
:func:`load_config`: the YAML file (optional) is read, each ``key=value`` override replaces one
leaf (values are parsed as YAML scalars: ``1e-3``, ``true``, ``null``, ``[a, b]``), and the whole
is validated once; an unknown key anywhere is an error naming its dotted path. The effective
config is saved in RUN as YAML with its hash (:func:`config_hash`), and ``--resume`` refuses a
checkpoint written under another hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mvmodel.pseudolabels import PseudoLabelConfig
from mvmodel.text.prompts import PromptConfig
from mvmodel.vision.model import VisionConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "PriorConfig",
    "PseudoConfig",
    "RunConfig",
    "TextConfig",
    "TrainConfig",
    "config_hash",
    "dump_config",
    "load_config",
]


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key or the file."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Section):
    """Which shards and how they are read (per rank)."""

    #: Train on the shards of this split only (``None``: every shard of the directory).
    split: str | None = None
    #: Samples per rank per step (the global batch is ``batch_size * world_size``).
    batch_size: int = Field(default=32, ge=1)
    #: DALI threads, or DataLoader workers for the webdataset backend.
    num_workers: int = Field(default=2, ge=0)
    backend: Literal["auto", "dali", "wds"] = "auto"
    #: ``auto`` (CUDA when available), ``cpu``, ``cuda``.
    device: str = "auto"
    #: Per-view scale/shift and colour augmentation of the loaders.
    max_zoom: float = Field(default=0.1, ge=0.0, lt=1.0)
    jitter: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: Train on these view positions only (``None``: every view of the shards).
    views: tuple[int, ...] | None = None
    #: Samples of these subject-independent folds (``fold`` in each sample's json) never take
    #: part in training (evaluation holds them out): masked like padding rows, or never read
    #: (``skip_excluded``).
    exclude_folds: tuple[int, ...] = ()
    #: True: the loader never reads the ``exclude_folds`` samples (the build's manifest says
    #: which), so every batch is full of training subjects and an epoch is theirs only. False
    #: (every run recorded before 2026-12-06): they are read and masked, and an epoch counts them.
    #: Left out of the config hash while False, so those runs keep their hashes.
    skip_excluded: bool = False


class TextConfig(_Section):
    """The frozen text encoder, the prompt bank and the trainable projection."""

    #: ``minilm`` (offline, 384-d) or ``open_clip:<model>:<pretrained>``.
    encoder: str = "minilm"
    prompts: PromptConfig = PromptConfig()
    projection: Literal["linear", "mlp"] = "linear"
    #: Subtract the prompt bank's mean embedding before the projection (see
    #: ``TextProjection.set_center``): the shared words otherwise dominate the prototypes.
    center_prompts: bool = True
    #: A bias in the (last) projection layer. It is shared by every prompt, so once it outgrows
    #: the projected class differences all prototypes point the same way: seen on a benchmark
    #: whose data came from the procedural face (prototype cosines 0.84-0.99, bias norm 1.3
    #: against a typical projected prompt of 0.8) while its image side could not learn the
    #: barely visible expressions; without the bias the prototypes stayed apart and the image
    #: side still did not learn. A symptom there, not a cause: kept as an option, default on.
    projection_bias: bool = True
    #: Where prompt embeddings are cached (``None``: ``RUN/cache``).
    cache_dir: str | None = None


class PriorConfig(_Section):
    """The geometric prior's table (:func:`mvmodel.prior.table.prior_table`)."""

    reference: Literal["auto", "subject", "sequence-first-frame", "population"] = "auto"
    subject_method: Literal["rays", "median"] = "rays"
    clip: Literal["peak", "mean"] = "peak"
    temperature: float = Field(default=0.1, gt=0.0)
    #: Whose landmarks the prior's pooled statistics (robust scales, population mean) come
    #: from: ``training``, the samples that train (in ``data.split``, not in
    #: ``data.exclude_folds``), applied to every sample; ``all``, every sample of the shards,
    #: held-out subjects included (unlabelled, but their geometry then shapes the training
    #: pseudo-labels: the behaviour of every run recorded before 2026-12-06, kept to reproduce
    #: them; hashed only when not ``all``, so those runs keep their hashes).
    fit: Literal["training", "all"] = "training"


class PseudoConfig(_Section):
    """:class:`mvmodel.pseudolabels.PseudoLabelConfig` as a config section."""

    tau_p: float = Field(default=0.05, gt=0.0)
    sinkhorn_eps: float = Field(default=1.0, gt=0.0)
    sinkhorn_iters: int = Field(default=3, ge=1)
    queue_size: int = Field(default=256, ge=0)
    gamma: float = Field(default=0.5, ge=0.0, le=1.0)
    alpha_start: float = Field(default=0.0, ge=0.0)
    alpha_end: float = Field(default=1.0, ge=0.0)
    beta_start: float = Field(default=1.0, ge=0.0)
    beta_end: float = Field(default=0.5, ge=0.0)
    ramp_start_epoch: int = Field(default=0, ge=0)
    ramp_epochs: int = Field(default=10, ge=0)
    #: Scale α by the image side's label-free agreement with the prior (see pseudolabels).
    adaptive_alpha: bool = True
    #: α is scaled by trust ** trust_power: above 1, an image side that only half agrees with
    #: the prior earns much less weight (see pseudolabels for the measurements behind it: p = 4
    #: keeps the pseudo-labels right but the image side learned less, so the default stays 1).
    trust_power: float = Field(default=1.0, ge=1.0)
    #: Use the geometric prior; ``false`` makes p_geo uniform (the "no prior" baseline: then set
    #: adaptive_alpha=false and alpha_start>0, or the pseudo-labels stay uniform).
    prior: bool = True

    def labeler_config(self) -> PseudoLabelConfig:
        """The pseudo-labeller's own (dataclass) config."""
        return PseudoLabelConfig(**self.model_dump(exclude={"prior"}))


class LossConfig(_Section):
    """Which losses, their weights and the temperature."""

    #: ``stable``: the multiview contrastive loss with stable pair sampling (log-sum-exp);
    #: ``sigmoid``: the pairwise sigmoid variant.
    multiview: Literal["stable", "sigmoid"] = "stable"
    #: M of the stable loss: the negative term is M x the mean over negatives.
    nominal_negatives: float = Field(default=128.0, gt=0.0)
    #: Samples sharing a confident pseudo-label are not pushed apart.
    mask_false_negatives: bool = True
    w_multiview: float = Field(default=1.0, ge=0.0)
    w_image_text: float = Field(default=1.0, ge=0.0)
    #: Weight of the per-view image->text term inside the image-text loss.
    view_weight: float = Field(default=1.0, ge=0.0)
    #: Weight of the text->image term inside the image-text loss.
    t2i_weight: float = Field(default=1.0, ge=0.0)
    #: A second augmented crop of every view as an extra positive (the single-view SimCLR-style
    #: baseline: ``data.views=[0]``, ``loss.w_image_text=0``, ``loss.second_crop=true``).
    second_crop: bool = False
    #: BASELINE ONLY, never the default: the source labels replace the pseudo-labels (the
    #: supervised upper bound; the one place labels train anything). Samples without a label
    #: in the prompt classes take no part in the image-text loss.
    supervised: bool = False
    tau_init: float = Field(default=0.07, gt=0.0)
    tau_min: float = Field(default=0.01, gt=0.0)
    tau_max: float = Field(default=1.0, gt=0.0)

    @model_validator(mode="after")
    def _tau(self) -> LossConfig:
        if not self.tau_min <= self.tau_init <= self.tau_max:
            raise ValueError("need tau_min <= tau_init <= tau_max")
        return self


class OptimConfig(_Section):
    """AdamW + cosine schedule with linear warm-up, accumulation, precision, compile."""

    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.05, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    #: Optimizer steps of linear warm-up.
    warmup_steps: int = Field(default=50, ge=0)
    #: Floor of the cosine schedule, as a fraction of ``lr``.
    min_lr_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    epochs: int = Field(default=10, ge=1)
    #: Stop after this many loader steps (``None``: after ``epochs``).
    max_steps: int | None = Field(default=None, ge=1)
    #: Loader steps per optimizer step.
    grad_accum: int = Field(default=1, ge=1)
    #: Clip the global gradient norm (``None``: no clipping).
    clip_grad: float | None = Field(default=1.0, gt=0.0)
    #: ``auto``: bf16 autocast on CUDA, float32 on the CPU (every recorded CPU run). ``bf16`` on
    #: a CPU with native bf16 (avx512_bf16 / AMX) makes a ResNet-18 step about 1.8x faster
    #: (bench/results/train_cpu_bf16.json); without it autocast is emulated and slower.
    amp: Literal["auto", "bf16", "off"] = "auto"
    #: ``torch.compile`` the vision model.
    compile: bool = False

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_off(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted ``off`` (``--set optim.amp=off``, ``amp: off``) as false.
        return "off" if value is False else value


class RunConfig(_Section):
    """How the run reports and saves itself: not part of the config hash (changing these
    never changes the trained parameters)."""

    #: Save a checkpoint every this many loader steps (and at the end).
    checkpoint_every: int = Field(default=200, ge=1)
    #: Checkpoints kept (the newest ones).
    keep: int = Field(default=2, ge=1)
    #: Write a log line every this many loader steps.
    log_every: int = Field(default=10, ge=1)
    tensorboard: bool = False
    #: A rich progress bar on rank 0 (when stdout is a terminal).
    progress: bool = True


class TrainConfig(_Section):
    """Every setting of ``mvmodel train``."""

    seed: int = 0
    data: DataConfig = DataConfig()
    model: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    prior: PriorConfig = PriorConfig()
    pseudo: PseudoConfig = PseudoConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _classes(self) -> TrainConfig:
        if len(self.text.prompts.classes) < 2:
            raise ValueError("text.prompts.classes needs at least two classes")
        return self


#: Sections that never change the trained parameters (left out of the hash).
_UNHASHED = ("run",)

#: Settings that say where a file is kept, not what is trained (left out of the hash), so the
#: same run trained into another directory, or a benchmark OUT moved, hashes the same: two seed-7
#: benchmark runs in two OUTs trained to identical per-epoch metrics yet hashed apart by this
#: path alone (2026-12-07). Runs written before then hashed it; ``legacy_paths=True`` gives
#: their hash, which ``--resume`` still accepts from their checkpoints.
_UNHASHED_PATHS: tuple[tuple[str, str], ...] = (("text", "cache_dir"),)


#: Settings added after runs were recorded, and the value those runs had (the behaviour before
#: the setting existed): left out of the hash at that value, so their hashes and reuse stand, and
#: filled in where a recorded config (a run's ``config.yaml``, a weights file's metadata) lacks
#: the setting, so an old run is never taken for a run of a new default.
_HASHED_UNLESS: dict[tuple[str, str], object] = {
    ("data", "skip_excluded"): False,
    ("prior", "fit"): "all",
}


def config_hash(cfg: TrainConfig, *, legacy_paths: bool = False) -> str:
    """sha256 (16 hex digits) of every setting that changes the trained parameters.

    ``legacy_paths``: hash the file locations too (``_UNHASHED_PATHS``), as runs written before
    2026-12-07 did; only for accepting their checkpoints on resume.
    """
    doc = cfg.model_dump(mode="json", exclude=set(_UNHASHED))
    if not legacy_paths:
        for section, name in _UNHASHED_PATHS:
            del doc[section][name]
    for (section, name), legacy in _HASHED_UNLESS.items():
        if doc[section][name] == legacy:
            del doc[section][name]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML (every field, defaults included), readable back by :func:`load_config`."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"override {dotted!r}: empty key part")
    node = doc
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"override {dotted!r}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["optim.lr=1e-3", "--data.batch_size=8"]`` -> ``[("optim.lr", 0.001), ...]``."""
    out: list[tuple[str, Any]] = []
    for item in items:
        text = item[2:] if item.startswith("--") else item
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: write section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        out.append((key.replace("-", "_"), value))
    return out


def _validation_message(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def with_recorded_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a recorded config) with :data:`_HASHED_UNLESS`'s values where it lacks them."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    for (section, name), value in _HASHED_UNLESS.items():
        part = out.setdefault(section, {})
        if isinstance(part, dict):
            part.setdefault(name, value)
    return out


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, recorded: bool = False
) -> TrainConfig:
    """Read ``path`` (YAML; optional), apply ``overrides`` and validate once. ``recorded``: the
    file is a run's own record (see :func:`with_recorded_defaults`), not a user's settings.

    Raises :class:`ConfigError` naming the file, the override or the dotted key at fault.
    """
    doc: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: not a readable YAML file ({exc})") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        doc = with_recorded_defaults(loaded) if recorded else loaded
    for key, value in parse_overrides(overrides or []):
        _set_dotted(doc, key, value)
        source = f"{source} + overrides" if "overrides" not in source else source
    try:
        return TrainConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, source)) from None
