"""``mvdata inspect``: what a reader sees in a dataset root, the files it cannot use, and the
assumptions it makes about them (verified, reported from a real file, or guessed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvdata.core import Item, Mesh, MeshReadError, ReadError
from mvdata.sources.conventions import (
    bosphorus,
    bp4d,
    bu3dfe,
    bu4dfe,
    coma,
    facescape,
    meshdir,
    synthetic,
)
from mvdata.sources.conventions.status import Convention
from mvdata.sources.face_orientation import (
    add_orientation,
    axis_verdict,
    face_looks,
    orientation_tally,
)
from mvdata.sources.landmark_layout import add_layout, frame_scheme, layout_tally
from mvdata.sources.registry import get_source
from mvdata.sources.relations import RelationTally
from mvdata.sources.texture_orientation import add_texture, texture_tally, texture_verdict
from schemas.landmarks import SEMANTIC_SCHEMES

#: Each reader's stated assumptions about its files (see :mod:`mvdata.sources.conventions`).
CONVENTIONS: dict[str, tuple[Convention, ...]] = {
    "bosphorus": bosphorus.CONVENTIONS,
    "bp4d": bp4d.CONVENTIONS,
    "bu3dfe": bu3dfe.CONVENTIONS,
    "bu4dfe": bu4dfe.CONVENTIONS,
    "coma": coma.CONVENTIONS,
    "facescape": facescape.CONVENTIONS,
    "meshdir": meshdir.CONVENTIONS,
    "synthetic": synthetic.CONVENTIONS,
}


def conventions_of(source_name: str) -> tuple[Convention, ...]:
    """The assumptions the named reader makes about its files (empty for a reader added
    without any: a plug-in source states none)."""
    return CONVENTIONS.get(source_name, ())


@dataclass
class InspectReport:
    """What a reader sees in a dataset root."""

    source: str
    root: str
    num_items: int = 0
    num_frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)
    expressions: Counter[str] = field(default_factory=Counter)
    intensities: Counter[str] = field(default_factory=Counter)
    frames_per_sequence: dict[str, int] = field(default_factory=dict)
    errors: list[ReadError] = field(default_factory=list)
    frames_checked: int = 0
    conventions: tuple[Convention, ...] = ()
    #: The landmark mapping tested on each loaded frame's geometry (:mod:`.landmark_layout`).
    landmark_layout: RelationTally = field(default_factory=layout_tally)
    #: The texture-coordinate convention tested on each frame's texture (:mod:`.texture_orientation`).
    texture_orientation: RelationTally = field(default_factory=texture_tally)
    #: The file axes (y up, facing +z) tested on the geometry of each frame the renderer keeps in
    #: them: frames whose landmarks it reads by meaning (ibug, Bosphorus) are turned upright by
    #: them and not counted (:mod:`.face_orientation`).
    face_orientation: RelationTally = field(default_factory=orientation_tally)

    @property
    def error_kinds(self) -> Counter[str]:
        return Counter(e.kind for e in self.errors)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (``mvdata inspect --json``): what to attach to an
        issue about a dataset nobody on the project has, with each check's counts and verdict.
        Verdicts are None where a check saw no frame."""
        verdict, best = axis_verdict(self.face_orientation)
        return {
            "source": self.source,
            "root": self.root,
            "items": self.num_items,
            "frames": self.num_frames,
            "frames_checked": self.frames_checked,
            "kinds": dict(self.kinds),
            "subjects": dict(self.subjects),
            "expressions": dict(self.expressions),
            "intensities": dict(self.intensities),
            "frames_per_sequence": dict(self.frames_per_sequence),
            "conventions": [c._asdict() for c in self.conventions],
            "checks": {
                "landmark_layout": {
                    "tally": self.landmark_layout.as_dict(),
                    "disagreeing": {
                        g: self.landmark_layout.disagreeing(g)
                        for g in self.landmark_layout.groups()
                    },
                },
                "face_orientation": {
                    "tally": self.face_orientation.as_dict(),
                    "verdict": verdict if self.face_orientation.frames else None,
                    "best_convention": best if self.face_orientation.frames else None,
                },
                "texture_orientation": {
                    "tally": self.texture_orientation.as_dict(),
                    "verdict": texture_verdict(self.texture_orientation)
                    if self.texture_orientation.frames
                    else None,
                },
            },
            "error_kinds": dict(self.error_kinds),
            "errors": [{"path": e.path, "kind": e.kind, "message": e.message} for e in self.errors],
        }


def inspect_dataset(
    root: Path,
    source_name: str,
    check: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> InspectReport:
    """Scan ``root`` with the named source and summarise it; with ``check``, load every frame
    too (slow on a full dataset) so unreadable files are listed with their reason, and test the
    landmark mapping on each frame's geometry (:mod:`mvdata.sources.landmark_layout`), the
    file axes on its shape (:mod:`mvdata.sources.face_orientation`) and the texture convention
    on its texture (:mod:`mvdata.sources.texture_orientation`)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    src = get_source(source_name)
    res = src.scan(root)
    rep = InspectReport(
        source=src.name,
        root=str(root),
        errors=list(res.errors),
        conventions=conventions_of(src.name),
    )
    rep.num_items = len(res.items)
    total = sum(it.num_frames for it in res.items)
    done = 0
    for it in res.items:
        rep.kinds[it.kind] += 1
        rep.subjects[it.meta.subject] += 1
        rep.expressions[it.meta.expression or "(none)"] += 1
        rep.intensities["(none)" if it.meta.intensity is None else str(it.meta.intensity)] += 1
        rep.num_frames += it.num_frames
        if it.kind == "sequence":
            rep.frames_per_sequence[it.key] = it.num_frames
        if check:
            for t in range(it.num_frames):
                where = str(root / it.frame_paths[t][0])
                try:
                    mesh = src.load_frame(it, t)
                except MeshReadError as exc:
                    rep.errors.append(exc.as_read_error())
                except Exception as exc:  # noqa: BLE001 - listed like the build's reader-bug
                    msg = f"the reader failed unexpectedly ({type(exc).__name__}: {exc})"
                    rep.errors.append(ReadError(where, "reader-bug", msg))
                else:
                    # outside the try: a bug in the checks is this project's, not the file's
                    _check_frame(rep, where, mesh)
                done += 1
                if progress is not None:
                    progress(done, total)
    return rep


def _check_frame(rep: InspectReport, where: str, mesh: Mesh) -> None:
    """Count one loaded frame in the report's three convention checks."""
    rep.frames_checked += 1
    scheme = None
    if mesh.landmarks is not None and mesh.landmark_names:
        add_layout(rep.landmark_layout, where, mesh.landmark_names, mesh.landmarks)
        scheme = frame_scheme(mesh.landmark_names)
    looks = None
    if scheme not in SEMANTIC_SCHEMES:  # rendered in the file's own axes
        # measured once: the texture check without landmarks reads the same looks
        looks = face_looks(mesh.vertices)
        add_orientation(rep.face_orientation, where, mesh, looks)
    add_texture(rep.texture_orientation, where, mesh, looks)


#: How many frames ``mvdata build`` checks before it renders anything (:func:`spot_check`).
SPOT_CHECK_FRAMES = 24


def spot_check(
    items: Sequence[Item], source_name: str, frames: int = SPOT_CHECK_FRAMES
) -> InspectReport:
    """The convention checks of ``mvdata inspect --check`` on the first frame of up to
    ``frames`` items spread evenly over ``items``: what ``mvdata build`` runs before it renders
    anything, so a dataset whose axes, texture v or landmark order the reader guessed wrong is
    named in seconds, not after hours of upside-down views. Frames that fail to load are left
    to the build, which counts them."""
    src = get_source(source_name)
    rep = InspectReport(source=src.name, root="", conventions=conventions_of(src.name))
    if not items or frames < 1:
        return rep
    step = max(1, len(items) // frames)
    for it in list(items)[::step][:frames]:
        try:
            mesh = src.load_frame(it, 0)
        except Exception:  # noqa: BLE001 - the build loads it again and counts why it failed
            continue
        _check_frame(rep, str(Path(it.root) / it.frame_paths[0][0]), mesh)
    return rep


def convention_warnings(rep: InspectReport) -> list[str]:
    """One line for each check whose verdict goes against the reader's convention on
    ``rep``'s frames (the landmark mapping, the file axes, the texture v); empty when none
    does. The lines name the remedy: look with ``mvdata inspect``."""
    out = []
    n = rep.frames_checked
    for scheme in rep.landmark_layout.groups():
        bad = rep.landmark_layout.disagreeing(scheme)
        if bad:
            out.append(
                f"the {scheme} landmark mapping disagrees with the geometry of these files "
                f"({', '.join(bad)} failed on more of {n} frames than they held): the "
                "geometric prior would read wrong points"
            )
    if rep.face_orientation.frames:
        verdict, best = axis_verdict(rep.face_orientation)
        if verdict == "differs":
            out.append(
                f"these files look {best}, not y up facing +z as the {rep.source} reader reads "
                f"them ({rep.face_orientation.all_held[best]} of {n} frames): every view would "
                "show the face turned that way"
            )
    if rep.texture_orientation.frames and texture_verdict(rep.texture_orientation) == "flipped":
        out.append(
            f"the {rep.source} reader's texture v disagrees with these files: every view would "
            "be rendered with its texture upside down"
        )
    return out
