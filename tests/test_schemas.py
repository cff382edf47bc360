"""The JSON Schema files checked in under schemas/ agree with the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from schemas import SCHEMA_VERSION, check_version
from schemas.export import schema_texts
from schemas.models import CONTRACTS, ManifestRow, ShardRow, SynthRow
from schemas.tables import check_frame, frame_from_rows, polars_schema

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def test_schema_files_match_models():
    texts = schema_texts()
    assert len(texts) == len(CONTRACTS)
    for name, text in texts.items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run python -m schemas.export"
        assert json.loads(path.read_text()) == json.loads(text), f"{name} is stale"


def test_no_stray_schema_files():
    on_disk = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert on_disk == set(schema_texts())


@pytest.mark.parametrize("model", [SynthRow, ManifestRow, ShardRow])
def test_parquet_columns_follow_models(model):
    schema = polars_schema(model)
    assert list(schema) == list(model.model_fields)
    empty = frame_from_rows(model, [])
    check_frame(model, empty, where="empty")
    with pytest.raises(ValueError, match="columns differ"):
        check_frame(model, empty.drop(next(iter(schema))), where="x.parquet")


def test_rows_are_validated():
    row = dict(
        key="a",
        shard_name="train-000000",
        status="ok",
        error_kind=None,
        error_message=None,
        subject="S1",
        sequence="q",
        fold=0,
        expression=None,
        intensity=None,
        num_frames=1,
        offset=0,
        num_bytes=10,
    )
    df = frame_from_rows(ShardRow, [row])
    assert df.schema["offset"] == pl.Int64
    with pytest.raises(ValueError):
        frame_from_rows(ShardRow, [{**row, "status": "maybe"}])
    with pytest.raises(ValueError):
        frame_from_rows(ShardRow, [{**row, "surprise": 1}])


def test_version_check():
    check_version(SCHEMA_VERSION, where="x")
    with pytest.raises(ValueError, match="not compatible"):
        check_version("99.0", where="dataset.json")
    with pytest.raises(ValueError, match="no schema_version"):
        check_version(None, where="dataset.json")
