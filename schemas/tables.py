"""Parquet column contracts derived from the pydantic models, so there is one source of truth.

:func:`polars_schema` maps a flat model to a polars schema; :func:`frame_from_rows` validates
every row with the model and builds a frame with exactly that schema; :func:`check_frame`
refuses a frame whose columns or dtypes differ (used by writers before they write and by
readers after they read).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import polars as pl

# polars is imported inside the functions: the loaders import the contracts, and a DataLoader
# worker or a GPU machine without polars should not pay for (or need) it.


def _dtype(annotation: Any) -> pl.DataType:
    import polars as pl

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) != 1:
            raise TypeError(f"unsupported union {annotation!r}")
        return _dtype(non_none[0])
    if origin is Literal:
        return pl.String()
    if origin is list:
        return pl.List(_dtype(args[0]))
    if origin is dict:
        # Small string maps are stored as JSON text: parquet has no portable map type for polars.
        return pl.String()
    simple: dict[Any, pl.DataType] = {
        str: pl.String(),
        int: pl.Int64(),
        float: pl.Float64(),
        bool: pl.Boolean(),
    }
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"unsupported annotation {annotation!r}")


def polars_schema(model: type[BaseModel]) -> pl.Schema:
    """The polars schema of a flat model: one column per field, in field order."""
    import polars as pl

    hints = typing.get_type_hints(model)
    return pl.Schema({name: _dtype(hints[name]) for name in model.model_fields})


def frame_from_rows(
    model: type[BaseModel], rows: Iterable[Mapping[str, Any] | BaseModel]
) -> pl.DataFrame:
    """Validate each row with ``model`` and build a frame with exactly ``polars_schema(model)``."""
    import json

    import polars as pl

    schema = polars_schema(model)
    records: list[dict[str, Any]] = []
    for row in rows:
        obj = row if isinstance(row, model) else model.model_validate(row)
        rec = obj.model_dump()
        for name, dtype in schema.items():
            if dtype == pl.String() and isinstance(rec[name], dict):
                rec[name] = json.dumps(rec[name], sort_keys=True)
        records.append(rec)
    return (
        pl.DataFrame(records, schema=schema, orient="row")
        if records
        else pl.DataFrame(schema=schema)
    )


def check_frame(model: type[BaseModel], frame: pl.DataFrame, *, where: str = "") -> None:
    """Raise ``ValueError`` naming ``where`` when ``frame``'s columns/dtypes differ from ``model``."""
    import polars as pl

    expected = polars_schema(model)
    got = frame.schema
    if list(got.keys()) != list(expected.keys()):
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        raise ValueError(
            f"{where}: columns differ from {model.__name__}: missing {missing}, unexpected {extra}"
        )
    for name, dtype in expected.items():
        if got[name] != dtype and got[name] != pl.Null():
            raise ValueError(f"{where}: column {name!r} is {got[name]}, expected {dtype}")
