"""The geometric prior: label-free emotion probabilities ``p_geo`` from facial landmarks.

This project's design (docs/method.md, "Geometric prior"), not the paper's: canonical landmarks
(:mod:`schemas.landmarks`) -> action-unit proxies relative to a label-free reference
(:mod:`.features`) -> cosine to FACS/EMFACS prototypes -> softmax (:mod:`.facs`) -> one table per
dataset keyed by sample key (:mod:`.table`), computed once, looked up in the training loop.
"""

from __future__ import annotations

from mvmodel.prior.canonical import CANONICAL_LANDMARKS, canonical_index
from mvmodel.prior.facs import CLASSES, NEUTRAL, PROTOTYPES, geometric_prior, prototype_matrix
from mvmodel.prior.features import (
    PROXIES,
    aggregate_clip,
    canonical_array,
    compute_proxies,
    relative_features,
    robust_scale,
)
from mvmodel.prior.table import (
    PriorIndex,
    lookup,
    prior_table,
    read_prior_table,
    write_prior_table,
)

__all__ = [
    "CANONICAL_LANDMARKS",
    "CLASSES",
    "NEUTRAL",
    "PROTOTYPES",
    "PROXIES",
    "PriorIndex",
    "aggregate_clip",
    "canonical_array",
    "canonical_index",
    "compute_proxies",
    "geometric_prior",
    "lookup",
    "prior_table",
    "prototype_matrix",
    "read_prior_table",
    "relative_features",
    "robust_scale",
    "write_prior_table",
]
