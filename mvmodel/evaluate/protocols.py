"""Evaluation protocols: which samples are evaluated, and the subject-independent folds.

Every protocol is subject-independent: a subject's samples all sit in one fold, and a classifier
fitted for a test fold never sees a sample of that fold's subjects (:meth:`Selection.splits`
checks it for every split it hands out). The folds are the ones ``mvdata build`` stored in each
sample's json (``fold``), or the selected subjects dealt again into ``num_folds`` folds with a
seed (the BU-3DFE protocol's 60 subjects in 10 folds of 6).

Two modes:

* ``cv`` — k-fold cross-validation over every fold. The representation itself was trained
  without labels on every subject (transductive: the test subjects' images, never their labels,
  were seen in training); each classifier is fitted on the training folds only.
* ``holdout`` — for runs trained with ``data.exclude_folds``: those folds are the test folds and
  nothing else is tested; classifiers are fitted on the other folds' samples, the subjects the
  representation saw.

Presets: ``all`` (every sample whose label is one of the classes, the build's folds),
``bu3dfe`` (the common BU-3DFE protocol: static scans, 60 subjects, the two highest intensities,
six expressions, 10 folds), ``bu4dfe`` (sequence level, as BU-4DFE is evaluated: one 4D clip =
one sample, six expressions, the build's folds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EXPRESSIONS",
    "PRESETS",
    "Mode",
    "Protocol",
    "Selection",
    "Split",
    "make_protocol",
    "sample_table",
    "select",
]

#: The six basic expressions, in the prompt bank's default class order.
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

Mode = Literal["cv", "holdout"]


class Protocol(BaseModel):
    """Which samples an evaluation uses and how they are folded (frozen; validated once)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "all"
    #: Classes, in the order of the reported confusion matrices; samples of other labels are left out.
    classes: tuple[str, ...] = EXPRESSIONS
    #: Keep samples of these intensities (``None``: any, including samples without one).
    intensities: tuple[int, ...] | None = None
    #: ``static`` scans, 4D ``sequence`` clips, or ``None`` for whatever the shards hold.
    kind: Literal["static", "sequence"] | None = None
    #: Evaluate this many subjects, chosen with ``seed`` (``None``: every subject).
    num_subjects: int | None = Field(default=None, ge=2)
    #: Evaluate exactly these subjects (wins over ``num_subjects``).
    subjects: tuple[str, ...] | None = None
    #: ``None``: the folds ``mvdata build`` stored; k: the selected subjects dealt into k folds.
    num_folds: int | None = Field(default=None, ge=2)
    #: Seed of the subject choice and of re-dealt folds.
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> Protocol:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be two or more distinct names, got {self.classes}")
        return self

    def describe(self, *, holdout: bool = False) -> str:
        """One line for the report. ``holdout``: the folds are the stored ones whatever
        ``num_folds`` says (:func:`select` re-deals folds in ``cv`` mode only)."""
        parts = [
            f"classes {', '.join(self.classes)}",
            "intensities "
            + ("any" if self.intensities is None else ",".join(map(str, self.intensities))),
            f"kind {self.kind or 'any'}",
            "subjects "
            + (
                f"{len(self.subjects)} listed"
                if self.subjects
                else (
                    "all"
                    if self.num_subjects is None
                    else f"{self.num_subjects} (seed {self.seed})"
                )
            ),
            "folds "
            + (
                "as built"
                if self.num_folds is None
                else (
                    "as built (holdout mode: the runs' held-out folds; "
                    f"{self.num_folds} re-dealt folds apply in cv mode only)"
                    if holdout
                    else f"{self.num_folds} (re-dealt, seed {self.seed})"
                )
            ),
        ]
        return f"{self.name}: " + "; ".join(parts)


#: The presets (``--protocol``); any field can be overridden (:func:`make_protocol`).
PRESETS: dict[str, Protocol] = {
    "all": Protocol(name="all"),
    "bu3dfe": Protocol(
        name="bu3dfe", kind="static", intensities=(3, 4), num_subjects=60, num_folds=10
    ),
    "bu4dfe": Protocol(name="bu4dfe", kind="sequence"),
}


def make_protocol(preset: str = "all", **overrides: Any) -> Protocol:
    """A preset with the given fields replaced (``None`` too: ``num_subjects=None`` = every
    subject); the name stays the preset's."""
    if preset not in PRESETS:
        raise ValueError(f"unknown protocol {preset!r}: choose from {', '.join(PRESETS)}")
    base = PRESETS[preset].model_dump()
    base.update(overrides)
    return Protocol.model_validate(base)


# --------------------------------------------------------------------------- samples
_TABLE_SCHEMA = {
    "key": pl.String,
    "dataset": pl.String,
    "subject": pl.String,
    "sequence": pl.String,
    "kind": pl.String,
    "fold": pl.Int64,
    "expression": pl.String,
    "intensity": pl.Int64,
}


def sample_table(samples: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per sample (parsed json members): key, dataset, subject, sequence, kind, fold,
    expression, intensity. Labels are read here for evaluation only."""
    rows: dict[str, list[Any]] = {k: [] for k in _TABLE_SCHEMA}
    for s in samples:
        labels = s.get("labels") or {}
        rows["key"].append(str(s["key"]))
        rows["dataset"].append(str(s.get("dataset", "")))
        rows["subject"].append(str(s.get("subject", "")))
        rows["sequence"].append(str(s.get("sequence", "")))
        rows["kind"].append(str(s.get("kind", "static")))
        rows["fold"].append(int(s.get("fold", -1)))
        rows["expression"].append(labels.get("expression"))
        intensity = labels.get("intensity")
        rows["intensity"].append(None if intensity is None else int(intensity))
    df = pl.DataFrame(rows, schema=_TABLE_SCHEMA)
    if df["key"].n_unique() != len(df):
        dup = df.filter(pl.col("key").is_duplicated())["key"].unique().sort().to_list()[:5]
        raise ValueError(f"duplicate sample keys: {dup}")
    return df


# --------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class Split:
    """One test fold: indices into the selection (training and test never share a subject)."""

    fold: int
    train: np.ndarray
    test: np.ndarray


@dataclass
class Selection:
    """The evaluated samples (sorted by key), their labels, groups and evaluation folds."""

    protocol: Protocol
    mode: Mode
    table: pl.DataFrame
    #: Class index of each sample (into ``protocol.classes``).
    label: np.ndarray
    #: ``dataset/subject`` of each sample: the unit that never crosses a split.
    group: np.ndarray
    #: The evaluation fold of each sample.
    fold: np.ndarray
    #: Intensity of each sample (-1 where the source has none).
    intensity: np.ndarray
    #: The folds tested: every fold (``cv``) or the held-out ones (``holdout``).
    test_folds: tuple[int, ...]
    #: What was left out and why (counts).
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.table["key"].to_list())

    @property
    def classes(self) -> tuple[str, ...]:
        return self.protocol.classes

    def __len__(self) -> int:
        return len(self.label)

    def test_mask(self) -> np.ndarray:
        """Samples of a test fold."""
        return np.isin(self.fold, self.test_folds)

    def splits(self) -> Iterator[Split]:
        """The test folds in order, each with the samples a classifier may be fitted on.

        ``cv``: the other folds. ``holdout``: the folds that are not held out (never another
        held-out fold: the representation did not see those subjects either). Raises
        ``AssertionError`` if a subject were on both sides (impossible by construction: folds
        are assigned per subject; checked anyway for every split).
        """
        held = np.isin(self.fold, self.test_folds)
        for f in self.test_folds:
            test = np.flatnonzero(self.fold == f)
            train = (
                np.flatnonzero(~held) if self.mode == "holdout" else np.flatnonzero(self.fold != f)
            )
            shared = set(self.group[train].tolist()) & set(self.group[test].tolist())
            if shared:
                raise AssertionError(
                    f"fold {f}: subjects {sorted(shared)[:5]} are in training and test samples"
                )
            yield Split(fold=int(f), train=train, test=test)

    def subjects(self, which: Literal["test", "train", "all"] = "all") -> list[str]:
        """Sorted ``dataset/subject`` ids of the test folds, of the others, or of all."""
        held = self.test_mask()
        if which == "test":
            pick = self.group[held]
        elif which == "train":
            pick = self.group[~held] if self.mode == "holdout" else self.group
        else:
            pick = self.group
        return sorted(set(pick.tolist()))


def _deal(subjects: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """Subjects sorted, shuffled with ``seed`` and dealt round-robin into ``num_folds`` folds
    (folds differ by at most one subject; a subject is in exactly one fold)."""
    ordered = sorted(subjects)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[int(i)]: pos % num_folds for pos, i in enumerate(perm)}


def select(
    table: pl.DataFrame,
    protocol: Protocol,
    *,
    mode: Mode = "cv",
    holdout_folds: Sequence[int] = (),
) -> Selection:
    """The samples ``protocol`` evaluates out of ``table`` (:func:`sample_table`), and their folds.

    ``holdout`` needs ``holdout_folds`` (the runs' ``data.exclude_folds``): those stored folds
    are the test folds, so re-dealing folds does not apply there. Raises ``ValueError`` naming
    what is missing (too few subjects, no sample of a class, an empty selection).
    """
    dropped: dict[str, int] = {}

    def keep(df: pl.DataFrame, expr: pl.Expr, why: str) -> pl.DataFrame:
        out = df.filter(expr)
        if len(out) < len(df):
            dropped[why] = dropped.get(why, 0) + len(df) - len(out)
        return out

    df = table.sort("key")
    if protocol.kind is not None:
        df = keep(df, pl.col("kind") == protocol.kind, f"kind is not {protocol.kind}")
    df = keep(
        df,
        pl.col("expression").is_in(list(protocol.classes)).fill_null(False),
        "label not among the classes",
    )
    if protocol.intensities is not None:
        df = keep(
            df,
            pl.col("intensity").is_in(list(protocol.intensities)).fill_null(False),
            "intensity not in the protocol",
        )
    if df.is_empty():
        raise ValueError(
            f"protocol {protocol.describe()}: no sample of the shards matches "
            f"(left out: {dropped or 'none to begin with'})"
        )
    df = df.with_columns(group=pl.col("dataset") + "/" + pl.col("subject"))
    available = sorted(set(df["subject"].to_list()))
    if protocol.subjects:
        missing = sorted(set(protocol.subjects) - set(available))
        if missing:
            raise ValueError(f"protocol subjects {missing[:5]} have no matching sample")
        chosen = sorted(protocol.subjects)
    elif protocol.num_subjects is not None:
        if protocol.num_subjects > len(available):
            raise ValueError(
                f"protocol {protocol.name} evaluates {protocol.num_subjects} subjects, the shards "
                f"have {len(available)} with matching samples: choose fewer (--subjects N)"
            )
        rng = np.random.default_rng(protocol.seed)
        chosen = sorted(rng.choice(available, size=protocol.num_subjects, replace=False).tolist())
    else:
        chosen = available
    df = keep(df, pl.col("subject").is_in(chosen), "subject not chosen")

    if mode == "holdout":
        if not holdout_folds:
            raise ValueError("holdout mode needs the held-out folds (the runs' data.exclude_folds)")
        test_folds = tuple(sorted({int(f) for f in holdout_folds}))
        present = set(df["fold"].to_list())
        if not set(test_folds) & present:
            raise ValueError(
                f"held-out folds {list(test_folds)} hold no sample of protocol "
                f"{protocol.name} (folds present: {sorted(present)})"
            )
        test_folds = tuple(f for f in test_folds if f in present)
        if present <= set(test_folds):
            raise ValueError("every selected sample is held out: nothing to fit a classifier on")
    else:
        if protocol.num_folds is not None:
            subjects = sorted(set(df["group"].to_list()))
            if protocol.num_folds > len(subjects):
                raise ValueError(
                    f"{protocol.num_folds} folds need at least as many subjects; the selection "
                    f"has {len(subjects)}"
                )
            folds = _deal(subjects, protocol.num_folds, protocol.seed)
            df = df.with_columns(fold=pl.col("group").replace_strict(folds, return_dtype=pl.Int64))
        test_folds = tuple(sorted(set(df["fold"].to_list())))
        if len(test_folds) < 2:
            raise ValueError(
                f"cross-validation needs two folds or more, the selection has {test_folds}"
            )

    per_class = df.group_by("expression").len()
    absent = [c for c in protocol.classes if c not in set(per_class["expression"].to_list())]
    if absent:
        raise ValueError(f"protocol {protocol.name}: no sample of class {absent} is selected")
    index = {c: i for i, c in enumerate(protocol.classes)}
    return Selection(
        protocol=protocol,
        mode=mode,
        table=df,
        label=np.asarray([index[e] for e in df["expression"].to_list()], dtype=np.int64),
        group=np.asarray(df["group"].to_list(), dtype=object),
        fold=df["fold"].to_numpy().astype(np.int64),
        intensity=df["intensity"].fill_null(-1).to_numpy().astype(np.int64),
        test_folds=test_folds,
        dropped=dropped,
    )
