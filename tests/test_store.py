"""Embeddings in LanceDB (``mvmodel.store``, ``mvmodel embed|search|classify``): a tiny trained
run embedded from real shards into a real LanceDB table; the contract; idempotent merge by key;
resume after a real ``kill -9``; two real processes writing one table; readers during a write;
the filtered-query guarantee with a real ANN index; the registered text function; classify;
PNG strips; a mesh query; an S3 table on a real moto server process; one clear error per bad
input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.mvmodel_app import app
from mvdata.build.config import BuildConfig
from mvdata.build.driver import build
from mvdata.shards.index import read_index
from mvdata.shards.names import shard_paths
from mvdata.synth.facemodel import procedural_face
from mvdata.synth.generate import SynthConfig
from mvdata.synth.writer import write_synth
from mvmodel.checkpoint import read_weights, write_weights
from mvmodel.config import load_config
from mvmodel.inference import TrainedModel
from mvmodel.store.embed import embed_to_table
from mvmodel.store.schema import StoreError, TableInfo, arrow_schema, lance_model
from mvmodel.store.search import (
    classify,
    count_matching,
    nearest,
    search_vector,
    similar,
    text_search,
)
from mvmodel.store.table import (
    IndexPolicy,
    connect,
    create_or_open,
    ensure_indexes,
    has_vector_index,
    open_table,
    upsert,
)
from mvmodel.train.loop import train
from schemas.models import EmbeddingRow

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)
runner = CliRunner()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """21 static samples of 3 procedural identities, 3 views, 32 px, rgb + depth, 3 shards."""
    root = tmp_path_factory.mktemp("store-data")
    cfg = SynthConfig(
        num_identities=3,
        expressions=("neutral", "happiness", "surprise", "sadness"),
        intensities=(3, 4),
        texture_size=64,
        seed=2,
    )
    write_synth(cfg, procedural_face(), root / "synth")
    out = root / "shards"
    bcfg = BuildConfig(
        source="synthetic", source_root=str(root / "synth"), image_size=32, samples_per_shard=8
    )
    build(bcfg, str(out), workers=1)
    return out


def _tiny(cache: Path, *extra: str) -> list[str]:
    """A run of a few seconds (as tests/test_train.py's ``tiny``)."""
    return [
        "model.image_size=32",
        "model.embed_dim=32",
        "model.proj_hidden=64",
        "model.fusion_depth=1",
        "data.batch_size=4",
        "data.num_workers=1",
        "text.prompts.max_per_class=4",
        f"text.cache_dir={cache}",
        "optim.warmup_steps=1",
        "optim.max_steps=2",
        "run.checkpoint_every=1",
        "run.log_every=1",
        "run.progress=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained run (the table's model) and its step-1 checkpoint: another checkpoint, whose
    vectors live in another space."""
    root = tmp_path_factory.mktemp("store-runs")
    cfg = load_config(None, _tiny(root / "cache"))
    train(str(shards), root / "run", cfg, echo=lambda _m: None)
    return root / "run", root / "run" / "checkpoints" / "ckpt-00000001"


@pytest.fixture(scope="module")
def model(runs: tuple[Path, Path]) -> TrainedModel:
    return TrainedModel.load(runs[0])


@pytest.fixture(scope="module")
def db(shards: Path, runs: tuple[Path, Path], model: TrainedModel, tmp_path_factory) -> str:
    """One table, ``faces``, holding every sample (with per-view vectors)."""
    d = str(tmp_path_factory.mktemp("store-db") / "lancedb")
    summary = embed_to_table(runs[0], shards, d, "faces", per_view=True, model=model)
    assert summary.written == summary.samples == 21
    return d


def _open(db: str, name: str = "faces") -> tuple[Any, TableInfo]:
    return open_table(connect(db), name, db)


def _all_rows(table: Any) -> list[dict[str, Any]]:
    return table.search().limit(None).to_arrow().to_pylist()


def fake_info(dim: int = 16) -> TableInfo:
    return TableInfo(
        model_id="fake-model",
        checkpoint_sha256="f" * 64,
        checkpoint_step=0,
        weights="/nonexistent/model.safetensors",
        dim=dim,
        classes=["a", "b"],
    )


def fake_rows(start: int, n: int, vectors: np.ndarray, info: TableInfo) -> pa.Table:
    """``n`` contract-valid rows ``k{start}..``; ``fold`` = index % 100 (for selectivity)."""
    rows = [
        EmbeddingRow(
            key=f"k{i:06d}",
            vector=vectors[i - start].tolist(),
            dataset="fake",
            source="fake",
            subject=f"S{i % 7}",
            sequence=f"q{i}",
            kind="static",
            frames=[0],
            fold=i % 100,
            expression=None,
            intensity=None,
            pseudo_label="a",
            pseudo_confidence=0.5,
            model_id=info.model_id,
            checkpoint_sha256=info.checkpoint_sha256,
            checkpoint_step=0,
            shard_dir="/nonexistent",
            shard="train-000000",
            members=[f"k{i:06d}.json"],
        ).model_dump()
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=arrow_schema(info).remove_metadata())


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --------------------------------------------------------------------------- the contract
def test_lance_model_is_the_contract() -> None:
    model = lance_model(32)
    assert list(model.model_fields) == list(EmbeddingRow.model_fields)
    schema = arrow_schema(fake_info(32))
    assert schema.names == list(EmbeddingRow.model_fields)
    assert schema.field("vector").type == pa.list_(pa.float32(), 32)
    # per-view vectors are plain lists: the fused vector stays the table's only vector column
    assert not pa.types.is_fixed_size_list(schema.field("view_vectors").type.value_type)
    assert "lancedb" not in (REPO / "schemas" / "models.py").read_text()


def test_embed_writes_contract_rows(db: str, shards: Path, model: TrainedModel) -> None:
    table, info = _open(db)
    assert info.checkpoint_sha256 == model.checkpoint_sha256 and info.dim == 32
    rows = _all_rows(table)
    assert len(rows) == 21 and len({r["key"] for r in rows}) == 21
    expected = {}
    for eb in model.embed_shards(shards, batch_size=8):
        assert eb.fused.shape == (len(eb.keys), model.trainer.vision.feature_dim)
        expected.update({k: (eb.f[i], eb.z[i]) for i, k in enumerate(eb.keys)})
    for r in rows:
        EmbeddingRow.model_validate(r)  # every stored row is a valid contract row
        assert r["model_id"] == model.model_id and r["checkpoint_step"] == model.step
        f, z = expected[r["key"]]
        np.testing.assert_allclose(r["vector"], f, atol=1e-5)
        np.testing.assert_allclose(np.asarray(r["view_vectors"]), z, atol=1e-5)
        assert r["pseudo_label"] in model.classes and 0 < r["pseudo_confidence"] <= 1
        assert r["expression"] in ("neutral", "happiness", "surprise", "sadness")
        # shard and member names open the sample
        idx = shard_paths(r["shard_dir"], r["shard"])["idx"]
        names = {e[3] for s in read_index(Path(idx).read_bytes()) for e in s}
        assert set(r["members"]) <= names and f"{r['key']}.json" in r["members"]


def test_single_view_run_is_stored_from_its_own_view(
    db: str, shards: Path, model: TrainedModel, tmp_path: Path
) -> None:
    """A run trained on view 0 only (the single-view baseline's ``data.views``) is embedded
    from that view, as it trained, in the store as in the evaluation (one code path)."""
    tensors, meta = read_weights(model.source)
    cfg = json.loads(meta["config"])
    cfg["data"]["views"] = [0]
    write_weights(
        tmp_path / "v0" / "model.safetensors", tensors, {**meta, "config": json.dumps(cfg)}
    )
    one = TrainedModel.load(tmp_path / "v0", device="cpu")
    assert one.trained_views == (0,)
    d = str(tmp_path / "lancedb")
    embed_to_table(tmp_path / "v0", shards, d, "v0", per_view=True, model=one)
    rows = {r["key"]: r for r in _all_rows(_open(d, "v0")[0])}
    full = {r["key"]: r for r in _all_rows(_open(db)[0])}
    assert len(rows) == 21 and all(len(r["view_vectors"]) == 1 for r in rows.values())
    # the same weights see different inputs: view 0 alone is not the three views' fusion
    key = sorted(rows)[0]
    assert not np.allclose(rows[key]["vector"], full[key]["vector"], atol=1e-4)


def test_embed_again_merges_by_key_and_skips_done_rows(
    db: str, shards: Path, runs: tuple[Path, Path], model: TrainedModel
) -> None:
    table, _ = _open(db)
    again = embed_to_table(runs[0], shards, db, "faces", per_view=True, model=model)
    assert again.written == 0 and again.skipped == 21 and again.rows_in_table == 21
    # rows lost (as if a run had stopped before writing them) are embedded again, only those
    gone = ["synthetic_S0001_HA03", "synthetic_S0002_SU04"]
    table.delete("key IN ('" + "', '".join(gone) + "')")
    before = {r["key"]: r["vector"] for r in _all_rows(table)}
    again = embed_to_table(runs[0], shards, db, "faces", per_view=True, model=model, batch_size=4)
    # only the batches (of 4) holding a lost key ran through the model
    assert 2 <= again.written <= 8 and again.skipped >= 13 and again.rows_in_table == 21
    table, _ = _open(db)  # a table handle keeps the version it was opened at
    after = {r["key"]: r["vector"] for r in _all_rows(table)}
    assert set(after) == set(before) | set(gone) and len(after) == 21
    # --redo: every row embedded again and replaced by key, still 21 rows
    args = ["embed", str(runs[0]), str(shards), "--db", db, "--table", "faces"]
    r = runner.invoke(app, [*args, "--per-view", "--redo"])
    assert r.exit_code == 0, r.output
    assert "21 written, 0 already there; 21 rows" in r.output


def test_resume_after_kill(shards: Path, runs: tuple[Path, Path], tmp_path: Path) -> None:
    d = str(tmp_path / "lancedb")
    script = textwrap.dedent(
        f"""
        import time
        from mvmodel.store.embed import embed_to_table
        def slow(done, total):
            time.sleep(0.4)  # a window to be killed in, after the first flushes
        embed_to_table({str(runs[0])!r}, {str(shards)!r}, {d!r}, "t", batch_size=2,
                       flush_rows=4, progress=slow)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            conn = lancedb.connect(d)
            if "t" in conn.list_tables().tables:
                count = conn.open_table("t").count_rows()
                if count >= 4:
                    break
        assert proc.poll() is None, "the embed job ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    table, _ = _open(d, "t")
    kept = table.count_rows()
    assert 4 <= kept < 21
    summary = embed_to_table(runs[0], shards, d, "t", batch_size=2)
    assert summary.skipped >= kept - 2  # every batch whose rows were all written is skipped
    assert summary.written <= 21 - kept + 2
    table, _ = _open(d, "t")
    keys = [r["key"] for r in _all_rows(table)]
    assert len(keys) == 21 and len(set(keys)) == 21


def test_two_processes_embed_into_one_table(
    shards: Path, runs: tuple[Path, Path], tmp_path: Path
) -> None:
    d = str(tmp_path / "lancedb")
    script = textwrap.dedent(
        f"""
        from mvmodel.store.embed import embed_to_table
        s = embed_to_table({str(runs[0])!r}, {str(shards)!r}, {d!r}, "t", batch_size=4,
                           flush_rows=4)
        print("written", s.written)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    table, _ = _open(d, "t")
    rows = _all_rows(table)
    assert len(rows) == 21 and len({r["key"] for r in rows}) == 21
    for r in rows:
        EmbeddingRow.model_validate(r)
    assert len(similar(table, rows[0]["key"], limit=5)) == 5


def test_a_preempted_compaction_is_tried_again(tmp_path: Path) -> None:
    """Lance's retryable commit conflict (another writer's merge committed first) makes the
    compaction plan again on the latest version; other errors, and the last attempt's, reach
    the caller. The conflict is injected around a real table: two real writers hit it too
    rarely to test it (once in a CI run of the test above)."""
    from mvmodel.store.table import optimize_with_retry

    d = str(tmp_path / "lancedb")
    table = create_or_open(connect(d), "t", d, fake_info())

    class Preempted:
        def __init__(self, failures: int, message: str) -> None:
            self.failures, self.message, self.latest = failures, message, 0

        def optimize(self) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError(self.message)
            table.optimize()

        def checkout_latest(self) -> None:
            self.latest += 1
            table.checkout_latest()

    conflict = "lance error: Retryable commit conflict for version 9: This Rewrite transaction was preempted"
    once = Preempted(2, conflict)
    optimize_with_retry(once)
    assert once.failures == 0 and once.latest == 2
    with pytest.raises(RuntimeError, match="Retryable commit conflict"):
        optimize_with_retry(Preempted(5, conflict), attempts=3)
    other = Preempted(1, "lance error: corrupt file")
    with pytest.raises(RuntimeError, match="corrupt"):
        optimize_with_retry(other)
    assert other.latest == 0


def test_readers_see_whole_versions_while_a_writer_ingests(tmp_path: Path) -> None:
    d = str(tmp_path / "lancedb")
    info = fake_info()
    create_or_open(connect(d), "t", d, info)
    # The writer imports only the store (no torch): fake rows of the real schema.
    writer = textwrap.dedent(
        f"""
        import numpy as np
        import pyarrow as pa
        from mvmodel.store.schema import TableInfo, arrow_schema
        from mvmodel.store.table import connect, create_or_open, upsert
        info = TableInfo(**{asdict(info)!r})
        table = create_or_open(connect({d!r}), "t", {d!r}, info)
        schema = arrow_schema(info).remove_metadata()
        rng = np.random.default_rng(0)
        for b in range(20):
            v = rng.standard_normal((50, info.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            rows = [dict(key=f"k{{b * 50 + i:06d}}", vector=v[i].tolist(), view_vectors=None,
                         dataset="fake", source="fake", subject="S", sequence="q",
                         kind="static", frames=[0], fold=i, expression=None, intensity=None,
                         pseudo_label="a", pseudo_confidence=0.5, zero_shot_label=None,
                         zero_shot_confidence=None, model_id=info.model_id,
                         checkpoint_sha256=info.checkpoint_sha256, checkpoint_step=0,
                         shard_dir="/x", shard="train-000000", members=[], schema_version="1.0")
                    for i in range(50)]
            upsert(table, pa.Table.from_pylist(rows, schema=schema))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO, stderr=subprocess.PIPE)
    seen = set()
    q = _unit(1, 16, 9)[0]
    while proc.poll() is None:
        table, _ = _open(d, "t")
        n = table.count_rows()
        assert n % 50 == 0, f"a reader saw {n} rows: half a batch"
        seen.add(n)
        hits = search_vector(table, q, limit=5)
        assert len(hits) == min(5, n)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    table, _ = _open(d, "t")
    assert table.count_rows() == 1000 and len(seen) > 1


# --------------------------------------------------------------------------- ANN and filters
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray]:
    """3,000 fake rows with an IVF_HNSW_SQ index (min_rows lowered so it is built)."""
    d = str(tmp_path_factory.mktemp("store-ann") / "lancedb")
    info = fake_info()
    table = create_or_open(connect(d), "t", d, info)
    vecs = _unit(3000, info.dim, 1)
    upsert(table, fake_rows(0, 3000, vecs, info))
    what = ensure_indexes(table, IndexPolicy(min_rows=1000, rows_per_partition=500))
    assert "IVF_HNSW_SQ" in what and has_vector_index(table)
    return table, vecs


def _recall(hits: list[dict[str, Any]], vecs: np.ndarray, q: np.ndarray, mask: np.ndarray) -> float:
    scores = np.where(mask, vecs @ q, -np.inf)
    truth = {f"k{i:06d}" for i in np.argsort(-scores)[:10]}
    return len(truth & {h["key"] for h in hits}) / 10


@pytest.mark.parametrize("bound", [1, 10, 50])
def test_filtered_queries_return_limit_rows_with_high_recall(
    big: tuple[Any, np.ndarray], bound: int
) -> None:
    table, vecs = big
    folds = np.arange(3000) % 100
    queries = _unit(20, 16, 2)
    policy = IndexPolicy(min_rows=1000, rows_per_partition=500)
    recalls = []
    for q in queries:
        hits = search_vector(table, q, where=f"fold < {bound}", limit=10, policy=policy)
        assert len(hits) == 10
        assert all(h["fold"] < bound for h in hits)
        recalls.append(_recall(hits, vecs, q, folds < bound))
    assert np.mean(recalls) >= 0.95, recalls
    # the safety net: an ANN answer shorter than the matching rows allow is answered exactly
    exact_never = IndexPolicy(min_rows=1000, rows_per_partition=500, exact_rows=0, nprobes=1)
    for q in queries[:5]:
        hits = search_vector(table, q, where="fold < 1", limit=40, policy=exact_never)
        assert len(hits) == 30  # every matching row, though one partition of six was probed
    assert count_matching(table, "fold < 1") == 30


def test_partitions_hold_at_most_rows_per_partition() -> None:
    policy = IndexPolicy(rows_per_partition=500_000)
    got = [policy.num_partitions(n) for n in (0, 100_000, 500_000, 500_001, 999_999, 1_000_000)]
    assert got == [1, 1, 1, 2, 2, 2]


class _CountingTable:
    """A real table whose ``count_rows`` calls are counted (everything else passes through)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.counts: list[str | None] = []

    def count_rows(self, where: str | None = None) -> int:
        self.counts.append(where)
        return int(self._table.count_rows(where))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_an_unfiltered_query_counts_no_rows(big: tuple[Any, np.ndarray]) -> None:
    """~1 ms of a 9 ms query at 1M rows: rows are counted for a filter, or for a short answer."""
    table, vecs = big
    spy = _CountingTable(table)
    policy = IndexPolicy(min_rows=1000, rows_per_partition=500)
    q = _unit(1, 16, 4)[0]
    hits = search_vector(spy, q, limit=10, policy=policy)
    assert len(hits) == 10 and spy.counts == []
    assert _recall(hits, vecs, q, np.ones(len(vecs), bool)) >= 0.9
    search_vector(spy, q, where="fold < 50", limit=10, policy=policy)
    assert spy.counts == ["fold < 50"]
    # asking for more rows than the table holds: the short ANN answer is checked by a count
    spy.counts.clear()
    assert len(search_vector(spy, q, limit=5000, policy=policy)) == 3000
    assert spy.counts == [None]


def test_ann_alone_misses_rows_under_a_selective_filter(big: tuple[Any, np.ndarray]) -> None:
    """Why the rule exists: the bare prefiltered ANN query probing one partition returns fewer
    rows than match (the store's search never does, test above)."""
    table, _ = big
    policy = IndexPolicy(min_rows=1000, rows_per_partition=500, nprobes=1)
    short = [
        len(nearest(table, q, "fold < 1", 40, False, policy, ["key"])) for q in _unit(5, 16, 3)
    ]
    assert min(short) < 30, short


# --------------------------------------------------------------------------- queries
def test_text_search_through_the_registered_function(db: str, model: TrainedModel) -> None:
    table, info = _open(db)
    ours = text_search(table, info, "a face showing surprise", limit=5)
    assert len(ours) == 5
    # plain LanceDB: the table's embedding function embeds the text (import registers it)
    plain = lancedb.connect(db).open_table("faces")
    got = plain.search("a face showing surprise").distance_type("cosine").limit(5).to_list()
    assert [h["key"] for h in got] == [h["key"] for h in ours]
    vec = model.embed_text(["a face showing surprise"])[0]
    best = max(_all_rows(table), key=lambda r: float(np.dot(r["vector"], vec)))
    assert ours[0]["key"] == best["key"]


def test_similar_leaves_the_query_out_and_filters(db: str) -> None:
    table, _ = _open(db)
    key = "synthetic_S0001_HA03"
    hits = similar(table, key, limit=30)
    assert key not in {h["key"] for h in hits} and len(hits) == 20
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    other = similar(table, key, where="subject != 'S0001'", limit=30)
    assert other and all(h["subject"] != "S0001" for h in other)


def test_classify_writes_zero_shot_columns(db: str) -> None:
    table, info = _open(db)
    summary = classify(table, info)
    assert summary.rows == 21 and sum(summary.counts.values()) == 21
    rows = _all_rows(table)
    for r in rows:
        # same prototypes, same stored vectors: the embed job's pseudo-label
        assert r["zero_shot_label"] == r["pseudo_label"]
        assert r["zero_shot_confidence"] == pytest.approx(r["pseudo_confidence"], abs=1e-5)
        assert r["vector"] is not None and len(r["vector"]) == 32
    r = runner.invoke(app, ["classify", "--db", db, "--table", "faces", "--where", "fold >= 0"])
    assert r.exit_code == 0, r.output
    assert "classified" in r.output


def test_cli_search_formats(db: str, tmp_path: Path) -> None:
    base = ["--db", db, "--table", "faces", "-n", "4"]
    r = runner.invoke(app, ["search", "similar", "--key", "synthetic_S0001_HA03", *base])
    assert r.exit_code == 0, r.output
    assert "synthetic_S0001" in r.output
    r = runner.invoke(app, ["search", "text", "a face showing surprise", *base, "--format", "json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert len(hits) == 4 and {"key", "subject", "shard", "members", "similarity"} <= set(hits[0])
    assert "vector" not in hits[0]
    png = tmp_path / "hits.png"
    similar_args = ["search", "similar", "--key", "synthetic_S0001_HA03", *base]
    png_args = ["--where", "subject = 'S0002'", "--format", "png", "--png-out", str(png)]
    r = runner.invoke(app, [*similar_args, *png_args])
    assert r.exit_code == 0, r.output
    with Image.open(png) as im:
        # the query and its 4 hits: a row each (label + views shown at least 128 px)
        assert im.format == "PNG" and im.height >= 5 * 128


def test_mesh_query_renders_with_the_dataset_rig(db: str, shards: Path, tmp_path: Path) -> None:
    from mvdata.build.query import mesh_shards
    from mvmodel.store.mesh_query import similar_to_shards

    table, info = _open(db)
    mesh = next((shards.parent / "synth" / "static").rglob("*.ply"))
    q = mesh_shards(mesh, str(shards), tmp_path / "q")
    meta = json.loads((Path(q) / "dataset.json").read_text())
    ref = json.loads((shards / "dataset.json").read_text())
    assert meta["views"] == ref["views"] and meta["image_size"] == ref["image_size"]
    hits = similar_to_shards(table, info, q, limit=3)
    assert len(hits) == 3
    png = tmp_path / "mesh.png"
    args = ["search", "similar", "--mesh", str(mesh), "--db", db, "--table", "faces", "-n", "2"]
    r = runner.invoke(app, [*args, "--format", "png", "--png-out", str(png)])
    assert r.exit_code == 0, r.output
    with Image.open(png) as im:  # the mesh as rendered for the query, then its 2 hits
        assert im.height >= 3 * 128


# --------------------------------------------------------------------------- bad input
def _fails(args: list[str], *needles: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), r.output
    for n in needles:
        assert n in err[0], err[0]


def test_bad_input_one_clear_error_each(
    db: str, shards: Path, runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base = ["--db", db, "--table", "faces"]
    _fails(["search", "similar", "--key", "x", "--db", db, "--table", "nope"], "no table 'nope'")
    _fails(["search", "similar", "--key", "nokey", *base], "no row with key 'nokey'")
    _fails(
        ["search", "similar", "--key", "synthetic_S0001_HA03", *base, "--where", "subject = = 'x"],
        "filter",
        "not valid",
    )
    _fails(
        ["search", "similar", "--key", "synthetic_S0001_HA03", *base, "--where", "nosuch = 1"],
        "No field named nosuch",
    )
    # a query embedded by another model
    _fails(
        ["search", "text", "a smile", *base, "--model", str(runs[1])], "another model", "checkpoint"
    )
    # another checkpoint into this table
    _fails(["embed", str(runs[1]), str(shards), *base], "another checkpoint", "--table")
    # a vector of the wrong width
    table, _ = _open(db)
    with pytest.raises(StoreError, match="33.*32"):
        search_vector(table, np.ones(33, np.float32))
    bad = fake_rows(0, 3, _unit(3, 16, 0), fake_info(16))
    with pytest.raises(StoreError, match="writing rows"):
        upsert(table, bad)
    # a table missing a column of the contract
    d = str(tmp_path / "lancedb")
    schema = arrow_schema(fake_info())
    lancedb.connect(d).create_table("old", schema=schema.remove(schema.get_field_index("members")))
    _fails(
        ["search", "similar", "--key", "x", "--db", d, "--table", "old"],
        "missing column(s) members",
    )
    # two of --key/--mesh, or neither
    _fails(["search", "similar", *base], "exactly one of --key or --mesh")


# --------------------------------------------------------------------------- object storage
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def s3_server() -> Any:
    """A real S3-compatible server (moto's server mode) on 127.0.0.1, in its own process."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="mv-store")
        yield endpoint, s3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_table_on_a_real_server(s3_server: Any, shards: Path, runs: tuple[Path, Path]) -> None:
    endpoint, s3 = s3_server
    opts = {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_endpoint": endpoint,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }
    uri = "s3://mv-store/embeddings"
    storage = [a for k, v in opts.items() for a in ("--storage-option", f"{k}={v}")]
    r = runner.invoke(
        app, ["embed", str(runs[0]), str(shards), "--db", uri, "--table", "faces"] + storage
    )
    assert r.exit_code == 0, r.output
    assert "21 written" in r.output
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket="mv-store")["Contents"]]
    assert any(k.startswith("embeddings/faces.lance/") for k in objects)
    table, _ = open_table(connect(uri, opts), "faces", uri)
    assert table.count_rows() == 21
    args = ["search", "similar", "--key", "synthetic_S0001_HA03", "--db", uri, "--table"]
    r = runner.invoke(app, [*args, "faces", "--format", "json", "-n", "3", *storage])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 3
