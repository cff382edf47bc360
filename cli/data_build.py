"""``mvdata build`` and ``mvdata finalize``: raw dataset -> rendered multiview shards."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli.common import escape, fail, run_or_fail
from mvdata.build.config import BuildConfig, parse_views, read_subject_folds
from mvdata.build.driver import BuildError, build, finalize, worker_from_env

#: BuildConfig fields -> the options that set them, where the names differ.
OPTIONS = {
    "num_folds": "--folds",
    "source_root": "SOURCE_ROOT",
    "subject_folds": "--folds-from",
}


def build_cmd(
    source_root: Path = typer.Argument(
        ..., help="Root folder of the raw dataset, in its native layout."
    ),
    out: str = typer.Argument(..., help="Output directory or fsspec URL for the shards."),
    source: str = typer.Option(
        "synthetic", "--source", "-s", help="Reader name (see `mvdata sources`)."
    ),
    kind: str = typer.Option(
        "static", help="static: one frame a sample; sequence: clips of frames."
    ),
    views: str = typer.Option(
        "0,0;-20,0;20,0", help="Camera rig as 'yaw,pitch;...' in degrees (paper: 0, -20, +20 yaw)."
    ),
    modalities: str = typer.Option(
        "rgb,depth,normal",
        help="Comma-separated: rgb, depth, normal (the model's default uses all three).",
    ),
    image_size: int = typer.Option(224, help="Rendered image size in pixels (square)."),
    clip_frames: int = typer.Option(8, help="Frames per clip for --kind sequence."),
    clip_sampling: str = typer.Option(
        "uniform", help="uniform, or motion: around the frame of largest motion."
    ),
    samples_per_shard: int = typer.Option(256, help="Samples per tar shard."),
    folds: int = typer.Option(10, help="Subject-independent folds assigned at plan time."),
    seed: int = typer.Option(0, help="Seed of the global shuffle and the fold assignment."),
    folds_from: Path | None = typer.Option(
        None,
        help="Subject -> fold from a file instead of the seeded assignment: an earlier build's "
        "manifest.parquet (its folds), or a CSV with columns subject,fold (folds from 0).",
    ),
    split: str = typer.Option("train", help="Split name in shard file names."),
    jpeg_quality: int = typer.Option(90, help="JPEG quality of RGB views."),
    name: str = typer.Option("", help="Dataset name (default: '<dataset>-multiview')."),
    workers: int = typer.Option(0, help="Worker processes (0: all cores)."),
    mode: str = typer.Option(
        "resume", help="resume: keep committed shards; overwrite: start again."
    ),
    max_failed_fraction: float = typer.Option(
        0.05, help="Exit non-zero when more samples than this fail."
    ),
    worker_rank: int = typer.Option(
        -1,
        help="This machine's part of a multi-machine build (default: from torchrun/Slurm env, else 0).",
    ),
    num_workers: int = typer.Option(
        -1, help="Number of machines sharing the build (default: from env, else 1)."
    ),
) -> None:
    """Render every item of a raw dataset from several views into sharded WebDataset tars."""
    if workers < 0:
        fail(f"--workers must be 0 (all cores) or more, got {workers}")
    if num_workers == 0 or num_workers < -1:
        fail(f"--num-workers must be at least 1, got {num_workers}")
    if worker_rank < -1:
        fail(f"--worker-rank must be 0 or more, got {worker_rank}")
    env_rank, env_count = 0, 1
    if num_workers < 0 or worker_rank < 0:
        env_rank, env_count = run_or_fail(worker_from_env)
    rank = env_rank if worker_rank < 0 else worker_rank
    count = env_count if num_workers < 0 else num_workers
    if not 0 <= rank < count:
        fail(f"--worker-rank {rank} is not within 0..{count - 1} (--num-workers {count})")
    rig = run_or_fail(lambda: parse_views(views))
    mods = tuple(m.strip() for m in modalities.split(",") if m.strip())
    given = run_or_fail(lambda: read_subject_folds(folds_from)) if folds_from else None
    # One validation of every setting, each bad value named (pydantic checks the literals too).
    cfg = run_or_fail(
        lambda: BuildConfig.model_validate(
            dict(
                source=source,
                source_root=str(source_root.resolve()),
                kind=kind,
                views=rig,
                modalities=mods,
                image_size=image_size,
                clip_frames=clip_frames,
                clip_sampling=clip_sampling,
                samples_per_shard=samples_per_shard,
                num_folds=folds,
                seed=seed,
                split=split,
                jpeg_quality=jpeg_quality,
                name=name,
                subject_folds=given,
                folds_from=str(folds_from or ""),
            )
        ),
        options=OPTIONS,
    )
    if not 0 <= max_failed_fraction <= 1:
        fail("--max-failed-fraction must be within 0..1")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("build samples", total=None, rate="")

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f} samples/s")

        try:
            summary = run_or_fail(
                lambda: build(
                    cfg,
                    out,
                    mode=mode,
                    workers=workers or os.cpu_count(),
                    worker_rank=rank,
                    num_workers=count,
                    progress=progress,
                    notice=lambda line: bar.console.print(
                        f"[bold red]warning:[/bold red] {escape(line)}; stop it (Ctrl-C) and "
                        f"look with `mvdata inspect {escape(cfg.source_root)} --source "
                        f"{escape(cfg.source)}`, or let it run",
                        highlight=False,
                    ),
                )
            )
        except BuildError as exc:
            fail(str(exc), code=1)
    console = Console(stderr=False)
    table = Table(title=f"mvdata build -> {escape(out)}")
    table.add_column("what")
    table.add_column("value", justify="right")
    rate = summary.num_written / summary.wall_seconds if summary.wall_seconds else 0.0
    for k, v in [
        (
            "shards (this worker built / already done / total)",
            f"{summary.shards_built} / {summary.shards_skipped} / {summary.num_shards}",
        ),
        ("samples written", str(summary.num_written)),
        ("samples failed", str(summary.num_failed)),
        ("files the reader skipped", str(len(summary.scan_errors))),
        ("wall time", f"{summary.wall_seconds:.1f} s ({rate:.1f} samples/s)"),
        (
            "root files written",
            "yes" if summary.finalized else "no (run `mvdata finalize` when all workers are done)",
        ),
    ]:
        table.add_row(k, v)
    for kind_, n in sorted(summary.errors.items()):
        table.add_row(f"errors: {escape(kind_)}", str(n))
    console.print(table)
    if summary.num_failed:
        typer.echo(
            f"failed samples and their reasons: rows with status 'failed' in {out}/data/*.parquet",
            err=True,
        )
    for err in summary.scan_errors[:10]:
        typer.echo(f"  skipped {err}", err=True)
    for line in summary.warnings:
        typer.echo(f"warning (before rendering): {line}", err=True)
    if summary.failed_fraction > max_failed_fraction:
        fail(
            f"{summary.failed_fraction:.1%} of the inputs failed (limit {max_failed_fraction:.1%})",
            code=1,
        )


def finalize_cmd(
    out: str = typer.Argument(..., help="Shard directory of a multi-worker build."),
) -> None:
    """Write the root files (manifest, sizes, dataset.json, card) once every worker is done."""
    meta = run_or_fail(lambda: finalize(out))
    typer.echo(f"finalized {out}: {meta.num_samples} samples in {meta.num_shards} shards")


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
    app.command("finalize")(finalize_cmd)
