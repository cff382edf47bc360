"""Versioned contracts of the project (see :mod:`schemas.models`)."""

from schemas.models import CONTRACTS, SCHEMA_VERSION
from schemas.tables import check_frame, frame_from_rows, polars_schema

__all__ = ["CONTRACTS", "SCHEMA_VERSION", "check_frame", "frame_from_rows", "polars_schema"]


def check_version(found: str | None, *, where: str) -> None:
    """Refuse data written under another major schema version, naming where it came from."""
    if found is None:
        raise ValueError(f"{where}: no schema_version: not written by mvdata")
    if found.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(
            f"{where}: schema version {found} is not compatible with this mvdata ({SCHEMA_VERSION})"
        )
