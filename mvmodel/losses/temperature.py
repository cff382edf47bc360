"""Learnable temperature τ, stored as log τ and clamped to [min, max].

The paper says the temperature sets the gradient sharpness; the clamp range [0.01, 1] and the
log parametrisation are this project's design (docs/method.md, "Notation").
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LearnableTemperature(nn.Module):
    """τ = exp(log_tau), clamped to ``[min, max]`` with a straight-through clamp.

    Forward returns the clamped value, but the gradient passes to ``log_tau`` as if no clamp
    were there (straight-through). A hard ``torch.clamp`` would give a zero gradient once the
    optimizer pushed ``log_tau`` past a bound, and τ would stay stuck there until something
    else moved it; with the straight-through clamp the loss can always pull τ back inside, and
    ``clamp_()`` (called after each optimizer step) keeps the stored value in range.

    Args:
        init: initial τ.
        min: smallest τ the forward returns.
        max: largest τ the forward returns.
    """

    def __init__(self, init: float = 0.07, min: float = 0.01, max: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < min <= init <= max:
            raise ValueError(f"need 0 < min <= init <= max, got {min}, {init}, {max}")
        self.log_min = math.log(min)
        self.log_max = math.log(max)
        self.log_tau = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        """Return τ as a 0-d tensor, clamped in value, straight-through in gradient."""
        raw = self.log_tau
        clamped = raw.clamp(self.log_min, self.log_max)
        # value of `clamped`, gradient of `raw`
        return torch.exp(raw + (clamped - raw).detach())

    @torch.no_grad()
    def clamp_(self) -> LearnableTemperature:
        """Clamp the stored log τ in place (call after ``optimizer.step()``); returns self."""
        self.log_tau.clamp_(self.log_min, self.log_max)
        return self

    def extra_repr(self) -> str:
        return (
            f"tau={math.exp(float(self.log_tau)):.4g}, "
            f"min={math.exp(self.log_min):.4g}, max={math.exp(self.log_max):.4g}"
        )
