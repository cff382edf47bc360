"""The embeddings store at scale: ingest rows/s, index build time, and query p50/p95 latency and
recall@10 against exact search, unfiltered and filtered (1 %, 10 %, 50 % of the rows), for
clustered synthetic 512-d unit vectors, through the same functions ``mvmodel embed`` and
``mvmodel search`` use (:func:`mvmodel.store.table.upsert`, :func:`ensure_indexes`,
:func:`mvmodel.store.search.search_vector`).

For each size it reports, per index type:

* ``policy``: the store's query rule (ANN, or exact over the matching rows when a filter
  matches at most ``exact_rows`` rows): recall@10, latency, and the fewest rows a query
  returned (must be ``limit`` whenever that many match);
* ``ann_forced`` / ``exact_forced`` per filter: the two ways side by side, to show where the
  switch belongs;
* the unfiltered exact (flat) search latency (the reference every recall is measured against:
  exact top-10 from numpy).

    python bench/bench_store.py                          # 100k rows
    python bench/bench_store.py --sizes 100000 1000000   # and 1M (minutes to build)
    python bench/bench_store.py --index-types IVF_HNSW_SQ IVF_PQ --queries 200
    python bench/bench_store.py --sizes 1000000 --db /tmp/b --reuse   # queries again, no rebuild

Writes JSON (``--out``, default bench/results/store.json; sizes already in the file and not
run again are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvdata.io import atomic_write_json  # noqa: E402
from mvmodel.store.search import nearest, search_vector  # noqa: E402
from mvmodel.store.table import (  # noqa: E402
    IndexPolicy,
    connect,
    ensure_indexes,
    table_names,
    upsert,
)

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"
#: Filters by the share of rows they match (``sel`` is uniform in 0..999).
SELECTIVITY = {"0.1%": "sel < 1", "1%": "sel < 10", "10%": "sel < 100", "50%": "sel < 500"}
LIMIT = 10


def clustered(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors around random ``centres`` (cosine to their centre ~0.8)."""
    which = rng.integers(0, len(centres), n)
    x = centres[which] + 0.75 * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def make_rows(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectors, the filter column ``sel`` (uniform 0..999) and held-out query vectors."""
    rng = np.random.default_rng(seed)
    k = max(100, n // 1000)
    centres = rng.standard_normal((k, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vecs = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        vecs[s:e] = clustered(e - s, dim, centres, rng)
    sel = rng.integers(0, 1000, n)
    queries = clustered(1000, dim, centres, rng)
    return vecs, sel, queries


def exact_topk(vecs: np.ndarray, q: np.ndarray, mask: np.ndarray | None, k: int) -> list[int]:
    """Row ids of the exact top-``k`` by cosine (unit vectors: dot product)."""
    scores = vecs @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def ingest(table: Any, vecs: np.ndarray, sel: np.ndarray, batch: int) -> dict[str, float]:
    """Merge-insert every row in batches of ``batch``; rows/s."""
    n, dim = vecs.shape
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        e = min(n, s + batch)
        flat = pa.array(vecs[s:e].reshape(-1), pa.float32())
        upsert(
            table,
            pa.table(
                {
                    "key": pa.array([f"k{i:08d}" for i in range(s, e)]),
                    "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
                    "sel": pa.array(sel[s:e], pa.int64()),
                }
            ),
        )
    secs = time.perf_counter() - t0
    return {"rows": n, "batch": batch, "seconds": secs, "rows_per_s": n / secs}


def _stats(lat: list[float], rec: list[float], got: list[int]) -> dict[str, float]:
    a = np.asarray(lat) * 1000
    return {
        "queries": len(lat),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "recall_at_10": float(np.mean(rec)),
        "min_recall": float(np.min(rec)),
        "min_rows_returned": int(np.min(got)),
    }


def measure(
    table: Any,
    vecs: np.ndarray,
    sel: np.ndarray,
    queries: np.ndarray,
    where: str | None,
    policy: IndexPolicy,
    mode: str,
) -> dict[str, float]:
    """``mode``: ``policy`` (search_vector), ``ann`` or ``exact`` (forced)."""
    mask = None
    if where is not None:
        mask = sel < int(where.split("<")[1])
    lat, rec, got = [], [], []
    for q in queries[:5]:  # warm the caches (index, fragments) first: not timed
        if mode == "policy":
            search_vector(table, q, where=where, limit=LIMIT, policy=policy, columns=["key"])
        else:
            nearest(table, q, where, LIMIT, mode == "exact", policy, ["key"])
    for q in queries:
        truth = set(exact_topk(vecs, q, mask, LIMIT))
        t0 = time.perf_counter()
        if mode == "policy":
            hits = search_vector(table, q, where=where, limit=LIMIT, policy=policy, columns=["key"])
        else:
            hits = nearest(table, q, where, LIMIT, mode == "exact", policy, ["key"])
        lat.append(time.perf_counter() - t0)
        ids = {int(h["key"][1:]) for h in hits}
        rec.append(len(ids & truth) / LIMIT)
        got.append(len(hits))
    return _stats(lat, rec, got)


def run_size(
    args: argparse.Namespace, n: int, root: Path, previous: dict[str, Any]
) -> dict[str, Any]:
    print(f"== {n} rows x {args.dim}", flush=True)
    vecs, sel, all_queries = make_rows(n, args.dim, args.seed)
    queries = all_queries[: args.queries]
    # --reuse keeps what was measured before for the index types not run again
    out: dict[str, Any] = dict(previous) if args.reuse else {}
    out.update(rows=n, dim=args.dim, queries=len(queries))
    conn = connect(str(root / f"db{n}"))
    reuse = (
        args.reuse
        and "bench" in table_names(conn)
        and conn.open_table("bench").count_rows() == n
        and "ingest" in previous
    )
    if reuse:
        # the same seed made the same rows: measure queries again on the table built before
        table = conn.open_table("bench")
        for k in ("ingest", "optimize_seconds"):
            out[k] = previous[k]
        out["reused_table"] = True
        print("reusing the table built before", flush=True)
    else:
        schema = pa.schema(
            [
                pa.field("key", pa.string(), False),
                pa.field("vector", pa.list_(pa.float32(), args.dim)),
                pa.field("sel", pa.int64()),
            ]
        )
        table = conn.create_table("bench", schema=schema, mode="overwrite")
        out["ingest"] = ing = ingest(table, vecs, sel, args.batch)
        print(f"ingest {ing['rows_per_s']:.0f} rows/s", flush=True)
        t0 = time.perf_counter()
        table.optimize()
        out["optimize_seconds"] = time.perf_counter() - t0
    flat = measure(table, vecs, sel, queries[: min(20, len(queries))], None, IndexPolicy(), "exact")
    out["exact_unfiltered"] = flat
    print(f"exact {flat['p50_ms']:.0f} ms p50", flush=True)
    for kind in args.index_types:
        policy = dataclasses.replace(
            IndexPolicy(),
            index_type=kind,
            min_rows=1,
            scalar_indexes=("sel",),
            **({"nprobes": args.nprobes} if args.nprobes else {}),
            **({"refine_factor": args.refine} if args.refine else {}),
            **({"ef": args.ef} if args.ef else {}),
            **({"rows_per_partition": args.rows_per_partition} if args.rows_per_partition else {}),
        )
        # a partitioning other than the policy's is reported under its own name
        name = f"{kind}@{args.rows_per_partition}" if args.rows_per_partition else kind
        before = previous.get(name, {})
        built = {ix.index_type for ix in table.list_indices() if list(ix.columns) == ["vector"]}
        same = previous.get("index_built", before.get("index")) == before.get("index")
        if reuse and built == {kind.title().replace("_", "")} and before and same:
            what, build_s = before["index"], before["build_seconds"]
        else:
            for ix in list(table.list_indices()):
                table.drop_index(ix.name)
            t0 = time.perf_counter()
            what = ensure_indexes(table, policy)
            build_s = time.perf_counter() - t0
        out["index_built"] = what  # the index the table holds now
        res: dict[str, Any] = {
            "policy": dataclasses.asdict(policy),
            "index": what,
            "build_seconds": build_s,
        }
        print(f"{kind}: {what} in {res['build_seconds']:.0f} s", flush=True)
        res["unfiltered"] = measure(table, vecs, sel, queries, None, policy, "policy")
        print(f"  unfiltered {res['unfiltered']}", flush=True)
        sweep = []
        for ef in args.sweep_ef if kind == "IVF_HNSW_SQ" else [policy.ef]:
            for refine in args.sweep_refine:
                for nprobes in args.sweep_nprobes:
                    p = dataclasses.replace(policy, ef=ef, refine_factor=refine, nprobes=nprobes)
                    point = measure(table, vecs, sel, queries, None, p, "ann")
                    point.update(ef=ef, refine_factor=refine, nprobes=nprobes)
                    sweep.append(point)
                    print(f"  sweep {point}", flush=True)
        res["sweep_unfiltered_ann"] = sweep
        for label, where in SELECTIVITY.items():
            r: dict[str, Any] = {
                "policy": measure(table, vecs, sel, queries, where, policy, "policy"),
                "ann_forced": measure(table, vecs, sel, queries, where, policy, "ann"),
                "exact_forced": measure(
                    table, vecs, sel, queries[: min(20, len(queries))], where, policy, "exact"
                ),
            }
            res[f"filter_{label}"] = r
            print(f"  filter {label}: " + json.dumps(r), flush=True)
        out[name] = res
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50_000, help="rows per merge-insert")
    ap.add_argument("--index-types", nargs="+", default=["IVF_HNSW_SQ", "IVF_PQ"])
    ap.add_argument("--nprobes", type=int, default=0, help="override the policy's nprobes")
    ap.add_argument("--refine", type=int, default=0, help="override the policy's refine")
    ap.add_argument("--ef", type=int, default=0, help="override the policy's ef")
    ap.add_argument(
        "--rows-per-partition", type=int, default=0, help="override the policy's partitioning"
    )
    ap.add_argument("--sweep-ef", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--sweep-refine", type=int, nargs="*", default=[1, 5, 10])
    ap.add_argument("--sweep-nprobes", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --db: query the tables built by an earlier run (same sizes and seed) again",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    root = args.db or Path(tempfile.mkdtemp(prefix="bench-store-"))
    previous: dict[str, Any] = {}
    if args.out.is_file():
        previous = json.loads(args.out.read_text()).get("sizes", {})
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "reference": "issue 12 targets at 1M x 512: recall@10 >= 0.95 at p50 <= 10 ms; a "
        "filtered query returns exactly `limit` rows whenever that many match, recall >= 0.95",
        "sizes": dict(previous),
    }
    try:
        for n in args.sizes:
            result["sizes"][str(n)] = run_size(args, n, root, previous.get(str(n), {}))
            atomic_write_json(args.out, result)
    finally:
        if args.db is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
