"""The embeddings table's schema and metadata: the LanceDB model generated from
:class:`schemas.models.EmbeddingRow` (the one source of truth), the Arrow schema it is created
with, the table-level :class:`TableInfo` (which checkpoint filled it), and :class:`StoreError`,
the store's one error type for bad input.
"""

from __future__ import annotations

import contextlib
import json
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pyarrow as pa
from lancedb.pydantic import LanceModel, Vector
from pydantic import create_model

from schemas import check_version
from schemas.models import SCHEMA_VERSION, EmbeddingRow

__all__ = [
    "META_KEY",
    "VECTOR_COLUMNS",
    "StoreError",
    "TableInfo",
    "arrow_schema",
    "lance_errors",
    "lance_model",
    "table_info",
]

#: Key of the table-level metadata in the Arrow schema.
META_KEY = "mvmodel"

#: Field metadata that makes a column Lance's unenforced primary key.
PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}

#: The vector columns: left out of what a query returns.
VECTOR_COLUMNS = ("vector", "view_vectors")


class StoreError(ValueError):
    """Bad input to the store (a missing table, another model's table, a bad filter, ...): one
    message naming the database, the table and the problem."""


@contextlib.contextmanager
def lance_errors(where: str) -> Iterator[None]:
    """Turn LanceDB's errors (it raises ``ValueError``/``OSError``/``RuntimeError`` for bad input,
    unreachable stores and corrupt files alike) into one :class:`StoreError` naming ``where``."""
    try:
        yield
    except StoreError:
        raise
    except (ValueError, OSError, RuntimeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"{where}: {msg}") from exc


# --------------------------------------------------------------------------- schema
def _lance_annotation(name: str, annotation: Any, dim: int) -> Any:
    """The LanceModel annotation of an :class:`EmbeddingRow` field."""
    if name == "vector":
        return Vector(dim)
    if typing.get_origin(annotation) is Literal:
        return str  # LanceDB has no Literal; the contract validates rows before they are written
    return annotation


def lance_model(dim: int) -> type[LanceModel]:
    """The LanceDB table model for ``dim``-wide vectors: :class:`EmbeddingRow`'s fields in its
    order, ``vector`` a fixed-size float32 vector of ``dim`` (the one vector column: queries
    need not name it). Generated, so the contract in ``schemas/`` stays the one source of truth
    (a test checks the two agree)."""
    if dim < 1:
        raise StoreError(f"vector width must be positive, got {dim}")
    hints = typing.get_type_hints(EmbeddingRow)
    fields: dict[str, Any] = {}
    for name, info in EmbeddingRow.model_fields.items():
        default = ... if info.is_required() else info.default
        fields[name] = (_lance_annotation(name, hints[name], dim), default)
    model: type[LanceModel] = create_model(  # type: ignore[call-overload]
        f"EmbeddingRowLance{dim}", __base__=LanceModel, **fields
    )
    return model


def arrow_schema(info: TableInfo) -> pa.Schema:
    """The table's Arrow schema: :func:`lance_model`'s, with the table metadata and two changes
    a LanceModel cannot express:

    * ``key`` is the table's (unenforced) primary key (:data:`PRIMARY_KEY`): with it, Lance
      records the keys a merge-insert adds and turns two writers inserting the same new key at
      once into a conflict it retries; without it two concurrent ``embed`` runs left duplicate
      rows (25 rows for 21 keys, tests/test_store.py);
    * ``view_vectors`` is stored as float32 lists, not fixed-size vectors: LanceDB would take
      them for a second vector column, and every query would have to name its column.
    """
    schema = lance_model(info.dim).to_arrow_schema()
    k = schema.get_field_index("key")
    schema = schema.set(k, schema.field(k).with_nullable(False).with_metadata(PRIMARY_KEY))
    i = schema.get_field_index("view_vectors")
    schema = schema.set(i, pa.field("view_vectors", pa.list_(pa.list_(pa.float32())), True))
    return schema.with_metadata({META_KEY: json.dumps(asdict(info), sort_keys=True)})


# --------------------------------------------------------------------------- table info
@dataclass(frozen=True)
class TableInfo:
    """What a table records about the checkpoint that filled it (schema metadata ``mvmodel``)."""

    model_id: str
    checkpoint_sha256: str
    checkpoint_step: int
    weights: str
    dim: int
    classes: list[str] = field(default_factory=list)
    schema_version: str = SCHEMA_VERSION

    def same_checkpoint(self, other: TableInfo) -> bool:
        return self.checkpoint_sha256 == other.checkpoint_sha256 and self.dim == other.dim


def table_info(table: Any, where: str) -> TableInfo:
    """The table's :class:`TableInfo`, after checking it is an mvmodel embeddings table of this
    schema major version with every contract column (a :class:`StoreError` naming the missing
    ones otherwise)."""
    schema: pa.Schema = table.schema
    raw = (schema.metadata or {}).get(META_KEY.encode())
    if raw is None:
        raise StoreError(f"{where}: no '{META_KEY}' metadata: not a table written by mvmodel embed")
    try:
        info = TableInfo(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where}: unreadable '{META_KEY}' metadata ({exc})") from None
    try:
        check_version(info.schema_version, where=where)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    missing = [n for n in EmbeddingRow.model_fields if n not in schema.names]
    if missing:
        raise StoreError(
            f"{where}: missing column(s) {', '.join(missing)}: not an embeddings table of schema "
            f"{SCHEMA_VERSION} (embed again into a new table)"
        )
    vec = schema.field("vector").type
    if not pa.types.is_fixed_size_list(vec) or vec.list_size != info.dim:
        raise StoreError(f"{where}: column 'vector' is {vec}, the metadata says {info.dim} wide")
    return info
