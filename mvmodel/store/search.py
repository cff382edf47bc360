"""Queries on an embeddings table: nearest neighbours of a vector, of a stored sample (by key),
of a text (through the text tower), with SQL filters; and zero-shot classification of the stored
embeddings, written back as columns.

Every query is cosine. :func:`search_vector` decides per query between the ANN index and an
exact search so that a filtered query returns exactly ``limit`` rows whenever that many match
(see :class:`~mvmodel.store.table.IndexPolicy`): no index (a small table) → exact; a filter
matching at most ``exact_rows`` rows → exact over the matching rows; otherwise the ANN index,
prefiltered, with refine; a result shorter than it should be → exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mvmodel.store.embedding_function import load_model
from mvmodel.store.schema import VECTOR_COLUMNS, StoreError, TableInfo, lance_errors
from mvmodel.store.table import DEFAULT_POLICY, IndexPolicy, ensure_indexes, has_vector_index

if TYPE_CHECKING:
    from mvmodel.inference import TrainedModel

__all__ = [
    "ClassifySummary",
    "Plan",
    "classify",
    "count_matching",
    "model_for_table",
    "nearest",
    "plan_query",
    "row_of",
    "search_vector",
    "similar",
    "text_search",
    "vector_of",
]

#: Rows read and written per step by :func:`classify`.
CLASSIFY_BATCH = 8192


def _columns(table: Any) -> list[str]:
    return [n for n in table.schema.names if n not in VECTOR_COLUMNS]


def _quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def count_matching(table: Any, where: str) -> int:
    """Rows matching the SQL filter ``where``; a :class:`StoreError` naming the filter when it
    does not parse or names a column the table lacks."""
    if not where.strip():
        raise StoreError("the filter is empty")
    try:
        return int(table.count_rows(where))
    except (ValueError, RuntimeError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = msg.split(" Valid fields are")[0]  # LanceDB lists internal columns too
        cols = ", ".join(_columns(table))
        raise StoreError(f"filter {where!r} is not valid: {msg} (columns: {cols})") from None


@dataclass(frozen=True)
class Plan:
    """How one query is answered: ``exact`` or through the ANN index, and why."""

    exact: bool
    reason: str
    matches: int | None = None


def plan_query(table: Any, where: str | None, policy: IndexPolicy = DEFAULT_POLICY) -> Plan:
    """Exact or ANN for one query (the rule of the module docstring). Rows are counted only
    for a filter: an unfiltered query pays for no count (~1 ms of a ~9 ms query at 1M rows)."""
    matches = count_matching(table, where) if where else None
    if not has_vector_index(table):
        return Plan(True, "no ANN index", matches)
    if matches is not None and matches <= policy.exact_rows:
        return Plan(True, f"filter matches {matches} rows (at most {policy.exact_rows})", matches)
    return Plan(False, "ANN index", matches)


def nearest(
    table: Any,
    vector: np.ndarray,
    where: str | None,
    k: int,
    exact: bool,
    policy: IndexPolicy,
    columns: Sequence[str],
) -> list[dict[str, Any]]:
    """One cosine query as planned: ``k`` rows, exact (flat, the index bypassed) or through the
    ANN index with the policy's ``nprobes``/``ef``/``refine_factor``; ``where`` prefiltered."""
    q = (
        table.search(vector, vector_column_name="vector")
        .distance_type("cosine")
        .select([*columns, "_distance"])
        .limit(k)
    )
    if where:
        q = q.where(where, prefilter=True)
    if exact:
        q = q.bypass_vector_index()
    else:
        q = q.nprobes(policy.nprobes).refine_factor(policy.refine_factor)
        if policy.index_type == "IVF_HNSW_SQ":
            # the graph search must collect every candidate the refine step re-ranks
            q = q.ef(max(policy.ef, k * policy.refine_factor))
    rows: list[dict[str, Any]] = q.to_list()
    return rows


def search_vector(
    table: Any,
    vector: Sequence[float] | np.ndarray,
    *,
    where: str | None = None,
    limit: int = 10,
    exclude: Sequence[str] = (),
    policy: IndexPolicy = DEFAULT_POLICY,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``limit`` nearest rows to ``vector`` (cosine), best first, optionally filtered by the
    SQL ``where`` (prefiltered: the filter is applied before the nearest are chosen) and leaving
    out the keys in ``exclude``. Each row holds the table's columns but the vectors,
    ``_distance`` (cosine distance) and ``similarity`` (1 - distance)."""
    if limit < 1:
        raise StoreError(f"limit must be at least 1, got {limit}")
    q = np.asarray(vector, dtype=np.float32)
    dim = table.schema.field("vector").type.list_size
    if q.ndim != 1 or q.shape[0] != dim:
        raise StoreError(f"the query vector is {list(q.shape)} wide; the table's vectors are {dim}")
    if not np.all(np.isfinite(q)) or not np.any(q):
        raise StoreError("the query vector is zero or not finite: cosine distance is undefined")
    cols = list(columns) if columns is not None else _columns(table)
    with lance_errors("search"):
        plan = plan_query(table, where, policy)
        if plan.matches == 0:
            return []
        k = limit + len(exclude)
        hits = nearest(table, q, where, k, plan.exact, policy, cols)
        # a short ANN answer is right only when no more rows exist; they are counted only then
        # (never on the usual full answer); else the probed partitions held too few matching
        # rows, and the query is answered exactly instead
        if not plan.exact and len(hits) < k:
            available = plan.matches if plan.matches is not None else table.count_rows()
            if len(hits) < available:
                hits = nearest(table, q, where, k, True, policy, cols)
    skip = set(exclude)
    out = [h for h in hits if h.get("key") not in skip][:limit]
    for h in out:
        h["similarity"] = 1.0 - float(h["_distance"])
    return out


def row_of(table: Any, key: str) -> dict[str, Any]:
    """The stored row of ``key`` without its vectors; a :class:`StoreError` when absent."""
    with lance_errors(f"reading key {key!r}"):
        got = table.search().where(f"key = {_quote(key)}").select(_columns(table)).limit(1)
        rows: list[dict[str, Any]] = got.to_list()
    if not rows:
        raise StoreError(f"no row with key {key!r} in the table")
    return rows[0]


def vector_of(table: Any, key: str) -> np.ndarray:
    """The stored vector of ``key``; a :class:`StoreError` when no row has it."""
    with lance_errors(f"reading key {key!r}"):
        got = (
            table.search().where(f"key = {_quote(key)}").select(["key", "vector"]).limit(1)
        ).to_arrow()
    if got.num_rows == 0:
        raise StoreError(f"no row with key {key!r} in the table")
    return np.asarray(got.column("vector")[0].as_py(), dtype=np.float32)


def similar(
    table: Any,
    key: str,
    *,
    where: str | None = None,
    limit: int = 10,
    policy: IndexPolicy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """The ``limit`` rows nearest to the stored sample ``key`` (itself left out)."""
    return search_vector(
        table, vector_of(table, key), where=where, limit=limit, exclude=[key], policy=policy
    )


def model_for_table(info: TableInfo, model: str | Path | None = None) -> TrainedModel:
    """The trained model that made the table: ``model`` (a run, checkpoint or weights file) or,
    when ``None``, the weights file the table records. A :class:`StoreError` when it is another
    checkpoint than the table's: its vectors live in another space."""
    if model is None:
        if not Path(info.weights).is_file():
            raise StoreError(
                f"the table was made by {info.weights}, which is not there any more: pass the "
                "run that made it (--model)"
            )
        return load_model(info.weights, info.checkpoint_sha256)
    loaded = load_model(model)
    if loaded.checkpoint_sha256 != info.checkpoint_sha256 or loaded.model_id != info.model_id:
        raise StoreError(
            f"{model} is model {loaded.model_id} checkpoint {loaded.checkpoint_sha256[:12]} "
            f"(step {loaded.step}); the table was made by model {info.model_id} checkpoint "
            f"{info.checkpoint_sha256[:12]} (step {info.checkpoint_step}): a query embedded by "
            "another model would be compared in the wrong space"
        )
    return loaded


def text_search(
    table: Any,
    info: TableInfo,
    text: str,
    *,
    model: str | Path | None = None,
    where: str | None = None,
    limit: int = 10,
    policy: IndexPolicy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """Zero-shot text → face: ``text`` through the table's text tower, then
    :func:`search_vector`."""
    if not text.strip():
        raise StoreError("the text query is empty")
    trained = model_for_table(info, model)
    vec = trained.embed_text([text])[0]
    return search_vector(table, vec, where=where, limit=limit, policy=policy)


@dataclass
class ClassifySummary:
    """What :func:`classify` wrote: rows classified and how many got each class."""

    rows: int
    counts: dict[str, int]
    classes: list[str]


def classify(
    table: Any,
    info: TableInfo,
    *,
    model: str | Path | None = None,
    where: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    policy: IndexPolicy = DEFAULT_POLICY,
) -> ClassifySummary:
    """Zero-shot classification of the stored embeddings with the run's prompt prototypes
    (softmax of cosine / τ, as in training), written back into ``zero_shot_label`` and
    ``zero_shot_confidence`` by merge-insert on ``key``. The images are not read again.

    ``where`` limits it to matching rows. The written batches carry their rows' vectors
    unchanged: a row written without its vector would make LanceDB try to fill it. The rows
    rewritten are folded back into the indexes at the end (:func:`ensure_indexes`)."""
    trained = model_for_table(info, model)
    total = count_matching(table, where) if where else table.count_rows()
    classes = list(trained.classes)
    counts: Counter[str] = Counter()
    done = 0
    with lance_errors("classify"):
        q = table.search().select(["key", "vector"]).limit(None)
        if where:
            q = q.where(where)
        # Read everything to classify first (keys and vectors only), then write: a merge
        # commits a new version, and reading while writing would page through a moving table.
        stored = q.to_arrow()
        for start in range(0, stored.num_rows, CLASSIFY_BATCH):
            part = stored.slice(start, CLASSIFY_BATCH)
            vecs = np.stack(part.column("vector").to_numpy(zero_copy_only=False))
            probs = trained.zero_shot(vecs.astype(np.float32))
            best = probs.argmax(axis=1)
            labels = [classes[i] for i in best]
            counts.update(labels)
            upd = pa.table(
                {
                    "key": part.column("key"),
                    "vector": part.column("vector"),
                    "zero_shot_label": pa.array(labels, pa.string()),
                    "zero_shot_confidence": pa.array(
                        probs[np.arange(len(best)), best].astype(np.float64), pa.float64()
                    ),
                },
                schema=pa.schema(
                    [
                        # the merge key is the table's primary key: never null
                        pa.field("key", pa.string(), nullable=False),
                        table.schema.field("vector"),
                        table.schema.field("zero_shot_label"),
                        table.schema.field("zero_shot_confidence"),
                    ]
                ),
            )
            table.merge_insert("key").when_matched_update_all().execute(upd)
            done += part.num_rows
            if progress is not None:
                progress(done, total)
    ensure_indexes(table, policy)
    return ClassifySummary(rows=done, counts=dict(counts), classes=classes)
