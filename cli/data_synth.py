"""``mvdata synth`` and ``mvdata face-model``: the synthetic source and its face model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from cli.common import fail, run_or_fail
from mvdata.synth.facemodel import FaceModelError, download_sfm, resolve_face_model
from mvdata.synth.generate import SynthConfig, expected_mesh_count
from mvdata.synth.writer import check_format, write_synth
from schemas.models import ALL_EXPRESSIONS

#: SynthConfig fields whose option has another name (the others are ``--field-name``), so
#: that a bad value's message names the option the user typed.
OPTION_OF_FIELD = {
    "num_identities": "--identities",
    "num_frames": "--frames",
    "pose_jitter_deg": "--pose-jitter",
    "noise_mm": "--noise",
    "static": "--static/--no-static",
    "sequences": "--sequences/--no-sequences",
    "registered": "--registered/--scan-like",
}


face_model_app = typer.Typer(
    help="The Surrey Face Model behind the synthetic source.", no_args_is_help=True
)


def synth(
    out: Path = typer.Argument(..., help="Output directory (must not exist or be empty)."),
    identities: int = typer.Option(
        10, "--identities", "-n", help="Number of identities (subjects)."
    ),
    expressions: str = typer.Option(
        ",".join(ALL_EXPRESSIONS), help="Comma-separated expressions (neutral + six basic)."
    ),
    intensities: str = typer.Option("1,2,3,4", help="Comma-separated intensity levels (1-4)."),
    static: bool = typer.Option(True, "--static/--no-static", help="Static scans (BU-3DFE style)."),
    sequences: bool = typer.Option(
        False, "--sequences/--no-sequences", help="4D sequences (BU-4DFE style)."
    ),
    registered: bool = typer.Option(
        True,
        "--registered/--scan-like",
        help="Sequences with fixed topology, or re-sampled per frame.",
    ),
    frames: int = typer.Option(50, help="Frames per sequence."),
    fps: float = typer.Option(25.0, help="Frames per second of sequences."),
    pose_jitter: float = typer.Option(0.0, help="Random head rotation, +- degrees per axis."),
    noise: float = typer.Option(0.0, help="Scanner-like noise along normals, sigma in mm."),
    seed: int = typer.Option(0, help="Random seed: same seed, same bytes."),
    texture_size: int = typer.Option(256, help="Albedo texture size in pixels."),
    fmt: str = typer.Option(
        "default",
        "--format",
        help="Layout: default, or a dataset's native layout (bu3dfe, bu4dfe, ...).",
    ),
    mesh_format: str = typer.Option("ply", help="Mesh files of the default layout: ply or obj."),
    face_model: str = typer.Option(
        "auto", help="auto (SFM if found, else procedural), sfm or procedural."
    ),
    face_model_dir: Path | None = typer.Option(
        None,
        help="Directory with the SFM files (else $MVDATA_FACE_MODEL_DIR, else the user cache).",
    ),
    overwrite: bool = typer.Option(False, help="Replace a non-empty output directory."),
) -> None:
    """Generate a synthetic 3D/4D facial-expression set (deterministic from --seed)."""

    def parse_list(text: str, what: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            fail(f"--{what} is empty")
        return items

    try:
        levels = tuple(int(x) for x in parse_list(intensities, "intensities"))
    except ValueError:
        fail(f"--intensities must be integers, got {intensities!r}")
    exprs = tuple(parse_list(expressions, "expressions"))
    cfg = run_or_fail(
        lambda: SynthConfig(
            num_identities=identities,
            expressions=exprs,
            intensities=levels,
            static=static,
            sequences=sequences,
            registered=registered,
            num_frames=frames,
            fps=fps,
            pose_jitter_deg=pose_jitter,
            noise_mm=noise,
            seed=seed,
            texture_size=texture_size,
        ),
        OPTION_OF_FIELD,
    )
    if mesh_format not in ("ply", "obj"):
        fail(f"--mesh-format must be ply or obj, got {mesh_format!r}")
    try:
        check_format(fmt, cfg)  # before the face model is looked for and anything generated
    except ValueError as exc:
        fail(f"--format {fmt}: {exc}")
    try:
        model = resolve_face_model(
            face_model, face_model_dir, echo=lambda m: typer.secho(m, fg="yellow", err=True)
        )
    except FaceModelError as exc:
        fail(str(exc))
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("synth meshes", total=expected_mesh_count(cfg))
        summary = run_or_fail(
            lambda: write_synth(
                cfg,
                model,
                out,
                fmt=fmt,
                mesh_format=mesh_format,  # type: ignore[arg-type]
                overwrite=overwrite,
                progress=lambda n: bar.advance(task, n),
            )
        )
    typer.echo(
        f"wrote {summary.num_meshes} meshes of {summary.num_subjects} subjects "
        f"({summary.fmt} layout, face model: {summary.face_model}) to {summary.out_dir}"
    )
    if summary.num_meshes < summary.num_generated:
        typer.echo(
            f"  {summary.num_generated - summary.num_meshes} of the {summary.num_generated} "
            f"generated meshes do not fit the {summary.fmt} layout and were not written"
        )
    if fmt == "default":
        typer.echo(
            f"  {summary.out_dir}/metadata.parquet  one row per mesh: subject, expression, intensity, "
            "sequence, frame, landmarks\n"
            f"  {summary.out_dir}/static/, sequences/  meshes; textures/  albedo PNGs; synth.json  settings"
        )


@face_model_app.command("download")
def face_model_download(
    target: Path | None = typer.Option(None, help="Directory to fill (default: the user cache)."),
    url: str | None = typer.Option(None, help="Base URL (default: the upstream eos repository)."),
) -> None:
    """Print the Surrey Face Model's terms and download its files (non-commercial use only)."""
    try:
        where = download_sfm(target, base_url=url, echo=typer.echo)
    except (OSError, FaceModelError) as exc:
        fail(f"download failed: {exc}")
    typer.echo(f"face model files in {where}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.add_typer(face_model_app, name="face-model")
