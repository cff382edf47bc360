"""``mvdata loader-bench DIR``: read batches from a shard directory and print the throughput."""

from __future__ import annotations

import typer

from cli.common import fail, run_or_fail


def register(app: typer.Typer) -> None:
    """Add ``loader-bench`` to the ``mvdata`` app."""

    @app.command("loader-bench")
    def loader_bench(
        data_dir: str = typer.Argument(
            ..., help="Shard directory (with dataset.json): a path or an fsspec URL"
        ),
        backend: str = typer.Option("auto", help="auto | dali | wds"),
        batch_size: int = typer.Option(32, min=1, help="Samples per batch"),
        steps: int = typer.Option(50, min=1, help="Batches to time (after 2 warm-up batches)"),
        workers: int = typer.Option(2, min=0, help="DALI threads / DataLoader workers"),
        device: str = typer.Option("auto", help="auto | cpu | cuda"),
        eval_mode: bool = typer.Option(False, "--eval", help="No shuffle, no augmentation"),
        no_depth: bool = typer.Option(False, "--no-depth", help="Skip depth members"),
        no_normals: bool = typer.Option(False, "--no-normals", help="Skip normal-map members"),
    ) -> None:
        """Print samples/s and images/s of a loader over DATA_DIR."""
        from mvdata.loaders import LoaderDataError, benchmark

        if backend not in ("auto", "dali", "wds"):
            raise typer.BadParameter("backend must be auto, dali or wds")
        try:
            r = run_or_fail(
                lambda: benchmark(
                    data_dir,
                    backend=backend,  # type: ignore[arg-type]
                    batch_size=batch_size,
                    steps=steps,
                    num_workers=workers,
                    device=device,
                    train=not eval_mode,
                    with_depth=not no_depth,
                    with_normals=not no_normals,
                )
            )
        except LoaderDataError as exc:  # bad data met while reading: named by the loader
            fail(str(exc), code=1)
        typer.echo(
            f"{r['backend']}: {r['samples']} samples in {r['seconds']:.2f} s: "
            f"{r['samples_per_s']:.1f} samples/s, {r['images_per_s']:.1f} images/s"
            + (f"; {r['errors']} bad samples skipped" if r["errors"] else "")
        )
