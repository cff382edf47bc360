"""``mvmodel evaluate``: one trained run (and its baselines) on one protocol, into a report.

Order of work: the samples' json members (labels for evaluation, landmarks for the geometry)
-> the protocol's selection and folds -> each model's frozen embeddings (cached per checkpoint)
-> the same metrics for every method -> Markdown + JSON + plots (:mod:`.report`).

Model selection: each run is evaluated at the weights it was given: ``RUN/model.safetensors``,
the final weights of the run, or a checkpoint directory the user names. Nothing here looks at
a test fold to choose a checkpoint, an epoch or a hyperparameter: ``C`` and ``k`` are chosen by
an inner cross-validation on the training folds only (:mod:`.metrics`).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from mvmodel import __version__
from mvmodel.evaluate.baselines import geometry_method, prior_frame, random_init_model
from mvmodel.evaluate.features import FeatureSet, embed_features, manifest_sha256
from mvmodel.evaluate.metrics import evaluate_representation, l2_normalise
from mvmodel.evaluate.protocols import Protocol, Selection, sample_table, select

if TYPE_CHECKING:
    from mvmodel.config import TrainConfig
    from mvmodel.inference import TrainedModel

__all__ = ["MAIN", "EvaluationResult", "evaluate", "find_run_dir", "training_curves"]

Echo = Callable[[str], None]
MAIN = "MultiviewVLM"
RANDOM_INIT = "random-init encoder"
GEOMETRY = "geometry alone (AU proxies; prior naming)"


@dataclass
class EvaluationResult:
    """What :func:`evaluate` wrote and the report's document."""

    out: Path
    markdown: Path
    json: Path
    doc: dict[str, Any]


def find_run_dir(weights: Path) -> Path | None:
    """The run directory of a weights file (``RUN/model.safetensors`` or
    ``RUN/checkpoints/ckpt-N/model.safetensors``), when it has a ``log.jsonl``."""
    for cand in (weights.parent, weights.parent.parent.parent):
        if (cand / "log.jsonl").is_file():
            return cand
    return None


def training_curves(run_dir: Path | None) -> list[dict[str, Any]]:
    """The run's per-epoch agreement records (pseudo-labels, image zero-shot, prior) with the
    held-back labels, measured during training on the samples it trained on."""
    if run_dir is None:
        return []
    from mvmodel.train.logs import read_log

    keep = (
        "epoch",
        "step",
        "partial",
        "measured",
        "pseudo/overall",
        "image/overall",
        "prior/overall",
    )
    out = []
    for rec in read_log(run_dir):
        if rec.get("kind") == "epoch":
            row = {k: rec[k] for k in keep if k in rec}
            row.update({k: v for k, v in rec.items() if k.startswith("pseudo/agreement/")})
            out.append(row)
    return out


def _generation_settings(shards: str) -> dict[str, Any] | None:
    """The synthetic generator's settings (``synth.json`` next to the build's source) when the
    shards were built from ``mvdata synth`` output that is still there."""
    from mvdata.shards.reader import filesystem

    fs, root = filesystem(shards)
    try:
        with fs.open(f"{root}/dataset.json", "rb") as f:
            meta = json.loads(f.read())
    except (OSError, ValueError):
        return None
    src = Path(str(meta.get("source_root", "")))
    if meta.get("source") != "synthetic" or not (src / "synth.json").is_file():
        return None
    try:
        gen: dict[str, Any] = json.loads((src / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    gen["build"] = {
        k: meta.get(k)
        for k in ("image_size", "modalities", "num_folds", "seed", "clip_frames", "clip_sampling")
    }
    gen["build"]["views"] = [(v.get("yaw"), v.get("pitch")) for v in meta.get("views", [])]
    return gen


def _statement(sel: Selection, models: Mapping[str, TrainedModel], seen_subjects: int) -> str:
    """What the representation saw, in words, for the top of the report (``seen_subjects``:
    the shards' subjects outside the held-out folds)."""
    if sel.mode == "holdout":
        return (
            f"Held-out subjects: the {len(sel.subjects('test'))} tested subjects of folds "
            f"{list(sel.test_folds)} were kept out of training (data.exclude_folds) by every "
            f"image model evaluated; the representation saw (without labels) the "
            f"{seen_subjects} subjects of the shards outside those folds. "
            "Linear probes and kNN are fitted on the non-held-out subjects' samples only; "
            "zero-shot and k-means fit nothing to labels."
        )
    partial = [n for n, m in models.items() if m.config.data.exclude_folds]
    text = (
        "Cross-validation over every fold (transductive representation): the image models "
        "were trained on all subjects, the test subjects included, without labels (a "
        "supervised baseline, marked *, with them); every "
        "classifier (linear probe, kNN) is fitted on the training folds only, its C or k "
        "chosen by an inner cross-validation on those folds; zero-shot and k-means fit "
        "nothing to labels."
    )
    if partial:
        text += f" Runs trained with data.exclude_folds: {', '.join(partial)}."
    return text


def _model_info(name: str, m: TrainedModel, feats: FeatureSet) -> dict[str, Any]:
    cfg = m.config
    run_dir = find_run_dir(m.source)
    curves = training_curves(run_dir)
    last = curves[-1] if curves else None
    return {
        "name": name,
        "weights": str(m.source),
        "run_dir": str(run_dir) if run_dir else None,
        "model_id": m.model_id,
        "checkpoint_sha256": m.checkpoint_sha256,
        "step": m.step,
        "exclude_folds": list(cfg.data.exclude_folds),
        "supervised": bool(cfg.loss.supervised),
        "settings": {
            "backbone": cfg.model.backbone,
            "channels": cfg.model.channels,
            "image_size": cfg.model.image_size,
            "embed_dim": cfg.model.embed_dim,
            "views": list(cfg.data.views) if cfg.data.views is not None else "all",
            "w_image_text": cfg.loss.w_image_text,
            "mask_false_negatives": cfg.loss.mask_false_negatives,
            "second_crop": cfg.loss.second_crop,
            "prior": cfg.pseudo.prior,
            "prior_reference": cfg.prior.reference,
            "epochs": cfg.optim.epochs,
            "max_steps": cfg.optim.max_steps,
            "seed": cfg.seed,
        },
        "features": feats.info,
        # A network whose embeddings are all equal (an untrained one on tiny images can be)
        # scores chance everywhere: said in the report rather than left to be guessed.
        "embedding_spread": float(feats.f.std(axis=0).mean()),
        "training": curves,
        "pseudo_labels": None
        if last is None or "pseudo/overall" not in last
        else {
            "accuracy": last["pseudo/overall"],
            "epoch": last.get("epoch"),
            "partial_epoch": bool(last.get("partial", False)),
            "measured_on": "the run's training samples (every intensity it trained on)",
            "role": _pseudo_label_role(cfg),
        },
    }


def _pseudo_label_role(cfg: TrainConfig) -> str:
    """What the run's pseudo-labels did in training: ``targets`` (the image-text loss and/or
    the false-negative mask), ``replaced by labels`` (the supervised baseline: its agreement is
    trivially 1) or ``unused`` (a baseline whose loss ignores them, though the loop still
    computes and measures them: without this a 100 % in the report reads as if they taught it)."""
    if cfg.loss.supervised:
        return "replaced by labels"
    if cfg.loss.w_image_text > 0 or cfg.loss.mask_false_negatives:
        return "targets"
    return "unused"


def evaluate(
    run: str | Path,
    shards: str | Path,
    out: str | Path,
    *,
    protocol: Protocol,
    mode: Literal["auto", "cv", "holdout"] = "auto",
    baselines: Mapping[str, str | Path] | None = None,
    variants: Sequence[str] = (),
    geometry: bool = True,
    random_init: bool = True,
    batch_size: int = 32,
    num_workers: int = 2,
    device: str = "auto",
    seed: int = 0,
    command: str | None = None,
    benchmark: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
    cache_dir: str | Path | None = None,
    echo: Echo = print,
) -> EvaluationResult:
    """Evaluate ``run`` (and ``baselines``: name -> run) on ``shards`` under ``protocol``, and
    write the report into ``out``.

    ``mode``: ``auto`` is ``holdout`` when the run was trained with ``data.exclude_folds`` (those
    folds are tested), else ``cv``. Raises ``ValueError`` for input that cannot be evaluated (a
    baseline trained on the held-out folds, a protocol the shards cannot fill, ...).
    ``variants``: names among ``baselines`` that are variants of MultiviewVLM itself (other
    inputs or prior), not baselines: the report's target checks leave them out.
    ``cache_dir`` (default ``OUT/cache``) holds the embeddings, the prior table and the
    random-init weights; reports that share it embed each checkpoint once.
    """
    from mvdata.shards.meta import iter_sample_jsons
    from mvmodel.evaluate.report import machine_info, write_report
    from mvmodel.inference import TrainedModel

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    shards = str(shards)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    data_sha = manifest_sha256(shards)
    samples = list(iter_sample_jsons(shards))
    table = sample_table(samples)

    echo(f"loading {run}")
    models: dict[str, TrainedModel] = {MAIN: TrainedModel.load(run, device=device)}
    for name, path in (baselines or {}).items():
        if name in models or name == RANDOM_INIT or name.startswith(GEOMETRY):
            raise ValueError(f"baseline name {name!r} is taken: choose another")
        models[name] = TrainedModel.load(path, device=device)
    unknown = sorted(set(variants) - set(baselines or {}))
    if unknown:
        raise ValueError(f"variants {unknown} are not among the runs given")
    main = models[MAIN]
    excluded = tuple(main.config.data.exclude_folds)
    chosen: Literal["cv", "holdout"] = ("holdout" if excluded else "cv") if mode == "auto" else mode
    sel = select(table, protocol, mode=chosen, holdout_folds=excluded)
    if chosen == "holdout":
        for name, m in models.items():
            missing = sorted(set(sel.test_folds) - set(m.config.data.exclude_folds))
            if missing:
                raise ValueError(
                    f"{name} ({m.source}) was trained on held-out folds {missing}: train it "
                    f"with data.exclude_folds={list(excluded)} or evaluate with --mode cv"
                )
    if random_init:
        models[RANDOM_INIT] = random_init_model(main, cache / "random-init", device=device)
    echo(
        f"protocol {protocol.describe(holdout=sel.mode == 'holdout')}; mode {sel.mode}: "
        f"{len(sel)} samples, "
        f"{len(sel.subjects())} subjects, test folds {list(sel.test_folds)}"
    )

    keys = sel.keys
    methods: dict[str, dict[str, Any]] = {}
    model_info: dict[str, dict[str, Any]] = {}
    features: dict[str, FeatureSet] = {}
    for name, m in models.items():
        echo(f"embedding {name} ({m.source})")
        feats = embed_features(
            m,
            shards,
            cache / "features",
            name=name,
            batch_size=batch_size,
            num_workers=num_workers,
            data_sha256=data_sha,
        )
        features[name] = feats
        x = l2_normalise(feats.f[feats.rows(keys)])
        echo(f"scoring {name}")
        res = evaluate_representation(
            x, sel, scores=feats.zero_shot_scores(keys, sel.classes), seed=seed
        )
        info = _model_info(name, m, feats)
        res["kind"] = (
            "untrained"
            if name == RANDOM_INIT
            else "variant"
            if name in set(variants)
            else "main"
            if name == MAIN
            else "baseline"
        )
        res["pseudo_labels"] = info["pseudo_labels"]
        res["collapsed"] = info["embedding_spread"] < 1e-6
        res["saw_test_labels"] = bool(
            info["supervised"]
            and (sel.mode == "cv" or not set(sel.test_folds) <= set(info["exclude_folds"]))
        )
        methods[name] = res
        model_info[name] = info

    prior_source = None
    if geometry:
        # One geometry row per prior setting the image models used (the main run's first): a
        # variant trained with the population reference is compared with that prior.
        settings: list[Any] = []
        for m in models.values():
            if m.config.prior not in settings:
                settings.append(m.config.prior)
        main_prior = main.config.prior
        settings.sort(key=lambda p: p != main_prior)
        for prior_cfg in settings:
            name = (
                GEOMETRY
                if prior_cfg == main_prior
                else f"{GEOMETRY}, {prior_cfg.reference} reference"
            )
            echo(f"{name}")
            cfg = main.config.model_copy(update={"prior": prior_cfg})
            prior, source = prior_frame(
                shards,
                samples,
                cfg,
                cache,
                data_sha256=data_sha,
                run_dir=find_run_dir(main.source) if prior_cfg == main_prior else None,
            )
            geo = geometry_method(prior, sel, seed=seed)
            geo.update(
                kind="geometry",
                pseudo_labels=None,
                saw_test_labels=False,
                prior_table=source,
                prior_settings=prior_cfg.model_dump(mode="json"),
            )
            methods[name] = geo
            prior_source = prior_source or source
    del samples

    main_feats = features[MAIN]
    rows = main_feats.rows(keys)
    doc: dict[str, Any] = {
        "report_version": 1,
        "main": MAIN,
        "protocol": protocol.model_dump(mode="json"),
        "protocol_text": protocol.describe(holdout=sel.mode == "holdout"),
        "mode": sel.mode,
        "statement": _statement(
            sel,
            {k: v for k, v in models.items() if k != RANDOM_INIT},
            table.filter(~pl.col("fold").is_in(list(excluded)))["subject"].n_unique(),
        ),
        "model_selection": (
            "Each run is evaluated at the weights it was given (RUN/model.safetensors: the "
            "final weights, or a named checkpoint); no epoch or checkpoint is chosen on any "
            "fold. C (linear probe) and k (kNN) are chosen per test fold by a subject-grouped "
            "inner cross-validation on that fold's training samples only."
        ),
        "selection": {
            "samples": len(sel),
            "subjects": len(sel.subjects()),
            "test_folds": list(sel.test_folds),
            "test_samples": int(sel.test_mask().sum()),
            "test_subjects": sel.subjects("test"),
            # the subjects whose images (never labels) trained the main representation
            "representation_subjects": sorted(
                set(
                    table.filter(~pl.col("fold").is_in(list(excluded)))
                    .select(pl.col("dataset") + "/" + pl.col("subject"))
                    .to_series()
                    .to_list()
                )
            ),
            "classifier_training_subjects": len(sel.subjects("train")),
            "left_out": sel.dropped,
            "per_class": {c: int((sel.label == i).sum()) for i, c in enumerate(sel.classes)},
            "per_intensity": {
                str(int(v)): int((sel.intensity == v).sum())
                for v in sorted(set(sel.intensity.tolist()))
            },
            # what the per-intensity accuracies are measured on
            "per_intensity_test": {
                str(int(v)): int((sel.intensity[sel.test_mask()] == v).sum())
                for v in sorted(set(sel.intensity.tolist()))
            },
        },
        "data": {
            "shards": shards,
            "manifest_sha256": data_sha,
            "num_samples": len(table),
            "num_subjects": int(table["subject"].n_unique()),
            "kinds": sorted(set(table["kind"].to_list())),
            "generation": _generation_settings(shards),
            "prior_table": prior_source,
        },
        "models": model_info,
        "methods": methods,
        "benchmark": dict(benchmark) if benchmark else None,
        "links": dict(links) if links else {},
        "environment": {
            "command": command if command is not None else shlex.join(sys.argv),
            "package_version": __version__,
            "machine": machine_info(),
            "started": started,
            "device": str(main.device),
        },
    }
    echo("writing the report")
    md, js = write_report(
        out,
        doc,
        embedding=np.asarray(main_feats.f[rows]),
        selection=sel,
        seed=seed,
        wall_start=t0,
    )
    return EvaluationResult(out=out, markdown=md, json=js, doc=doc)
