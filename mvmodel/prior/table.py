"""The prior table: one row per sample, keyed by sample key, computed once per dataset.

``prior_table`` turns parsed sample jsons (the shape of :class:`schemas.models.SampleJson`) into
relative proxies and ``p_geo``; ``write_prior_table``/``read_prior_table`` store it as parquet;
:class:`PriorIndex` (or :func:`lookup`) serves ``p_geo`` rows by key in the training loop
without recomputing anything. This project's design (docs/method.md, "One training step").

Only ``key``, ``dataset``, ``subject``, ``sequence``, ``kind``, ``frames``, ``landmarks``,
``landmark_names`` and ``reference_frame``/``reference_landmarks`` are read from a sample: never
``labels`` (evaluation only).
"""

from __future__ import annotations

import os
import weakref
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from mvmodel.prior.facs import CLASSES, NEUTRAL, geometric_prior
from mvmodel.prior.features import (
    PROXIES,
    BrowReference,
    ClipAggregate,
    ReferenceMode,
    SubjectReferenceMethod,
    aggregate_clip,
    canonical_array,
    proxies_from_canonical,
    relative_features,
    robust_scale,
)

__all__ = [
    "PROB_PREFIX",
    "PROXY_COLUMNS",
    "PriorIndex",
    "lookup",
    "prior_table",
    "prob_columns",
    "read_prior_table",
    "write_prior_table",
]

#: Column of each relative proxy in the table.
PROXY_COLUMNS: tuple[str, ...] = tuple(f"rel_{p}" for p in PROXIES)
#: Prefix of the probability columns (``p_anger`` ...), in the order of the classes.
PROB_PREFIX = "p_"


def prob_columns(neutral: bool = False) -> tuple[str, ...]:
    """The probability column names, in class order (neutral last when enabled)."""
    classes = (*CLASSES, NEUTRAL) if neutral else CLASSES
    return tuple(f"{PROB_PREFIX}{c}" for c in classes)


def _frame_proxies(
    samples: Sequence[Mapping[str, Any]], brow_reference: BrowReference
) -> tuple[list[NDArray[np.float64]], list[int]]:
    """Per sample its ``[T, F]`` proxies and the number of canonical points found (finite in
    every frame). Samples sharing a landmark name list are computed in one vectorised call."""
    nf = len(PROXIES)
    proxies: list[NDArray[np.float64]] = [np.zeros((0, nf))] * len(samples)
    found = [0] * len(samples)
    groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        lm = s.get("landmarks")
        names = tuple(s.get("landmark_names") or ())
        if lm is None or len(lm) == 0 or not names:  # no landmarks: every proxy undefined
            t = len(lm) if lm is not None and len(lm) else max(len(s.get("frames") or ()), 1)
            proxies[i] = np.full((t, nf), np.nan)
            continue
        groups[names].append(i)
    for names, members in groups.items():
        arrays = []
        for i in members:
            a = np.asarray(samples[i]["landmarks"], dtype=np.float64)
            if a.ndim != 3 or a.shape[1:] != (len(names), 3):
                raise ValueError(
                    f"sample {samples[i].get('key')!r}: landmarks of shape {a.shape} do not match "
                    f"{len(names)} landmark names"
                )
            arrays.append(a)
        canon = canonical_array(np.concatenate(arrays, axis=0), names)
        values = proxies_from_canonical(canon, brow_reference=brow_reference)
        start = 0
        for i, a in zip(members, arrays, strict=True):
            stop = start + len(a)
            proxies[i] = values[start:stop]
            found[i] = int(np.isfinite(canon[start:stop]).all(axis=(0, 2)).sum())
            start = stop
    return proxies, found


def _carried_references(
    samples: Sequence[Mapping[str, Any]], brow_reference: BrowReference
) -> list[tuple[int, NDArray[np.float64]] | None]:
    """Per sample ``(source frame, [F] proxies)`` of the reference frame its json carries
    (``reference_frame``/``reference_landmarks``, schema 1.1), or None (static samples, shards
    built before 1.1, sequences without landmarks)."""
    out: list[tuple[int, NDArray[np.float64]] | None] = [None] * len(samples)
    refs: list[dict[str, Any]] = []
    where: list[int] = []
    for i, s in enumerate(samples):
        lm, frame = s.get("reference_landmarks"), s.get("reference_frame")
        if lm is None or frame is None or not s.get("landmark_names"):
            continue
        refs.append({"key": s.get("key"), "landmarks": [lm], "landmark_names": s["landmark_names"]})
        where.append(i)
    if refs:
        proxies, _ = _frame_proxies(refs, brow_reference)
        for i, p in zip(where, proxies, strict=True):
            out[i] = (int(samples[i]["reference_frame"]), p[0])
    return out


def prior_table(
    samples: Iterable[Mapping[str, Any]],
    *,
    reference: ReferenceMode = "auto",
    subject_method: SubjectReferenceMethod = "rays",
    brow_reference: BrowReference = "eye_corners",
    clip: ClipAggregate = "peak",
    temperature: float = 0.1,
    neutral: bool = False,
    neutral_radius: float = 1.0,
    min_subject_frames: int = 3,
    fit_keys: Collection[str] | None = None,
) -> pl.DataFrame:
    """The prior table of ``samples`` (parsed sample jsons): one row per sample key.

    ``fit_keys``: the samples whose statistics may be pooled (the training samples: not a
    held-out fold, in the training split). The robust scales and the population mean are
    computed from them only and applied to every row, so a held-out subject's landmarks change
    no training row (before, every sample of the table was pooled: unlabelled, but the test
    subjects' geometry shaped the training pseudo-labels). None pools every sample; a dataset
    none of whose samples is in ``fit_keys`` pools its own.

    Columns: ``key``, ``dataset``, ``subject``, ``sequence``, ``kind``, ``reference`` (the
    reference mode used for the row, see :func:`~mvmodel.prior.features.relative_features`),
    ``frame`` (clip frame the features come from; -1 for ``clip="mean"``),
    ``num_landmarks_found`` (canonical points present), the relative proxies
    (:data:`PROXY_COLUMNS`) and ``p_geo`` (:func:`prob_columns`). Subjects and sequences are
    grouped within their dataset; the robust per-proxy scale that standardises the proxies is
    computed per dataset. Pass all samples of a dataset in one call (all splits: no label is
    read, and the subject reference needs each subject's samples).
    """
    items = list(samples)
    keys = [str(s["key"]) for s in items]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ValueError(f"duplicate sample keys: {dup}")
    datasets = [str(s.get("dataset", "")) for s in items]
    subjects = [str(s.get("subject", "")) for s in items]
    sequences = [str(s.get("sequence", "")) for s in items]
    kinds = [str(s.get("kind", "static")) for s in items]
    fit = None if fit_keys is None else [k in fit_keys for k in keys]
    per_frame, found = _frame_proxies(items, brow_reference)
    frames: list[list[int]] = []
    for s, p in zip(items, per_frame, strict=True):
        f = [int(x) for x in s.get("frames") or ()]
        frames.append(f if len(f) == len(p) else list(range(len(p))))  # source frame per row
    relative, used = relative_features(
        per_frame,
        subjects=[f"{d}/{s}" for d, s in zip(datasets, subjects, strict=True)],
        sequences=sequences,
        kinds=kinds,
        frames=frames,
        carried=_carried_references(items, brow_reference),
        mode=reference,
        subject_method=subject_method,
        min_subject_frames=min_subject_frames,
        fit=fit,
    )
    nf, n = len(PROXIES), len(items)
    rows = np.full((n, nf), np.nan)
    chosen = np.full(n, -1, dtype=np.int64)
    probs = np.zeros((n, len(prob_columns(neutral))))
    for ds in sorted(set(datasets)):
        members = [i for i in range(n) if datasets[i] == ds]
        fitted = [i for i in members if fit is None or fit[i]] or members
        pooled = np.concatenate([relative[i] for i in fitted] + [np.zeros((0, nf))], axis=0)
        frame_scale = robust_scale(pooled)
        for i in members:
            rows[i], chosen[i] = aggregate_clip(relative[i], clip, frame_scale)
        probs[members] = geometric_prior(
            rows[members],
            scale=robust_scale(rows[fitted]),
            temperature=temperature,
            neutral=neutral,
            neutral_radius=neutral_radius,
        )
    data: dict[str, Any] = {
        "key": keys,
        "dataset": datasets,
        "subject": subjects,
        "sequence": sequences,
        "kind": kinds,
        "reference": used,
        "frame": chosen,
        "num_landmarks_found": np.asarray(found, dtype=np.int64),
    }
    for j, col in enumerate(PROXY_COLUMNS):
        data[col] = rows[:, j]
    for k, col in enumerate(prob_columns(neutral)):
        data[col] = probs[:, k]
    return pl.DataFrame(data).with_columns(
        pl.col(c).fill_nan(None) for c in PROXY_COLUMNS
    )  # NaN -> null: "undefined" reads the same in every parquet tool


def write_prior_table(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` as parquet at ``path`` atomically (temporary sibling + ``os.replace``)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        df.write_parquet(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():  # only when writing failed: never leave a half-written file behind
            tmp.unlink()
    return dest


def read_prior_table(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a table written by :func:`write_prior_table`, checking its key and p_geo columns."""
    df = pl.read_parquet(Path(path))
    if "key" not in df.columns:
        raise ValueError(f"{path}: not a prior table (no 'key' column)")
    missing = [c for c in prob_columns() if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a prior table (missing {missing})")
    return df


class PriorIndex:
    """Fast ``key -> p_geo`` rows of a prior table: the dict and the matrix are built once.

    A key absent from the table gets the uniform distribution and is counted in
    :attr:`missing` (cumulative; reset it freely).
    """

    def __init__(self, df: pl.DataFrame) -> None:
        self.columns: tuple[str, ...] = tuple(c for c in prob_columns(True) if c in df.columns)
        if not self.columns:
            raise ValueError("prior table has no p_geo columns")
        self.classes: tuple[str, ...] = tuple(c[len(PROB_PREFIX) :] for c in self.columns)
        self.matrix: NDArray[np.float32] = df.select(self.columns).to_numpy().astype(np.float32)
        self.row: dict[str, int] = {k: i for i, k in enumerate(df["key"].to_list())}
        self.missing = 0
        self._uniform = np.full(len(self.columns), 1.0 / len(self.columns), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.row)

    def __call__(self, keys: Sequence[str]) -> NDArray[np.float32]:
        """``[B, K]`` float32 p_geo rows for ``keys``, uniform (and counted) where missing."""
        idx = np.fromiter((self.row.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        out = self.matrix[np.maximum(idx, 0)] if len(self.matrix) else np.empty((len(keys), 0))
        absent = idx < 0
        if absent.any():
            out = out.astype(np.float32, copy=True)
            out[absent] = self._uniform
            self.missing += int(absent.sum())
        return np.asarray(out, dtype=np.float32)


_INDEX_CACHE: dict[int, tuple[weakref.ref[pl.DataFrame], PriorIndex]] = {}


def lookup(table: pl.DataFrame | PriorIndex, keys: Sequence[str]) -> NDArray[np.float32]:
    """``[B, K]`` p_geo rows for ``keys`` (uniform where a key is missing; see PriorIndex).

    Given a DataFrame, the index is built on the first call and reused while that DataFrame is
    alive (polars frames are immutable; do not modify one in place after looking it up). Hot
    loops may hold a :class:`PriorIndex` themselves, which also exposes the missing count.
    """
    if isinstance(table, PriorIndex):
        return table(keys)
    cached = _INDEX_CACHE.get(id(table))
    if cached is None or cached[0]() is not table:
        index = PriorIndex(table)
        ident = id(table)
        _INDEX_CACHE[ident] = (weakref.ref(table, lambda _r: _INDEX_CACHE.pop(ident, None)), index)
        cached = _INDEX_CACHE[ident]
    return cached[1](keys)
