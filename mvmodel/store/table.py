"""The LanceDB embeddings table: connecting, creating or opening it for one checkpoint (schema:
:mod:`mvmodel.store.schema`), merge-insert by key, and its indexes.

One table holds the embeddings of ONE checkpoint: the table's schema metadata (``mvmodel``)
records the model id (config hash), the checkpoint's sha256, its step, the weights file and the
vector width, and every row repeats the first three. Embedding another checkpoint into it is
refused (:func:`create_or_open`): vectors of two checkpoints live in different spaces, and a
nearest-neighbour list mixing them would be meaningless.

Indexes (:class:`IndexPolicy`, :func:`ensure_indexes`): below ``min_rows`` rows a query is an
exact (flat) search; from ``min_rows`` an ANN index is built on ``vector`` (cosine) and scalar
indexes on the columns filters use; ``optimize()`` compacts the many small fragments that
batch-by-batch merge-inserts leave and adds new rows to the indexes. The numbers are this
project's measurements (``bench/bench_store.py``, README "Embeddings and search").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import lancedb
import pyarrow as pa

from mvmodel.store.embedding_function import text_function_config
from mvmodel.store.schema import StoreError, TableInfo, arrow_schema, lance_errors, table_info

__all__ = [
    "DEFAULT_POLICY",
    "IndexPolicy",
    "connect",
    "create_or_open",
    "ensure_indexes",
    "existing_keys",
    "has_vector_index",
    "open_table",
    "optimize_with_retry",
    "table_names",
    "upsert",
]


# --------------------------------------------------------------------------- connect / open
def connect(db: str, storage_options: Mapping[str, str] | None = None) -> Any:
    """A LanceDB connection: a local directory (made if absent) or an object-store URI
    (``s3://bucket/path``, ``gs://``, ``az://``); ``storage_options`` as LanceDB takes them
    (S3: ``aws_endpoint``, ``aws_region``, ``allow_http``, ``aws_access_key_id``, ...; LanceDB
    also reads the usual ``AWS_*`` environment variables)."""
    with lance_errors(f"{db}: cannot open the database"):
        return lancedb.connect(db, storage_options=dict(storage_options or {}) or None)


def table_names(conn: Any) -> list[str]:
    """The database's table names (every page)."""
    names: list[str] = []
    token = None
    while True:
        resp = conn.list_tables(page_token=token)
        names.extend(resp.tables)
        token = resp.page_token
        if not token:
            return sorted(names)


def open_table(conn: Any, name: str, db: str) -> tuple[Any, TableInfo]:
    """Open table ``name`` and read its :class:`TableInfo`; a :class:`StoreError` naming the
    tables that are there when it is absent."""
    where = f"{db}: table {name!r}"
    with lance_errors(where):
        names = table_names(conn)
        if name not in names:
            there = ", ".join(names) if names else "none"
            raise StoreError(f"{db}: no table {name!r} (tables here: {there})")
        table = conn.open_table(name)
    return table, table_info(table, where)


def create_or_open(conn: Any, name: str, db: str, info: TableInfo) -> Any:
    """Open table ``name`` for rows of ``info``'s checkpoint, creating it when absent.

    Two writers may race to create it: LanceDB commits the first version atomically, so the
    loser gets "already exists" and opens the winner's table. Either way the table's checkpoint
    must be ``info``'s: another one is refused, naming both."""
    where = f"{db}: table {name!r}"
    with lance_errors(where):
        if name not in table_names(conn):
            try:
                conn.create_table(
                    name,
                    schema=arrow_schema(info),
                    embedding_functions=[text_function_config(info)],
                )
            except ValueError as exc:
                if "already exists" not in str(exc):
                    raise
        table = conn.open_table(name)
    found = table_info(table, where)
    if not found.same_checkpoint(info):
        raise StoreError(
            f"{where} holds embeddings of another checkpoint (model {found.model_id}, "
            f"checkpoint {found.checkpoint_sha256[:12]}, step {found.checkpoint_step}, "
            f"{found.dim}-d); this one is model {info.model_id}, checkpoint "
            f"{info.checkpoint_sha256[:12]}, step {info.checkpoint_step}, {info.dim}-d: "
            "use another --table (vectors of two checkpoints must not mix)"
        )
    return table


# --------------------------------------------------------------------------- writes
def existing_keys(table: Any) -> set[str]:
    """Every key in the table (read from the ``key`` column only)."""
    with lance_errors("reading the table's keys"):
        keys = table.search().select(["key"]).limit(None).to_arrow().column("key")
    return set(keys.to_pylist())


def upsert(table: Any, rows: pa.Table) -> Any:
    """Merge-insert ``rows`` by ``key``: a key already there is replaced, a new one inserted,
    never a duplicate. Concurrent writers: LanceDB retries a commit that raced another one and
    re-applies the merge on the newer version (tested with two processes)."""
    with lance_errors("writing rows"):
        return (
            table.merge_insert("key")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )


# --------------------------------------------------------------------------- indexes
@dataclass(frozen=True)
class IndexPolicy:
    """When and how the table is indexed, and how an indexed table is queried.

    ``min_rows``: from this many rows an ANN index is built; below it every query is exact (a
    flat scan costs ~2 us a 512-d row on 2 cores: ~40-90 ms at 20k rows, 0.2 s at 100k, 2 s at
    1M; the index takes ~5 s to build at 20k rows).
    ``index_type``: ``IVF_HNSW_SQ`` (IVF partitions, an HNSW graph in each over 8-bit scalar-
    quantised vectors; measured recall@10 0.99 at 100k and 1M) or ``IVF_PQ`` (0.47-0.75 at
    20-100k with the same refine); cosine either way. ``nprobes`` partitions are searched
    (HNSW: all of them up to 8 partitions, i.e. 4M rows: probing 1 of 4 dropped recall to
    0.69), ``ef`` candidates per graph, and ``refine_factor``: the ANN stage returns
    ``limit * refine_factor`` candidates whose exact distances are recomputed from the stored
    vectors.
    ``exact_rows``: a filtered query whose filter matches at most this many rows is answered by
    an exact search over the matching rows only (prefiltered flat scan: its cost follows the
    matching rows, ~35 ms for 1,000 of 512-d, whatever the table's size). Above it the ANN
    query runs prefiltered (IVF_HNSW_SQ kept recall@10 >= 0.997 at 0.1-50 % of 1M rows; an
    IVF_PQ index probing a few partitions returned 0 rows for some 1 % filters at 1M), and a
    result shorter than ``min(limit, matches)`` is answered exactly instead.
    ``scalar_indexes``: columns given a BITMAP index (low cardinality) for fast filters;
    ``key`` gets a BTREE (merge-insert joins and ``--key`` lookups).
    """

    min_rows: int = 20_000
    index_type: Literal["IVF_HNSW_SQ", "IVF_PQ"] = "IVF_HNSW_SQ"
    #: IVF partitions: at most this many rows each (1M rows: 2 partitions). Every partition is
    #: searched (``nprobes``), so fewer, larger HNSW graphs answer faster: at 1M, 2 partitions
    #: gave recall@10 1.0 at 8.5 ms p50 (query alone) where 4 gave 10.9 ms; one 1M-row graph
    #: builds on one thread (1,368 s, against 256 s for two built side by side on 2 cores).
    rows_per_partition: int = 500_000
    num_sub_vectors: int | None = None  # IVF_PQ: dim / 8 when None
    m: int = 20
    ef_construction: int = 150
    nprobes: int = 8
    ef: int = 128
    refine_factor: int = 5
    exact_rows: int = 1_000
    scalar_indexes: tuple[str, ...] = (
        "dataset",
        "subject",
        "kind",
        "fold",
        "expression",
        "pseudo_label",
    )

    def num_partitions(self, rows: int) -> int:
        """IVF partitions for ``rows`` rows: ``ceil(rows / rows_per_partition)``, at least 1."""
        return max(1, -(-rows // self.rows_per_partition))


DEFAULT_POLICY = IndexPolicy()


def has_vector_index(table: Any) -> bool:
    """True when ``vector`` has an ANN index."""
    return any(list(ix.columns) == ["vector"] for ix in table.list_indices())


#: How often a compaction preempted by another writer's commit is tried again.
OPTIMIZE_ATTEMPTS = 5


def optimize_with_retry(table: Any, attempts: int = OPTIMIZE_ATTEMPTS) -> None:
    """``table.optimize()``, tried again on Lance's *retryable* commit conflict.

    Two ``embed`` runs into one table: one's compaction (a Rewrite) can be preempted by the
    other's merge-insert (an Update) committed in between, and Lance says "Retryable commit
    conflict". Nothing is lost (the merge committed, the compaction did not), so the compaction
    is planned again on the latest version after a short pause; any other error, or the last
    attempt's, goes to the caller. (Seen once in a CI run of
    ``tests/test_store.py::test_two_processes_embed_into_one_table``.)
    """
    for attempt in range(attempts):
        try:
            table.optimize()
            return
        except (RuntimeError, OSError, ValueError) as exc:
            if "retryable commit conflict" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)
            table.checkout_latest()


def ensure_indexes(table: Any, policy: IndexPolicy = DEFAULT_POLICY) -> str:
    """Index the table as :class:`IndexPolicy` says and compact it; returns what was done.

    Called after a bulk ingest: ``optimize()`` first (it compacts fragments and folds new rows
    into existing indexes), then, at or above ``policy.min_rows`` rows, the ANN index when
    absent and the scalar indexes."""
    from lancedb.index import Bitmap, BTree, IvfHnswSq, IvfPq

    with lance_errors("optimizing the table"):
        optimize_with_retry(table)
        rows = table.count_rows()
        if rows < policy.min_rows:
            return f"exact search ({rows} rows < {policy.min_rows}: no ANN index)"
        done = []
        if not has_vector_index(table):
            parts = policy.num_partitions(rows)
            config: Any
            if policy.index_type == "IVF_PQ":
                dim = table.schema.field("vector").type.list_size
                config = IvfPq(
                    distance_type="cosine",
                    num_partitions=parts,
                    num_sub_vectors=policy.num_sub_vectors or max(1, dim // 8),
                )
            else:
                config = IvfHnswSq(
                    distance_type="cosine",
                    num_partitions=parts,
                    m=policy.m,
                    ef_construction=policy.ef_construction,
                )
            table.create_index("vector", config=config)
            done.append(f"{policy.index_type} cosine, {parts} partition(s)")
        present = {tuple(ix.columns) for ix in table.list_indices()}
        if ("key",) not in present:
            table.create_index("key", config=BTree())
            done.append("BTREE on key")
        made = [c for c in policy.scalar_indexes if (c,) not in present]
        for col in made:
            table.create_index(col, config=Bitmap())
        if made:
            done.append("BITMAP on " + ", ".join(made))
    return f"ANN index ({rows} rows): " + "; ".join(done)
