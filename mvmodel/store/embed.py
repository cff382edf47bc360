"""``mvmodel embed``: every sample of a shard directory through a trained model, into LanceDB.

The loaders read the shards in eval mode (sorted, no augmentation); each batch's fused
embeddings ``f`` (and, with ``per_view``, the per-view ``z``) become rows of
:class:`schemas.models.EmbeddingRow` (validated), with the sample's metadata, the shard and
member names a hit is opened by, the model's zero-shot pseudo-label, and the checkpoint's
identity. Rows are merge-inserted by key every ``flush_rows`` rows, so:

* the same checkpoint embedded again replaces its rows, never duplicates them;
* a killed job, run again, skips every batch whose keys are all in the table already (the
  model never runs on them; the loader still decodes their images: it cannot seek by key);
  ``redo`` embeds them again instead (rows replaced), e.g. after the shards were rebuilt;
* two jobs writing one table at once end with each key once (LanceDB retries a commit that
  raced another and re-applies the merge on the newer version).

Another checkpoint's rows are refused (:func:`mvmodel.store.table.create_or_open`).

Pseudo-labels: the argmax of the model's zero-shot probabilities over the prompt prototypes
(softmax of cosine / τ) and that probability. Label-free, and defined for any shard set the
model embeds; the run's geometric prior (``RUN/prior.parquet``) is not used: it exists only for
the samples the run trained on, and training combined it with the image scores only while the
image side was still untrained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mvdata.loaders import open_dataset
from mvdata.shards.reader import read_shard_rows
from mvmodel.store.embedding_function import load_model
from mvmodel.store.schema import StoreError, TableInfo, arrow_schema
from mvmodel.store.table import (
    DEFAULT_POLICY,
    IndexPolicy,
    connect,
    create_or_open,
    ensure_indexes,
    existing_keys,
    upsert,
)
from schemas.models import EmbeddingRow

if TYPE_CHECKING:
    from mvmodel.inference import EmbeddedBatch, TrainedModel

__all__ = ["EmbedSummary", "embed_to_table", "rows_of_batch", "table_info_of"]


@dataclass
class EmbedSummary:
    """What one ``embed`` run did."""

    db: str
    table: str
    samples: int
    written: int
    skipped: int
    rows_in_table: int
    seconds: float
    index: str
    model_id: str
    checkpoint_sha256: str


def table_info_of(model: TrainedModel) -> TableInfo:
    """The :class:`TableInfo` a table of ``model``'s embeddings records."""
    return TableInfo(
        model_id=model.model_id,
        checkpoint_sha256=model.checkpoint_sha256,
        checkpoint_step=model.step,
        weights=str(model.source.resolve()),
        dim=int(model.config.model.embed_dim),
        classes=list(model.classes),
    )


def _shard_of_keys(shards: str, names: Sequence[str]) -> dict[str, str]:
    """Sample key → shard name, from the shards' parquet rows (written samples only)."""
    out: dict[str, str] = {}
    for name in names:
        for row in read_shard_rows(shards, name):
            if row.status == "ok":
                out[row.key] = name
    return out


def rows_of_batch(
    eb: EmbeddedBatch,
    model: TrainedModel,
    *,
    shard_dir: str,
    shard_of: dict[str, str],
    member_exts: Sequence[str],
    per_view: bool,
) -> list[EmbeddingRow]:
    """One embedded batch as validated contract rows."""
    probs = model.zero_shot(eb.f)
    best = probs.argmax(axis=1)
    out = []
    for i, key in enumerate(eb.keys):
        m = eb.meta[i]
        labels = m.get("labels") or {}
        if key not in shard_of:
            raise StoreError(f"{shard_dir}: sample {key} is in no shard's parquet rows")
        out.append(
            EmbeddingRow(
                key=key,
                vector=eb.f[i].tolist(),
                view_vectors=eb.z[i].tolist() if per_view else None,
                dataset=m["dataset"],
                source=m["source"],
                subject=m["subject"],
                sequence=m["sequence"],
                kind=m["kind"],
                frames=list(m["frames"]),
                fold=m["fold"],
                expression=labels.get("expression"),
                intensity=labels.get("intensity"),
                pseudo_label=model.classes[int(best[i])],
                pseudo_confidence=float(probs[i, best[i]]),
                model_id=model.model_id,
                checkpoint_sha256=model.checkpoint_sha256,
                checkpoint_step=model.step,
                shard_dir=shard_dir,
                shard=shard_of[key],
                members=[f"{key}.{ext}" for ext in member_exts],
            )
        )
    return out


def _arrow(rows: list[EmbeddingRow], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([r.model_dump() for r in rows], schema=schema)


def embed_to_table(
    model_path: str | Path,
    shards: str | Path,
    db: str,
    table: str,
    *,
    per_view: bool = False,
    redo: bool = False,
    batch_size: int = 32,
    flush_rows: int = 2048,
    storage_options: dict[str, str] | None = None,
    policy: IndexPolicy = DEFAULT_POLICY,
    progress: Callable[[int, int], None] | None = None,
    model: TrainedModel | None = None,
    **loader_kw: Any,
) -> EmbedSummary:
    """Embed every sample of ``shards`` with the model at ``model_path`` (a run, checkpoint or
    weights file) into ``db``/``table``; then index and optimize it (:func:`ensure_indexes`).

    ``redo``: embed every sample again, replacing its row, even when its key is in the table
    (e.g. after the shards were rebuilt); by default such batches are skipped (resume).
    ``progress(done, total)`` is called after each batch (samples). ``loader_kw`` go to the
    loader (``backend``, ``num_workers``, ...)."""
    if batch_size < 1 or flush_rows < 1:
        raise StoreError("--batch-size and the flush size must be at least 1")
    start = time.perf_counter()
    trained = model if model is not None else load_model(model_path)
    shard_dir = str(shards)
    if "://" not in shard_dir:
        shard_dir = str(Path(shard_dir).resolve())
    info = open_dataset(shard_dir)
    shard_of = _shard_of_keys(shard_dir, info.shards)
    tinfo = table_info_of(trained)
    conn = connect(db, storage_options)
    tbl = create_or_open(conn, table, db, tinfo)
    schema = arrow_schema(tinfo).remove_metadata()
    done_keys = set() if redo else existing_keys(tbl)
    total = info.total
    pending: list[EmbeddingRow] = []
    seen = written = skipped = 0

    def flush() -> None:
        nonlocal written, pending
        if pending:
            upsert(tbl, _arrow(pending, schema))
            written += len(pending)
            pending = []

    loader = trained.loader(shard_dir, batch_size=batch_size, **loader_kw)
    for batch in loader:
        valid = [k for k, ok in zip(batch.keys, batch.valid.tolist(), strict=True) if ok]
        if not valid:
            continue
        seen += len(valid)
        if done_keys.issuperset(valid):
            skipped += len(valid)
        else:
            eb = trained.embed_batch(batch)
            pending += rows_of_batch(
                eb,
                trained,
                shard_dir=shard_dir,
                shard_of=shard_of,
                member_exts=info.meta.member_names,
                per_view=per_view,
            )
            if len(pending) >= flush_rows:
                flush()
        if progress is not None:
            progress(seen, total)
    flush()
    if loader.errors:
        raise StoreError(
            f"{shard_dir}: {loader.errors} sample(s) could not be read (see the log; run "
            "mvdata verify): the rows of the others are written, run embed again after fixing"
        )
    index = ensure_indexes(tbl, policy)
    return EmbedSummary(
        db=db,
        table=table,
        samples=seen,
        written=written,
        skipped=skipped,
        rows_in_table=tbl.count_rows(),
        seconds=time.perf_counter() - start,
        index=index,
        model_id=trained.model_id,
        checkpoint_sha256=trained.checkpoint_sha256,
    )
