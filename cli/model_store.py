"""``mvmodel embed``, ``mvmodel search similar|text`` and ``mvmodel classify``: parse, call one
library function (``mvmodel.store``), print a table, JSON or a PNG path.

``search similar --mesh FILE`` is the one place both halves meet: the mesh is rendered into a
one-sample shard directory with the table's dataset rig by the data half
(:func:`mvdata.build.query.mesh_shards`; the model half may not render), then embedded and
searched by the model half (:func:`mvmodel.store.mesh_query.similar_to_shards`).
"""

from __future__ import annotations

import json
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli.common import escape, fail, run_or_fail

search_app = typer.Typer(
    help="Nearest neighbours in an embeddings table: of a stored sample, a mesh, or a text.",
    no_args_is_help=True,
)


class Format(StrEnum):
    table = "table"
    json = "json"
    png = "png"


def _storage_options(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` options for LanceDB's object store (``aws_endpoint=http://...``)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--storage-option {pair!r}: write KEY=VALUE (e.g. aws_region=us-east-1)")
        out[key.strip()] = value.strip()
    return out


DB = typer.Option(..., "--db", help="LanceDB directory or object-store URI (s3://bucket/path).")
TABLE = typer.Option(..., "--table", help="Table name.")
STORAGE = typer.Option(
    None,
    "--storage-option",
    help="Object-store option KEY=VALUE (repeat): aws_endpoint, aws_region, allow_http, ...",
)
MODEL = typer.Option(
    None,
    "--model",
    help="The run (or weights) that made the table; default: the one the table records.",
)
WHERE = typer.Option(
    None, "--where", help="SQL filter applied before the search, e.g. \"subject != 'F0001'\"."
)
LIMIT = typer.Option(10, "--limit", "-n", min=1, help="Hits to return.")
FORMAT = typer.Option(Format.table, "--format", help="table, json, or png (a strip of the hits).")
PNG_OUT = typer.Option(Path("hits.png"), "--png-out", help="Where --format png writes.")


def _open(db: str, table: str, storage: list[str] | None) -> tuple[Any, Any]:
    from mvmodel.store.table import connect, open_table

    opts = _storage_options(storage)
    return run_or_fail(lambda: open_table(connect(db, opts), table, db))


def _print_hits(
    hits: list[dict[str, Any]],
    fmt: Format,
    png_out: Path,
    title: str,
    query: dict[str, Any] | None = None,
) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(hits, indent=2, default=str))
        return
    if fmt is Format.png:
        from mvmodel.store.render import hits_png

        if not hits:
            fail("no hits: nothing to draw", code=1)
        path = run_or_fail(lambda: hits_png(hits, str(png_out), query))
        typer.echo(f"wrote {path} ({len(hits)} hits)")
        return
    out = Table(title=title)
    for col in ("#", "key", "subject", "label (eval)", "pseudo-label", "similarity", "shard"):
        out.add_column(col, justify="right" if col in ("#", "similarity") else "left")
    for i, h in enumerate(hits, 1):
        pseudo = f"{h.get('pseudo_label')} ({float(h.get('pseudo_confidence') or 0):.2f})"
        out.add_row(
            str(i),
            escape(str(h["key"])),
            escape(str(h.get("subject"))),
            escape(str(h.get("expression"))),
            escape(pseudo),
            f"{h['similarity']:.4f}",
            escape(str(h.get("shard"))),
        )
    Console(width=140).print(out)
    if not hits:
        typer.echo("no hits")


def embed_cmd(
    model: str = typer.Argument(..., help="Run directory, checkpoint directory or weights file."),
    shards: str = typer.Argument(..., help="Shard directory written by `mvdata build`."),
    db: str = DB,
    table: str = TABLE,
    per_view: bool = typer.Option(False, "--per-view", help="Also store per-view embeddings."),
    redo: bool = typer.Option(
        False, "--redo", help="Embed samples already in the table again (replacing their rows)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Samples per model batch."),
    storage: list[str] | None = STORAGE,
) -> None:
    """Embed every sample of SHARDS with a trained model into a LanceDB table (merge by key:
    the same checkpoint again replaces its rows; a killed run resumes where it stopped)."""
    from mvmodel.store.embed import embed_to_table

    opts = _storage_options(storage)
    with Progress(
        TextColumn("embed"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("embed", total=None)
        summary = run_or_fail(
            lambda: embed_to_table(
                model,
                shards,
                db,
                table,
                per_view=per_view,
                redo=redo,
                batch_size=batch_size,
                storage_options=opts,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        )
    typer.echo(
        f"embedded {summary.samples} samples into {db} table {table!r}: {summary.written} "
        f"written, {summary.skipped} already there; {summary.rows_in_table} rows "
        f"(model {summary.model_id}, checkpoint {summary.checkpoint_sha256[:12]}) in "
        f"{summary.seconds:.1f} s; {summary.index}"
    )


@search_app.command("similar")
def similar_cmd(
    db: str = DB,
    table: str = TABLE,
    key: str | None = typer.Option(None, "--key", help="A stored sample's key."),
    mesh: Path | None = typer.Option(
        None, "--mesh", help="A mesh file (OBJ/PLY/WRL), rendered with the dataset's rig."
    ),
    shards: str | None = typer.Option(
        None,
        "--shards",
        help="With --mesh: the shard directory whose rig to use (default: the table's).",
    ),
    where: str | None = WHERE,
    limit: int = LIMIT,
    fmt: Format = FORMAT,
    png_out: Path = PNG_OUT,
    model: str | None = MODEL,
    storage: list[str] | None = STORAGE,
) -> None:
    """The nearest samples to a stored sample (--key, itself left out) or to a mesh (--mesh)."""
    from mvmodel.store.search import row_of, similar

    if (key is None) == (mesh is None):
        fail("give exactly one of --key or --mesh")
    tbl, info = _open(db, table, storage)
    if key is not None:
        hits = run_or_fail(lambda: similar(tbl, key, where=where, limit=limit))
        query = run_or_fail(lambda: row_of(tbl, key)) if fmt is Format.png else None
        _print_hits(hits, fmt, png_out, f"nearest to {key}", query)
        return
    assert mesh is not None
    from mvdata.build.query import mesh_shards
    from mvmodel.store.mesh_query import first_sample, reference_shards, similar_to_shards

    like = shards or run_or_fail(lambda: reference_shards(tbl))
    with tempfile.TemporaryDirectory(prefix="mvmodel-mesh-") as tmp:
        query_dir = run_or_fail(lambda: mesh_shards(mesh, like, str(Path(tmp) / "query")))
        hits = run_or_fail(
            lambda: similar_to_shards(tbl, info, query_dir, model=model, where=where, limit=limit)
        )
        # the PNG shows the mesh as rendered for the query first (read before it is deleted)
        query = first_sample(query_dir) if fmt is Format.png else None
        _print_hits(hits, fmt, png_out, f"nearest to {mesh.name}", query)


@search_app.command("text")
def text_cmd(
    text: str = typer.Argument(..., help='A description, e.g. "a face showing surprise".'),
    db: str = DB,
    table: str = TABLE,
    where: str | None = WHERE,
    limit: int = LIMIT,
    fmt: Format = FORMAT,
    png_out: Path = PNG_OUT,
    model: str | None = MODEL,
    storage: list[str] | None = STORAGE,
) -> None:
    """Zero-shot text → face: the samples nearest to TEXT through the model's text tower."""
    from mvmodel.store.search import text_search

    tbl, info = _open(db, table, storage)
    hits = run_or_fail(lambda: text_search(tbl, info, text, model=model, where=where, limit=limit))
    _print_hits(hits, fmt, png_out, f"nearest to {text!r}")


def classify_cmd(
    db: str = DB,
    table: str = TABLE,
    where: str | None = typer.Option(None, "--where", help="Classify only the matching rows."),
    model: str | None = MODEL,
    storage: list[str] | None = STORAGE,
) -> None:
    """Zero-shot classification of the stored embeddings with the run's prompt prototypes,
    written back into the columns zero_shot_label and zero_shot_confidence."""
    from mvmodel.store.search import classify

    tbl, info = _open(db, table, storage)
    summary = run_or_fail(lambda: classify(tbl, info, model=model, where=where))
    counts = ", ".join(f"{c} {summary.counts.get(c, 0)}" for c in summary.classes)
    typer.echo(f"classified {summary.rows} rows of {table!r} (zero_shot_label): {counts}")


def register(app: typer.Typer) -> None:
    """Add ``embed``, ``search`` and ``classify`` to ``app``."""
    app.command("embed")(embed_cmd)
    app.add_typer(search_app, name="search")
    app.command("classify")(classify_cmd)
