"""Training losses of MultiviewVLM.

Paper's words (arXiv 2505.09336, abstract; figure as described by a third party, see
docs/method.md): multiview contrastive learning with *stable positive-negative pair sampling*;
a *gradient-friendly* loss for smoother convergence; pseudo-labels from generated text prompts
guiding an image-text alignment with image->text and text->image terms; positives = the views of
one sample and matching image-text pairs, negatives = other emotions; a sigmoid, cosine
similarity, and a temperature that sets gradient sharpness; optimised for distributed training.

This project's design (the paper's formulas are not available): the exact form of each loss
(a fixed M times a MEAN over negatives, positives contrasted against negatives only, masking of
negatives that share a confident pseudo-label, soft-target i2t, multi-positive t2i over
confident samples, a balanced SigLIP-style pairwise variant), the temperature's log
parametrisation, [0.01, 1] clamp and straight-through gradient, and the DDP scheme: anchors are
local rows, partners come from a batch gathered with gradient, counts are global, and each rank
returns ``world_size · local_sum / global_count`` so that the mean over ranks, and the
DDP-averaged gradient, equal those of one process on the concatenated batch.
"""

from __future__ import annotations

from .gather import gather_no_grad, gather_with_grad, is_distributed, local_offset
from .image_text import ImageTextLoss, ImageTextLossOutput
from .multiview import (
    DEFAULT_NOMINAL_NEGATIVES,
    GatheredViews,
    MultiviewContrastiveLoss,
    MultiviewStats,
    gather_views,
    negative_sample_mask,
)
from .sigmoid import SigmoidMultiviewLoss, SigmoidStats
from .temperature import LearnableTemperature

__all__ = [
    "DEFAULT_NOMINAL_NEGATIVES",
    "GatheredViews",
    "ImageTextLoss",
    "ImageTextLossOutput",
    "LearnableTemperature",
    "MultiviewContrastiveLoss",
    "MultiviewStats",
    "SigmoidMultiviewLoss",
    "SigmoidStats",
    "gather_no_grad",
    "gather_views",
    "gather_with_grad",
    "is_distributed",
    "local_offset",
    "negative_sample_mask",
]
