"""Evaluation of trained runs: subject-independent protocols, probes, zero-shot, clustering,
baselines through the same code path, and a report (``mvmodel evaluate``); the synthetic
benchmark that produces all of it from a seed (``mvmodel benchmark``)."""

from __future__ import annotations

from mvmodel.evaluate.pipeline import EvaluationResult, evaluate
from mvmodel.evaluate.protocols import PRESETS, Protocol, make_protocol

__all__ = ["PRESETS", "EvaluationResult", "Protocol", "evaluate", "make_protocol"]
