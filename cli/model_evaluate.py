"""``mvmodel evaluate`` and ``mvmodel benchmark``: parse, call one library function, print."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from cli.common import fail, run_or_fail


def _ints(text: str | None, option: str) -> tuple[int, ...] | None:
    """``"3,4"`` -> ``(3, 4)``; ``"all"`` -> None."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        fail(f"{option}: write comma-separated integers or 'all', got {text!r}")


def _baselines(items: list[str]) -> dict[str, str]:
    """``["NAME=RUN", ...]`` -> ``{NAME: RUN}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            fail(f"--baseline {item!r}: write NAME=RUN")
        if name in out:
            fail(f"--baseline {name!r} given twice")
        out[name] = path
    return out


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run directory of `mvmodel train` (or a checkpoint)."),
    shards: str = typer.Argument(..., help="Shard directory written by `mvdata build`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Report directory (report.md, report.json, PNGs)."
    ),
    protocol: str = typer.Option(
        "all",
        help="Preset: all, bu3dfe (60 subjects, intensities 3-4, 10 folds) or bu4dfe (clips).",
    ),
    intensities: str | None = typer.Option(
        None, help="Comma-separated intensities, or 'all' (default: the preset's)."
    ),
    classes: str | None = typer.Option(
        None, help="Comma-separated classes (default: the six expressions)."
    ),
    subjects: str | None = typer.Option(
        None, help="Number of subjects (seeded choice), or 'all' (default: the preset's)."
    ),
    folds: str | None = typer.Option(
        None, help="K to deal the subjects into K folds, or 'stored' for the build's folds."
    ),
    kind: str | None = typer.Option(None, help="static, sequence or any (default: the preset's)."),
    mode: str = typer.Option(
        "auto",
        help="cv, holdout (the run's data.exclude_folds) or auto (holdout when it has them).",
    ),
    baseline: list[str] = typer.Option(
        [], help="NAME=RUN: another run evaluated the same way (repeatable)."
    ),
    variant: list[str] = typer.Option(
        [],
        help="NAME=RUN: a variant of the main model (other inputs or prior), evaluated the same way but left out of the target checks (repeatable).",
    ),
    geometry: bool = typer.Option(
        True, help="Geometry-alone baselines (AU proxies, the prior's naming)."
    ),
    random_init: bool = typer.Option(True, help="The run's network untrained, as a baseline."),
    batch_size: int = typer.Option(32, help="Embedding batch size."),
    workers: int = typer.Option(2, help="Loader threads."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    seed: int = typer.Option(
        0, help="Seed of subject choice, re-dealt folds, k-means, t-SNE and bootstrap."
    ),
) -> None:
    """Evaluate a trained run on subject-independent folds: linear probe, kNN, zero-shot,
    k-means; baselines through the same code; a Markdown + JSON report with plots."""
    from mvmodel.evaluate import evaluate, make_protocol
    from mvmodel.evaluate.report import summary_lines

    if mode not in ("auto", "cv", "holdout"):
        fail(f"--mode {mode!r}: choose auto, cv or holdout")
    over: dict[str, object] = {"seed": seed}
    if intensities is not None:
        over["intensities"] = _ints(intensities, "--intensities")
    if classes is not None:
        over["classes"] = tuple(c.strip() for c in classes.split(",") if c.strip())
    if subjects is not None:
        n = _ints(subjects, "--subjects")
        over["num_subjects"] = None if n is None else n[0]
    if folds is not None:
        over["num_folds"] = (
            None if folds.strip().lower() == "stored" else (_ints(folds, "--folds") or (None,))[0]
        )
    if kind is not None:
        over["kind"] = None if kind == "any" else kind
    proto = run_or_fail(lambda: make_protocol(protocol, **over))
    runs = _baselines(baseline)
    variants = _baselines(variant)
    for name in variants:
        if name in runs:
            fail(f"{name!r} is given as --baseline and as --variant")
    runs.update(variants)
    result = run_or_fail(
        lambda: evaluate(
            run,
            shards,
            out,
            protocol=proto,
            mode=mode,  # type: ignore[arg-type]
            baselines=runs,
            variants=list(variants),
            geometry=geometry,
            random_init=random_init,
            batch_size=batch_size,
            num_workers=workers,
            device=device,
            seed=seed,
            command=shlex.join(["mvmodel", *sys.argv[1:]]),
            echo=typer.echo,
        )
    )
    for line in summary_lines(result.doc):
        typer.echo(line)
    typer.echo(f"report: {result.markdown} (and report.json, PNGs in {result.out})")


def benchmark_cmd(
    out: Path = typer.Argument(..., help="Output directory (data, runs, configs, logs, report)."),
    seed: int = typer.Option(..., help="Seed of the data, the folds and every training run."),
    identities: int | None = typer.Option(
        None, help="Synthetic identities (default 100; quick: 6)."
    ),
    face_model: str | None = typer.Option(
        None,
        help="sfm (default; stops when its files are not found), procedural (the built-in face: "
        "expressions barely visible in renders, not comparable) or auto (quick's default).",
    ),
    quick: bool = typer.Option(
        False, help="A tiny version (6 identities, 32 px, 4 steps a run) for smoke tests."
    ),
    image_size: int | None = typer.Option(
        None, help="Rendered and model image size (default 112; quick: 32)."
    ),
    epochs: int | None = typer.Option(None, help="Training epochs of every run (default 20)."),
    batch_size: int | None = typer.Option(
        None, help="Training batch size per process (default 16)."
    ),
    backbone: str | None = typer.Option(None, help="timm backbone (default resnet18)."),
    holdout_folds: str | None = typer.Option(
        None, help="Folds no run trains on, tested (default 0,1,2; quick: 0)."
    ),
    baselines: str | None = typer.Option(
        None, help="Comma-separated: supervised,simclr,multiview,no-prior (or 'none')."
    ),
    variants: str | None = typer.Option(
        None, help="Comma-separated: population-reference,rgb,rgb-depth,clips (or 'none')."
    ),
    base_config: Path | None = typer.Option(
        None, help="YAML training config every run starts from (e.g. configs/gpu-vit-s16.yaml)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="section.key=value for every training run (repeatable)."
    ),
    nproc: int | None = typer.Option(None, help="Processes per training run (torchrun)."),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Generate the synthetic benchmark from a seed, train MultiviewVLM and every baseline,
    and evaluate them into OUT/report/ (one command; re-running resumes, and may name other
    --baselines / --variants: finished runs are reused)."""
    from mvmodel.evaluate.benchmark import BenchmarkSettings, quick_settings, run_benchmark

    def names(text: str | None) -> tuple[str, ...] | None:
        if text is None:
            return None
        return (
            () if text.strip() == "none" else tuple(x.strip() for x in text.split(",") if x.strip())
        )

    given: dict[str, object] = {
        "identities": identities,
        "face_model": face_model,
        "image_size": image_size,
        "epochs": epochs,
        "batch_size": batch_size,
        "backbone": backbone,
        "holdout_folds": _ints(holdout_folds, "--holdout-folds") if holdout_folds else None,
        "baselines": names(baselines),
        "variants": names(variants),
        "base_config": str(base_config) if base_config else None,
        "overrides": tuple(set_) or None,
        "nproc": nproc,
        "device": device,
    }
    given = {k: v for k, v in given.items() if v is not None}
    settings = run_or_fail(
        lambda: (
            quick_settings(seed, **given)
            if quick
            else BenchmarkSettings.model_validate({"seed": seed, **given})
        )
    )
    try:
        report = run_or_fail(
            lambda: run_benchmark(
                out, settings, command=shlex.join(["mvmodel", *sys.argv[1:]]), echo=typer.echo
            )
        )
    except typer.Exit:  # click's Exit is a RuntimeError: an input error already said its line
        raise
    except RuntimeError as exc:  # a stage's subprocess failed (its log is named)
        fail(str(exc), code=1)
    typer.echo(f"report: {report}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("benchmark")(benchmark_cmd)
