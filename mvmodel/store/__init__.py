"""Embeddings in LanceDB: the table (schema from ``schemas``), the embed job, queries.

Importing this package registers the ``mvmodel-text`` LanceDB embedding function, so that
``table.search("a face showing surprise")`` embeds its text with the table's text tower.
"""

from __future__ import annotations

from mvmodel.store.embedding_function import MvmodelText
from mvmodel.store.schema import StoreError, TableInfo, lance_model
from mvmodel.store.table import IndexPolicy, connect, ensure_indexes, open_table

__all__ = [
    "IndexPolicy",
    "MvmodelText",
    "StoreError",
    "TableInfo",
    "connect",
    "ensure_indexes",
    "lance_model",
    "open_table",
]
