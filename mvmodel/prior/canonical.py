"""Canonical landmarks for the geometric prior: a re-export of the contract in
:mod:`schemas.landmarks` (the contract lives there so that data tools can use it without torch)."""

from __future__ import annotations

from schemas.landmarks import (
    BND_TO_CANONICAL,
    BOSPHORUS_LABELS,
    BOSPHORUS_TO_CANONICAL,
    CANONICAL_LANDMARKS,
    IBUG_TO_CANONICAL,
    MAPPING_STATUS,
    canonical_index,
    canonical_name,
)

__all__ = [
    "BND_TO_CANONICAL",
    "BOSPHORUS_LABELS",
    "BOSPHORUS_TO_CANONICAL",
    "CANONICAL_LANDMARKS",
    "IBUG_TO_CANONICAL",
    "MAPPING_STATUS",
    "canonical_index",
    "canonical_name",
]
