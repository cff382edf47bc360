"""``mvdata sources`` and ``mvdata inspect``: what readers exist and what one sees in a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from cli.common import run_or_fail

if TYPE_CHECKING:
    from mvdata.sources.relations import RelationTally


def register(app: typer.Typer) -> None:
    """Add the ``sources`` and ``inspect`` commands to ``app``."""

    @app.command("sources")
    def sources() -> None:
        """List the dataset readers with their descriptions and licences."""
        from mvdata.sources import list_sources

        table = Table(title="dataset sources", show_lines=True)
        for col in ("name", "description", "licence"):
            table.add_column(col, overflow="fold")
        for s in list_sources():
            table.add_row(escape(s.name), escape(s.description), escape(s.licence))
        Console().print(table)

    @app.command("inspect")
    def inspect(
        path: Path = typer.Argument(..., help="dataset root in the source's native layout"),
        source: str = typer.Option(
            ..., "--source", "-s", help="reader name (see `mvdata sources`)"
        ),
        check: bool = typer.Option(
            True, "--check/--no-check", help="load every frame (slow on a full dataset)"
        ),
        max_errors: int = typer.Option(50, help="list at most this many unreadable files"),
        json_out: Path | None = typer.Option(
            None,
            "--json",
            help="also write the whole report as JSON here (every unreadable file, each "
            "check's counts and verdict): the file to attach to an issue about a dataset",
        ),
    ) -> None:
        """Show what a reader sees: counts per subject, expression, intensity; frames per
        sequence; the conventions it assumes (verified, reported or a guess); with --check, the
        landmark mapping, the file axes and the texture orientation tested on each frame's
        geometry and texture; the files it could not read and why."""
        from mvdata.sources.inspect import inspect_dataset

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("loading frames", total=None)
            rep = run_or_fail(
                lambda: inspect_dataset(
                    path,
                    source,
                    check=check,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            )
        con = Console()
        if json_out is not None:
            from mvdata.io import atomic_write_json

            run_or_fail(lambda: atomic_write_json(json_out, rep.as_dict()))
        con.print(
            f"[bold]{escape(rep.source)}[/bold] at {escape(str(rep.root))}: {rep.num_items} items "
            f"({dict(rep.kinds)}), {rep.num_frames} frames"
            + (f", {rep.frames_checked} loaded" if check else "")
            + f", {len(rep.errors)} errors"
        )
        for title, counter in (
            ("subject", rep.subjects),
            ("expression", rep.expressions),
            ("intensity", rep.intensities),
        ):
            t = Table(title=f"items per {title}")
            t.add_column(title)
            t.add_column("items", justify="right")
            for k, v in sorted(counter.items()):
                t.add_row(escape(str(k)), str(v))
            con.print(t)
        if rep.frames_per_sequence:
            n = sorted(rep.frames_per_sequence.values())
            con.print(
                f"frames per sequence: {len(n)} sequences, min {n[0]}, "
                f"median {n[len(n) // 2]}, max {n[-1]}"
            )
        if rep.conventions:
            from mvdata.sources.conventions.status import STATUS_TEXT

            t = Table(
                title=f"conventions: what the {rep.source} reader assumes about the files",
                show_lines=True,
            )
            for col in ("convention", "status", "assumption", "basis"):
                t.add_column(col, overflow="fold")
            for c in rep.conventions:
                status = STATUS_TEXT[c.status]
                shown = f"[bold red]{status}[/bold red]" if c.status == "guess" else status
                t.add_row(escape(c.topic), shown, escape(c.assumption), escape(c.basis))
            con.print(t)
            guesses = sum(c.status == "guess" for c in rep.conventions)
            if guesses:
                con.print(
                    f"{guesses} of these are guesses: check them against your files "
                    "(a wrong one shows as upside-down textures or bad landmarks in the views, "
                    "or as most files listed unreadable for one reason below)."
                )
        if rep.landmark_layout.frames:
            _print_landmark_layout(con, rep.landmark_layout)
        if rep.face_orientation.frames:
            _print_face_orientation(con, rep.face_orientation, rep.source)
        if rep.texture_orientation.frames:
            _print_texture_orientation(con, rep.texture_orientation, rep.source)
        if rep.errors:
            t = Table(title=f"unreadable files ({dict(rep.error_kinds)})")
            for col in ("path", "kind", "reason"):
                t.add_column(col, overflow="fold")
            for e in rep.errors[:max_errors]:
                t.add_row(escape(e.path), escape(e.kind), escape(e.message))
            con.print(t)


def _relation_table(lay: RelationTally, group: str, title: str) -> Table:
    """One group of a tally: each relation tested, on how many frames it held, failed or could
    not be told, and the first file it failed on."""
    t = Table(title=title, show_lines=True)
    for col in ("relation", "held", "failed", "undetermined", "first file it failed on"):
        t.add_column(col, overflow="fold")
    for relation, what in lay.relations.items():
        key = (group, relation)
        if lay.held[key] + lay.failed[key] + lay.undetermined[key] == 0:
            continue  # tested on no frame (a relation for frames with landmarks, say)
        t.add_row(
            f"{escape(relation)}: {escape(what)}",
            str(lay.held[key]),
            str(lay.failed[key]),
            str(lay.undetermined[key]),
            escape(lay.first_failure.get(key, "")),
        )
    return t


def _print_landmark_layout(con: Console, lay: RelationTally) -> None:
    """The landmark mapping tested on the files' geometry, one table per naming scheme."""
    from schemas.landmarks import MAPPING_STATUS

    for scheme in lay.groups():
        status = MAPPING_STATUS.get(scheme, "unknown")
        title = (
            f"landmark layout: the {scheme} mapping ({status}) tested on the geometry of "
            f"{lay.frames[scheme]} frames"
        )
        con.print(_relation_table(lay, scheme, title))
        bad = lay.disagreeing(scheme)
        if bad:
            con.print(
                f"[bold red]the {scheme} mapping disagrees with these files' geometry[/bold red] "
                f"({', '.join(bad)} failed on more frames than they held): the geometric prior "
                "reads these points through it, so its pseudo-labels would be wrong. Compare "
                "schemas/landmarks.py with the dataset's documentation."
            )
        else:
            con.print(
                f"the {scheme} mapping agrees with these files' geometry: a test of the "
                "mapping, not a proof (a swap of two similar points can pass it)."
            )


def _print_face_orientation(con: Console, tally: RelationTally, source: str) -> None:
    """The file axes tested on the frames' shapes: the relations as read, how many frames each
    other axis convention fits, and the verdict."""
    from mvdata.sources.face_orientation import AS_READ, axis_verdict

    n = tally.frames[AS_READ]
    title = f"face orientation in the files' axes: tested on the shapes of {n} frames"
    con.print(_relation_table(tally, AS_READ, title))
    fits = ", ".join(f"{escape(g)} {tally.all_held[g]}" for g in tally.groups())
    con.print(f"frames with a frontal, upright nose under each axis convention: {fits}")
    verdict, best = axis_verdict(tally)
    if verdict == "differs":
        con.print(
            f"[bold red]these files look {escape(best)}, not y up facing +z as the {source} "
            "reader reads them[/bold red]: every view of these scans would show the face "
            "turned that way. Report it with one file."
        )
    elif verdict == "unclear":
        con.print(
            "[bold red]most frames show no frontal, upright nose under any axis convention "
            "tried[/bold red] (scans turned far from frontal, or not faces): look at a contact "
            "sheet of a build (`mvdata info SHARDS --contact-sheet PNG`)."
        )
    else:
        con.print(
            f"the {source} reader's axes agree with these files: on most frames the nose points "
            "along +z with +y up, as the renderer's frontal camera expects."
        )


def _print_texture_orientation(con: Console, tex: RelationTally, source: str) -> None:
    """The texture convention tested on the files' textures, as read and with v flipped."""
    from mvdata.sources.texture_orientation import texture_verdict

    n = tex.frames["as read"]
    for group in tex.groups():
        title = f"texture orientation ({group}): tested on the textures of {n} frames"
        con.print(_relation_table(tex, group, title))
    verdict = texture_verdict(tex)
    if verdict == "flipped":
        con.print(
            f"[bold red]the {source} reader's texture v disagrees with these files[/bold red]: "
            "the lips and eyes sample where they are on more frames with v flipped than as "
            "read (without landmarks: the reddest vertices lie below the nose only with v "
            "flipped), so every view would be rendered with its texture upside down. Report it "
            "with one file."
        )
    elif verdict == "unclear":
        con.print(
            f"[bold red]the textures of these files do not show lips and eyes where the "
            f"{source} reader's UVs point[/bold red] on most frames, as read or flipped: look at "
            "a contact sheet of a build (`mvdata info SHARDS --contact-sheet PNG`)."
        )
    else:
        con.print(
            f"the {source} reader's texture v agrees with these files: the lips and eyes "
            "sample where the landmarks (or, without landmarks, the nose) say they are on more "
            "frames as read than flipped."
        )
