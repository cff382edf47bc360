"""Similarity search from samples that are not in the table: a mesh file rendered into a shard
directory (``mvdata.build.query.mesh_shards``, called by the CLI: the model half may not render),
or any shard directory, embedded by the table's model through its eval loader and searched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvdata.shards.reader import list_shards, read_shard_rows
from mvmodel.store.schema import StoreError, TableInfo
from mvmodel.store.search import model_for_table, search_vector
from mvmodel.store.table import DEFAULT_POLICY, IndexPolicy

__all__ = ["first_sample", "reference_shards", "similar_to_shards"]


def reference_shards(table: Any) -> str:
    """The shard directory of the table's rows (the first row's; a query mesh is rendered with
    its camera rig)."""
    got = table.search().select(["shard_dir"]).limit(1).to_arrow()
    if got.num_rows == 0:
        raise StoreError("the table is empty: no shard directory to take the camera rig from")
    return str(got.column("shard_dir")[0].as_py())


def first_sample(shards: str) -> dict[str, Any]:
    """``shard_dir``, ``shard`` and ``key`` of the first written sample of ``shards`` (for
    drawing a query beside its hits)."""
    for name in list_shards(shards):
        for row in read_shard_rows(shards, name):
            if row.status == "ok":
                return {"shard_dir": str(shards), "shard": name, "key": row.key}
    raise StoreError(f"{shards}: holds no written sample")


def similar_to_shards(
    table: Any,
    info: TableInfo,
    shards: str | Path,
    *,
    model: str | Path | None = None,
    where: str | None = None,
    limit: int = 10,
    policy: IndexPolicy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """The rows nearest to the first sample of the shard directory ``shards``, embedded by the
    table's model (refused when ``model`` is another one)."""
    trained = model_for_table(info, model)
    for eb in trained.embed_shards(shards, batch_size=1):
        return search_vector(table, eb.f[0], where=where, limit=limit, policy=policy)
    raise StoreError(f"{shards}: holds no sample to search with")
