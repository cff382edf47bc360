"""``mvmodel train`` and ``mvmodel plot``: parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import fail, run_or_fail


def train_cmd(
    ctx: typer.Context,
    shards: str = typer.Argument(..., help="Shard directory written by `mvdata build`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run directory (config, log, checkpoints, weights)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (see configs/)."),
    resume: bool = typer.Option(
        False, help="Continue the run in --out from its latest checkpoint."
    ),
) -> None:
    """Train MultiviewVLM on shards; extra arguments `section.key=value` override the config.

    One process, or `torchrun --nproc_per_node N -m cli.mvmodel_app train ...` (gloo on CPUs,
    NCCL on GPUs).
    """
    from mvmodel.checkpoint import CheckpointError
    from mvmodel.config import load_config
    from mvmodel.train.loop import TrainingDiverged, train

    cfg = run_or_fail(lambda: load_config(config, list(ctx.args)))
    try:
        summary = run_or_fail(lambda: train(shards, out, cfg, resume=resume, echo=typer.echo))
    except TrainingDiverged as exc:
        fail(str(exc), code=1)
    except CheckpointError as exc:
        fail(str(exc))
    typer.echo(
        f"trained {summary.steps} steps ({summary.epochs:.2f} epochs, {summary.samples_seen} "
        f"samples seen); final loss {summary.last_loss:.4f}"
    )
    agree = summary.last_agreement
    if agree:
        typer.echo(
            "agreement with held-back labels (measurement): pseudo-labels "
            f"{agree.get('pseudo/overall', float('nan')):.3f}, image zero-shot "
            f"{agree.get('image/overall', float('nan')):.3f}, geometric prior "
            f"{agree.get('prior/overall', float('nan')):.3f}"
        )
    typer.echo(
        f"wrote {summary.run_dir}/: model.safetensors, prototypes.safetensors, config.yaml, "
        "log.jsonl, curves.png, checkpoints/"
    )


def plot_cmd(
    run: Path = typer.Argument(..., help="Run directory of `mvmodel train`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="PNG path (default RUN/curves.png)."),
) -> None:
    """Draw a run's loss, temperature, pseudo-label and agreement curves to a PNG."""
    from mvmodel.train.plot import plot_run

    path = run_or_fail(lambda: plot_run(run, out))
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(train_cmd)
    app.command("plot")(plot_cmd)
