"""``mvmodel train``: MultiviewVLM on mvdata shards, one process or torchrun's many.

One step (method.md, "One training step"): loader batch -> the shared backbone over all
``B·T·V`` views -> per-view embeddings ``z`` and the fused embedding ``f`` -> the prompt
prototypes ``c`` through the trainable text projection -> pseudo-labels of the GLOBAL batch (the
image scores ``s`` and the geometric prior ``p_geo``, gathered from every rank, combined,
balanced over a queue, gated; the same on every rank) -> the multiview contrastive loss (stable
pairs, confident same-label negatives masked) + the image<->text loss -> backward (bf16 autocast
on GPUs) -> AdamW, cosine schedule, temperature clamp -> log.

Ground-truth labels never reach any of this: the shards' labels are read once into
:class:`~mvmodel.train.data.HeldBackLabels`, which only the epoch-end agreement measurement
sees.

Resume is exact: a checkpoint holds the weights, optimizer, scheduler, pseudo-labeller queue,
each rank's loader state (the next unseen batch) and RNG states, so a run killed at any moment
and resumed from its last checkpoint ends with the parameters of an uninterrupted run (tested
bit for bit on the CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mvdata.io import atomic_write, atomic_write_json
from mvdata.loaders import make_loader
from mvdata.shards.meta import iter_sample_jsons
from mvmodel import __version__
from mvmodel.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_weights,
)
from mvmodel.config import TrainConfig, config_hash, dump_config, load_config
from mvmodel.dist import DistInfo, all_gather_objects, barrier, init_distributed, shutdown
from mvmodel.losses import gather_no_grad
from mvmodel.pseudolabels import PseudoLabeler, agreement
from mvmodel.text.encoders import make_text_encoder
from mvmodel.text.prompts import build_prompt_bank
from mvmodel.text.prototypes import PromptEmbeddings, prompt_embeddings
from mvmodel.train.augment import second_crop
from mvmodel.train.data import HeldBackLabels, check_shards, data_fingerprint, load_prior
from mvmodel.train.logs import RunLog
from mvmodel.train.module import MultiviewVLMTrainer, image_scores

if TYPE_CHECKING:
    from mvmodel.prior.table import PriorIndex

__all__ = [
    "TrainSummary",
    "TrainingDiverged",
    "cpu_has_native_bf16",
    "forward_rows",
    "train",
    "uses_bf16",
]

Echo = Callable[[str], None]


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient) stopped being finite; nothing after the last good checkpoint
    was saved."""


@dataclass
class TrainSummary:
    """What a run did."""

    run_dir: Path
    steps: int
    epochs: float
    samples_seen: int
    resumed_from: int | None
    weights: Path
    last_loss: float
    last_agreement: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- run directory
def _prepare_run_dir(out: Path, cfg: TrainConfig, resume: bool) -> None:
    """Refuse to mix runs: a run directory holds one config; ``resume`` needs the same one."""
    cfg_file = out / "config.yaml"
    if cfg_file.is_file():
        if not resume:
            raise ValueError(
                f"{out} already holds a training run ({cfg_file}): pass --resume to continue "
                "it, or choose another --out"
            )
        saved = load_config(cfg_file, recorded=True)
        if config_hash(saved) != config_hash(cfg):
            raise ValueError(
                f"{cfg_file} hashes to {config_hash(saved)}, this config to {config_hash(cfg)}: "
                "--resume needs the same settings (compare with that file), or train into a new "
                "--out"
            )
    elif out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} exists and is not empty: choose a new --out for a new run")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """This process's RNG states in types ``torch.load(weights_only=True)`` accepts."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- optimisation
def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases, norms, embeddings, the temperature and loss biases."""
    decay, no_decay = [], []
    skip = ("embed", "cls_token", "temperature", "loss", "pos_")
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or any(s in name for s in skip):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _schedule(cfg: TrainConfig, total_updates: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to ``min_lr_ratio`` over ``total_updates``."""
    warm = min(cfg.optim.warmup_steps, max(total_updates - 1, 0))
    floor = cfg.optim.min_lr_ratio

    def factor(update: int) -> float:
        if update < warm:
            return (update + 1) / (warm + 1)
        span = max(total_updates - warm, 1)
        progress = min((update - warm) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# --------------------------------------------------------------------------- the run
@dataclass
class _State:
    step: int = 0  # loader steps done
    updates: int = 0  # optimizer steps done
    samples: int = 0  # valid samples seen, all ranks
    last_loss: float = float("nan")


def _prompt_embeddings(cfg: TrainConfig, run_dir: Path, info: DistInfo) -> PromptEmbeddings:
    """Every prompt encoded once (rank 0 first, then the others read its cache)."""
    bank = build_prompt_bank(cfg.text.prompts)
    encoder = make_text_encoder(cfg.text.encoder)
    cache = Path(cfg.text.cache_dir) if cfg.text.cache_dir else run_dir / "cache"
    if info.is_main:
        emb = prompt_embeddings(bank, encoder, cache_dir=cache)
    barrier(info)
    if not info.is_main:
        emb = prompt_embeddings(bank, encoder, cache_dir=cache)
    return emb


def _epoch_records(info: DistInfo, rows: list[tuple[str, int, int, int]]) -> list[Any]:
    return [r for part in all_gather_objects(info, rows) for r in part]


def train(
    shards: str,
    out: str | Path,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    echo: Echo = print,
) -> TrainSummary:
    """Train MultiviewVLM on ``shards`` into the run directory ``out`` (see the module doc).

    Run alone, or under ``torchrun`` (every rank calls this with the same arguments). Raises
    ``ValueError`` for bad input before any work, :class:`TrainingDiverged` when the loss stops
    being finite (the last good checkpoint is kept).
    """
    info = init_distributed(cfg.data.device)
    try:
        return _train(str(shards), Path(out), cfg, resume, echo, info)
    finally:
        shutdown(info)


def _train(
    shards: str, run_dir: Path, cfg: TrainConfig, resume: bool, echo: Echo, info: DistInfo
) -> TrainSummary:
    chash = config_hash(cfg)
    say: Echo = echo if info.is_main else (lambda _m: None)
    _prepare_run_dir(run_dir, cfg, resume)
    data = check_shards(shards, cfg)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", dump_config(cfg).encode())
        atomic_write_json(
            run_dir / "run.json",
            {
                "config_hash": chash,
                "data_fingerprint": data_fingerprint(data),
                "shards": shards,
                "world_size": info.world_size,
                "mvmodel_version": __version__,
                "command": " ".join(sys.argv),
            },
        )
    barrier(info)

    # The prior (and, for measurement only, the held-back labels) from one pass over the jsons.
    prior_path = run_dir / "prior.parquet"
    heldback: HeldBackLabels | None = None
    if info.is_main:
        samples = list(iter_sample_jsons(data.root))
        prior = load_prior(data, cfg, prior_path, samples)
        heldback = HeldBackLabels.from_samples(samples)
        del samples
    barrier(info)
    if not info.is_main:
        prior = load_prior(data, cfg, prior_path, None)
    emb = _prompt_embeddings(cfg, run_dir, info)
    classes = list(cfg.text.prompts.classes)
    num_classes = len(classes)

    _seed_everything(cfg.seed)
    device = info.device
    trainer = MultiviewVLMTrainer(cfg, emb.dim, info.rank, info.world_size).to(device)
    if cfg.text.center_prompts:
        trainer.text.set_center(torch.from_numpy(emb.embeddings))
    if cfg.optim.compile:
        trainer.vision.compile()
    model: nn.Module = trainer
    if info.world_size > 1:
        model = DistributedDataParallel(
            trainer, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = torch.optim.AdamW(
        _param_groups(trainer, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas
    )
    labeler = PseudoLabeler(num_classes, cfg.pseudo.labeler_config())
    state = _State()
    loader_state: dict[str, Any] | None = None
    resumed_from: int | None = None
    rng_to_restore: dict[str, Any] | None = None
    ckpt = latest_checkpoint(run_dir) if resume else None
    saved: dict[str, Any] | None = None
    if ckpt is not None:
        # a checkpoint written before the file locations left the hash is this run's too
        legacy = config_hash(cfg, legacy_paths=True)
        weights, saved = load_checkpoint(ckpt, expected_hash=(chash, legacy))
        if int(saved["world_size"]) != info.world_size:
            raise CheckpointError(
                f"{ckpt}: saved by {saved['world_size']} ranks, resumed with "
                f"{info.world_size}: the loaders' positions are per rank; resume with "
                f"{saved['world_size']} processes"
            )
        trainer.load_state_dict(weights)
        labeler.load_state_dict(saved["labeler"])
        state = _State(
            step=int(saved["step"]),
            updates=int(saved["updates"]),
            samples=int(saved["samples"]),
            last_loss=float(saved["last_loss"]),
        )
        loader_state = saved["ranks"][info.rank]["loader"]
        rng_to_restore = saved["ranks"][info.rank]["rng"]
        resumed_from = state.step
    elif resume:
        say(f"no checkpoint in {run_dir}: starting from step 0")

    loader = make_loader(
        data.root,
        batch_size=cfg.data.batch_size,
        rank=info.rank,
        world_size=info.world_size,
        local_rank=info.local_rank,
        backend=cfg.data.backend,
        device=str(device),
        train=True,
        seed=cfg.seed,
        split=cfg.data.split,
        image_size=cfg.model.image_size,
        with_depth="depth" in cfg.model.channels,
        with_normals="normal" in cfg.model.channels,
        num_workers=cfg.data.num_workers,
        max_zoom=cfg.data.max_zoom,
        jitter=cfg.data.jitter,
        state=loader_state,
        exclude_folds=cfg.data.exclude_folds if cfg.data.skip_excluded else (),
    )
    steps_per_epoch = len(loader)
    total_steps = cfg.optim.max_steps or cfg.optim.epochs * steps_per_epoch
    total_updates = math.ceil(total_steps / cfg.optim.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, total_updates))
    if saved is not None:
        # After the scheduler is made: making it resets each group's lr to the first step's.
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    if rng_to_restore is not None:
        _set_rng_state(rng_to_restore)

    log = RunLog(run_dir, enabled=info.is_main, tensorboard=cfg.run.tensorboard)
    log.write(
        "event",
        event="resume" if resumed_from is not None else "start",
        step=state.step,
        config_hash=chash,
        world_size=info.world_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )
    prompt_emb, class_index = (t.to(device) for t in emb.tensors())
    use_bf16 = uses_bf16(cfg.optim.amp, device)
    note = emulated_bf16_note(cfg.optim.amp, device)
    if note:
        say(note)
    if resumed_from is not None:
        say(f"resumed {run_dir} from step {resumed_from} ({ckpt})")
    left_out = loader.info.left_out_folds
    reads = f"{loader.info.total} samples" + (
        f" (folds {list(left_out)} left out, never read)" if left_out else ""
    )
    say(
        f"training on {reads} ({info.world_size} rank(s), {steps_per_epoch} "
        f"steps/epoch, {total_steps} steps) -> {run_dir}"
    )

    def checkpoint() -> Path | None:
        ranks = all_gather_objects(info, {"loader": loader.state_dict(), "rng": _rng_state()})
        if not info.is_main:
            return None
        trainer_state = {
            "config_hash": chash,
            "world_size": info.world_size,
            "step": state.step,
            "updates": state.updates,
            "samples": state.samples,
            "last_loss": state.last_loss,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "labeler": labeler.state_dict(),
            "ranks": ranks,
        }
        meta = {"config": cfg.model_dump_json(), "config_hash": chash, "step": str(state.step)}
        path = save_checkpoint(
            run_dir, state.step, trainer.state_dict(), trainer_state, meta, keep=cfg.run.keep
        )
        log.write("event", event="checkpoint", step=state.step, path=str(path))
        return path

    measures: list[tuple[str, int, int, int]] = []  # key, pseudo, image argmax, prior argmax
    last_agreement: dict[str, float] = {}
    window = {"t0": time.perf_counter(), "data": 0.0, "samples": 0, "steps": 0}
    sums: dict[str, float] = {}
    progress = _progress(cfg, info, total_steps, state.step)
    stop = False
    # Whether ``measures`` cover the current epoch from its first step: not in the epoch a
    # resume lands inside (its earlier steps were measured by the killed sitting, whose records
    # are lost), and again from the next epoch on.
    from_epoch_start = loader.step in (0, steps_per_epoch)
    try:
        while not stop and state.step < total_steps:
            epoch = loader.epoch
            t_wait = time.perf_counter()
            for batch in loader:
                window["data"] += time.perf_counter() - t_wait
                step_in_epoch = loader.step - 1
                epoch_f = epoch + step_in_epoch / max(steps_per_epoch, 1)
                update_now = (state.step + 1) % cfg.optim.grad_accum == 0 or (
                    state.step + 1 == total_steps
                )
                sync = (
                    model.no_sync()
                    if isinstance(model, DistributedDataParallel) and not update_now
                    else contextlib.nullcontext()
                )
                with sync:
                    stats = _step(
                        model,
                        trainer,
                        batch,
                        cfg,
                        labeler,
                        prior,
                        prompt_emb,
                        class_index,
                        epoch_f,
                        info,
                        use_bf16,
                        num_classes,
                    )
                    if not stats["finite"]:
                        good = latest_checkpoint(run_dir)
                        log.write("event", event="diverged", step=state.step + 1, **stats["log"])
                        raise TrainingDiverged(
                            f"step {state.step + 1}: the loss is not finite "
                            f"({stats['log']}); stopped. The last good checkpoint is "
                            f"{good if good else 'none (no checkpoint was written yet)'}"
                        )
                if update_now:
                    grad_norm = _update(trainer, optimizer, cfg)
                    if not math.isfinite(grad_norm):
                        good = latest_checkpoint(run_dir)
                        raise TrainingDiverged(
                            f"step {state.step + 1}: the gradient norm is {grad_norm}; stopped. "
                            f"The last good checkpoint is {good}"
                        )
                    scheduler.step()
                    state.updates += 1
                    stats["log"]["grad_norm"] = grad_norm
                state.step += 1
                state.samples += stats["global_valid"]
                state.last_loss = stats["log"]["loss"]
                measures.extend(stats["measures"])
                window["samples"] += stats["global_valid"]
                window["steps"] += 1
                for key, value in stats["log"].items():  # logged as means over the window
                    sums[key] = sums.get(key, 0.0) + float(value)
                if progress is not None:
                    progress.advance(stats["log"]["loss"])
                if state.step % cfg.run.log_every == 0 or state.step == total_steps:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    wall = time.perf_counter() - window["t0"]
                    log.write(
                        "step",
                        step=state.step,
                        epoch=round(epoch_f, 4),
                        lr=scheduler.get_last_lr()[0],
                        samples_seen=state.samples,
                        samples_per_s=window["samples"] / wall if wall > 0 else 0.0,
                        data_fraction=window["data"] / wall if wall > 0 else 0.0,
                        **{k: v / window["steps"] for k, v in sums.items()},
                    )
                    window = {"t0": time.perf_counter(), "data": 0.0, "samples": 0, "steps": 0}
                    sums = {}
                if state.step % cfg.run.checkpoint_every == 0 and update_now:
                    checkpoint()
                if state.step >= total_steps:
                    stop = True
                    break
                t_wait = time.perf_counter()
            else:
                # A whole epoch ended: measure the pseudo-labels against the held-back labels.
                rows = _epoch_records(info, measures)
                if info.is_main and heldback is not None:
                    last_agreement = _measure(rows, heldback, classes)
                    log.write(
                        "epoch",
                        epoch=epoch,
                        step=state.step,
                        partial=not from_epoch_start,
                        **last_agreement,
                    )
                measures = []
                from_epoch_start = True
                continue
            if stop and measures:
                # The run ends inside this epoch (max_steps) or exactly at its end.
                whole = loader.step in (0, steps_per_epoch) and from_epoch_start
                rows = _epoch_records(info, measures)
                if info.is_main and heldback is not None:
                    last_agreement = _measure(rows, heldback, classes)
                    log.write(
                        "epoch", epoch=epoch, step=state.step, partial=not whole, **last_agreement
                    )
    finally:
        if progress is not None:
            progress.close()
    if state.step % cfg.run.checkpoint_every != 0 or resumed_from == state.step:
        checkpoint()
    weights_path = run_dir / "model.safetensors"
    digests = all_gather_objects(info, _param_digest(trainer))
    if info.is_main:
        _write_final(run_dir, trainer, cfg, chash, emb, state.step, prompt_emb, class_index)
        log.write(
            "event",
            event="done",
            step=state.step,
            samples_seen=state.samples,
            world_size=info.world_size,
            param_digests=digests,
        )
        _try_plot(run_dir, say)
    log.close()
    barrier(info)
    return TrainSummary(
        run_dir=run_dir,
        steps=state.step,
        epochs=state.step / max(steps_per_epoch, 1),
        samples_seen=state.samples,
        resumed_from=resumed_from,
        weights=weights_path,
        last_loss=state.last_loss,
        last_agreement=last_agreement,
    )


def _step(
    model: nn.Module,
    trainer: MultiviewVLMTrainer,
    batch: Any,
    cfg: TrainConfig,
    labeler: PseudoLabeler,
    prior: PriorIndex,
    prompt_emb: torch.Tensor,
    class_index: torch.Tensor,
    epoch_f: float,
    info: DistInfo,
    use_bf16: bool,
    num_classes: int,
) -> dict[str, Any]:
    """Forward, pseudo-labels, losses and backward of one loader batch."""
    device = info.device
    images = batch.images.to(device, non_blocking=True)
    depth = batch.depth.to(device, non_blocking=True) if batch.depth is not None else None
    normals = batch.normals.to(device, non_blocking=True) if batch.normals is not None else None
    cams = list(batch.views) if batch.views else list(range(images.shape[2]))
    if cfg.data.views is not None:  # a subset of the views (single-view baselines)
        pick = list(cfg.data.views)
        images = images[:, :, pick]
        depth = depth[:, :, pick] if depth is not None else None
        normals = normals[:, :, pick] if normals is not None else None
        cams = [cams[i] for i in pick]
    if cfg.loss.second_crop:  # a second augmented copy of each view: an extra positive
        rgb2, depth2, normals2 = second_crop(images, depth, normals)
        images = torch.cat([images, rgb2], dim=2)
        if depth is not None and depth2 is not None:
            depth = torch.cat([depth, depth2], dim=2)
        if normals is not None and normals2 is not None:
            normals = torch.cat([normals, normals2], dim=2)
        cams = cams + cams
    view_ids = torch.as_tensor(cams, device=device)
    valid_list = batch.valid.tolist()
    # Held-out subjects never take part: masked like padding rows. With data.skip_excluded the
    # loader never reads them, so there is nothing to mask and no row's json to parse per step.
    if cfg.data.exclude_folds and not cfg.data.skip_excluded:
        held_out = set(cfg.data.exclude_folds)
        valid_list = [
            ok and int((batch.meta[i] or {}).get("fold", -1)) not in held_out
            for i, ok in enumerate(valid_list)
        ]
    valid = torch.tensor(valid_list, dtype=torch.bool, device=device)
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    )
    # Only the rows that train go through the model. Held-out subjects (data.exclude_folds) and
    # padding rows used to go through it too, masked in the losses only: in train mode their
    # images then entered BatchNorm's batch statistics (test subjects' images shaping a model
    # reported on "subjects no model saw") and cost a third of the compute of a benchmark run.
    # The outputs are scattered back into the full batch (other rows zero, masked by ``valid``)
    # so that every rank still gathers tensors of one shape.
    rows, bn_frozen = forward_rows(valid_list)
    full = len(rows) == len(valid_list)
    idx = torch.as_tensor(rows, dtype=torch.long, device=device)

    def take(x: torch.Tensor | None) -> torch.Tensor | None:
        return x if x is None or full else x.index_select(0, idx)

    with ctx, _batchnorm_frozen(model, bn_frozen):
        out = model(take(images), take(depth), take(normals), view_ids, prompt_emb, class_index)
    z, f, c, tau = out.vision.z, out.vision.f, out.c, out.tau
    if not full:
        n = len(valid_list)
        z = z.new_zeros((n, *z.shape[1:])).index_copy(0, idx, z)
        f = f.new_zeros((n, *f.shape[1:])).index_copy(0, idx, f)
    s = image_scores(z, f, c)
    keys = list(batch.keys)
    p_geo = torch.full((len(keys), num_classes), 1.0 / num_classes)
    valid_rows = [i for i, ok in enumerate(valid_list) if ok]
    if valid_rows and cfg.pseudo.prior:
        p_geo[valid_rows] = torch.from_numpy(prior([keys[i] for i in valid_rows]))
    p_geo = p_geo.to(device)
    world = info.world_size
    scores_all = gather_no_grad(s, world)
    prior_all = gather_no_grad(p_geo, world)
    valid_all = gather_no_grad(valid, world)
    b = valid.shape[0]
    q_all = torch.full((world * b, num_classes), 1.0 / num_classes, device=device)
    conf_all = torch.zeros(world * b, dtype=torch.bool, device=device)
    hard_all = torch.full((world * b,), -1, dtype=torch.long, device=device)
    if bool(valid_all.any()):
        labels = labeler(scores_all[valid_all], prior_all[valid_all], epoch_f)
        q_all[valid_all] = labels.q.to(device)
        conf_all[valid_all] = labels.confident.to(device)
        hard_all[valid_all] = labels.hard.to(device)
    lo, hi = info.rank * b, (info.rank + 1) * b
    q, confident, hard = q_all[lo:hi], conf_all[lo:hi], hard_all[lo:hi]
    if cfg.loss.supervised:  # BASELINE ONLY (config says so): source labels as the targets
        q, confident, hard = _label_targets(batch, valid_list, cfg, device)
    masked = torch.where(confident, hard, torch.full_like(hard, -1))
    pseudo = masked if cfg.loss.mask_false_negatives else torch.full_like(hard, -1)
    l_mv = trainer.multiview_loss(z, valid, pseudo, tau)
    l_it = trainer.image_text_loss(f, z, c, q, confident, valid, tau)
    loss = cfg.loss.w_multiview * l_mv + cfg.loss.w_image_text * l_it.total
    finite = torch.isfinite(loss.detach()).float()
    if world > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    log = {
        "loss": _mean_over_ranks(loss, info),
        "loss_multiview": _mean_over_ranks(l_mv, info),
        "loss_i2t": _mean_over_ranks(l_it.i2t, info),
        "loss_i2t_views": _mean_over_ranks(l_it.i2t_views, info),
        "loss_t2i": _mean_over_ranks(l_it.t2i, info),
        "tau": float(tau.detach()),
        "alpha": labeler.last_alpha,
        "beta": labeler.last_beta,
        "image_trust": labeler.last_trust,
        "confident_fraction": float(conf_all[valid_all].float().mean())
        if bool(valid_all.any())
        else 0.0,
    }
    mv_stats = getattr(trainer.multiview_loss, "last_stats", None)
    if mv_stats is not None and hasattr(mv_stats, "pos_sim"):
        log["pos_sim"] = float(mv_stats.pos_sim)
        log["neg_sim"] = float(mv_stats.neg_sim)
        log["masked_fraction"] = float(mv_stats.masked_frac)
    if not bool(finite.item()):
        return {"finite": False, "log": log, "global_valid": 0, "measures": []}
    (loss / cfg.optim.grad_accum).backward()
    img_arg = s.argmax(dim=1).tolist()
    prior_arg = p_geo.argmax(dim=1).tolist()
    hard_local = hard.tolist()
    measures = [(keys[i], hard_local[i], img_arg[i], prior_arg[i]) for i in valid_rows]
    return {
        "finite": True,
        "log": log,
        "global_valid": int(valid_all.sum()),
        "measures": measures,
    }


def uses_bf16(amp: str, device: torch.device) -> bool:
    """Whether the training step runs under bf16 autocast: ``bf16`` always, ``auto`` on CUDA
    only. ``auto`` keeps float32 on the CPU so that every recorded CPU run stays reproducible
    by its config hash; ``bf16`` is the faster choice on CPUs with native bf16 (README)."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def emulated_bf16_note(amp: str, device: torch.device) -> str | None:
    """The warning for bf16 autocast that this CPU can only emulate, or None: emulated, it is
    not a little slower but an order of magnitude (the figures in the message), so a run that
    expected an hour would take a day; said by ``mvmodel train`` and, before anything runs, by
    ``mvmodel benchmark`` (whose training logs nobody watches)."""
    if not uses_bf16(amp, device) or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return (
        "optim.amp=bf16 on a CPU without native bf16 (no avx512_bf16 / AMX): autocast emulates "
        "it, and on such a CPU a training step measured 16x slower than float32 (16.6 against "
        "1.04 s a step, the benchmark's ResNet-18 at 112 px, 2026-12-06); use optim.amp=off"
    )


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (avx512_bf16 or AMX): there bf16 autocast
    roughly halves a ResNet step (1.8x on the 2-core AMD EPYC, bench/results/train_cpu_bf16.json);
    elsewhere it is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no native path
        return False


def forward_rows(valid: Sequence[bool]) -> tuple[list[int], bool]:
    """The rows of a batch that go through the model (the valid ones: training subjects, not
    padding), and whether BatchNorm must use its running statistics for them.

    A batch with fewer than two valid rows (only at an epoch's end) runs them, or its first row
    when none is valid (every rank must run a forward; the row is masked in the losses), with
    BatchNorm in eval mode: batch statistics of one sample are undefined, and topping the batch
    up with other rows would let held-out images into the statistics again.
    """
    rows = [i for i, ok in enumerate(valid) if ok]
    if len(rows) >= 2:
        return rows, False
    return (rows or [0]), True


@contextlib.contextmanager
def _batchnorm_frozen(model: nn.Module, frozen: bool) -> Iterator[None]:
    """BatchNorm layers in eval mode (running statistics used, not updated) while ``frozen``;
    nothing is walked on the usual step (``frozen`` False)."""
    if not frozen:
        yield
        return
    layers = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in layers:
        m.eval()
    try:
        yield
    finally:
        for m in layers:
            m.train()


def _label_targets(
    batch: Any, valid: list[bool], cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The supervised baseline's targets: one-hot source labels (``loss.supervised=true`` only;
    the pseudo-label path never calls this). Rows without a label among the classes are not
    confident and so take no part in the image-text loss."""
    classes = list(cfg.text.prompts.classes)
    k = len(classes)
    hard = torch.full((len(valid),), -1, dtype=torch.long)
    for i, ok in enumerate(valid):
        if ok:
            label = ((batch.meta[i] or {}).get("labels") or {}).get("expression")
            if label in classes:
                hard[i] = classes.index(label)
    confident = hard >= 0
    q = torch.full((len(valid), k), 1.0 / k)
    q[confident] = torch.nn.functional.one_hot(hard[confident], k).float()
    return q.to(device), confident.to(device), hard.to(device)


def _param_digest(module: nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on every rank when DDP kept them in step.
    (Buffers are left out: BatchNorm's running statistics of the last forward are each rank's
    own until DDP broadcasts rank 0's at the next forward.)"""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _mean_over_ranks(x: torch.Tensor, info: DistInfo) -> float:
    """The loss as the single-process loss of the global batch: each rank's value is scaled so
    that their mean is the global one (see mvmodel.losses)."""
    value = x.detach().float().reshape(1).clone()
    if info.world_size > 1:
        torch.distributed.all_reduce(value)
        value /= info.world_size
    return float(value.item())


def _update(
    trainer: MultiviewVLMTrainer, optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> float:
    """Clip, step, clamp the temperature, clear gradients; the global gradient norm."""
    params = [p for p in trainer.parameters() if p.grad is not None]
    if cfg.optim.clip_grad is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad))
    else:
        norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))  # type: ignore[union-attr]
    if math.isfinite(norm):
        optimizer.step()
        trainer.temperature.clamp_()
    optimizer.zero_grad(set_to_none=True)
    return norm


def _measure(
    rows: list[tuple[str, int, int, int]], heldback: HeldBackLabels, classes: list[str]
) -> dict[str, float]:
    """Agreement of the pseudo-labels, the image side's zero-shot guess and the prior's guess
    with the held-back labels, overall and per class (a measurement; nothing trains on it)."""
    if not rows:
        return {}
    keys = [r[0] for r in rows]
    labels = heldback.of(keys)
    out: dict[str, float] = {"measured": float(len(rows))}
    columns = {
        "pseudo": [r[1] for r in rows],
        "image": [r[2] for r in rows],
        "prior": [r[3] for r in rows],
    }
    for name, guesses in columns.items():
        res = agreement(guesses, labels, classes)
        for k, v in res.items():
            out[f"{name}/{k}"] = v
    return out


class _Progress:
    """A rich progress bar over the run's steps (rank 0, a terminal only)."""

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "train",
            BarColumn(),
            MofNCompleteColumn(),
            "loss {task.fields[loss]:.4f}",
            TimeRemainingColumn(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, completed=done, loss=float("nan"))

    def advance(self, loss: float) -> None:
        self._bar.update(self._task, advance=1, loss=loss)

    def close(self) -> None:
        self._bar.stop()


def _progress(cfg: TrainConfig, info: DistInfo, total: int, done: int) -> _Progress | None:
    if not (cfg.run.progress and info.is_main and sys.stdout.isatty()):
        return None
    return _Progress(total, done)


def _write_final(
    run_dir: Path,
    trainer: MultiviewVLMTrainer,
    cfg: TrainConfig,
    chash: str,
    emb: PromptEmbeddings,
    step: int,
    prompt_emb: torch.Tensor,
    class_index: torch.Tensor,
) -> None:
    """``RUN/model.safetensors``: every trained weight (vision, text projection, temperature,
    loss parameters) with the config in its metadata, and ``RUN/prototypes.safetensors``: the
    final class prototypes ``c [K, D]`` for zero-shot use without the text encoder."""
    meta = {
        "format": "mvmodel.multiviewvlm/1",
        "config": cfg.model_dump_json(),
        "config_hash": chash,
        "step": str(step),
        "classes": ",".join(cfg.text.prompts.classes),
        "text_encoder": emb.encoder_name,
        "prompt_bank": emb.bank_fingerprint,
        "mvmodel_version": __version__,
    }
    write_weights(run_dir / "model.safetensors", trainer.state_dict(), meta)
    with torch.no_grad():
        c = trainer.text.prototypes(prompt_emb, class_index, trainer.num_classes)
    write_weights(run_dir / "prototypes.safetensors", {"prototypes": c.float()}, meta)


def _try_plot(run_dir: Path, say: Echo) -> None:
    """Draw the curves at the end of a run (``mvmodel plot RUN`` does it on demand)."""
    from mvmodel.train.plot import plot_run

    path = plot_run(run_dir)
    say(f"curves -> {path}")
