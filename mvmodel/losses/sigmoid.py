"""Pairwise sigmoid multiview loss (the optional gradient-friendly variant).

Paper's words (docs/method.md): a *gradient-friendly* loss; the figure shows a sigmoid and
cosine similarity; positives are the views of one sample, negatives other emotions.

This project's design, SigLIP style: for view pairs (i, j)
``l_ij = -log σ(y_ij · (z_i·z_j/τ + b))`` with a learnable bias b, y = +1 for two different
views/frames of the same sample and y = -1 for views of two different valid samples; pairs of
different samples that share a confident pseudo-label are masked (neither pulled nor pushed).
``|∂l_ij/∂(z_i·z_j)| = σ(-y·x)/τ <= 1/τ``: every pair's gradient is bounded by 1/τ, whatever the
other pairs do (no softmax coupling).

Balance: the loss is ``mean over positive pairs + mean over negative pairs`` (each mean over the
GLOBAL gathered batch), so positives and negatives always weigh 1 : 1 whatever the batch's
make-up; with that balance SigLIP's very negative initial bias (which offsets a flood of
negatives) is not needed and b starts at 0 by default.

DDP: anchors are this rank's views, partners come from the gathered batch, the global pair
counts come from gathered labels, and rank r returns ``world_size · (S_r⁺/|P| + S_r⁻/|N|)``:
the mean over ranks is the single-process loss on the concatenated batch, and the DDP-averaged
gradients are the single-process gradients (see :mod:`mvmodel.losses.multiview`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .multiview import gather_views, negative_sample_mask


@dataclass(frozen=True)
class SigmoidStats:
    """Logging values of the last forward (detached 0-d tensors of this rank, DDP-scaled).

    Attributes:
        pos_loss: this rank's share of the positive-pair mean.
        neg_loss: this rank's share of the negative-pair mean.
        bias: the current bias b.
    """

    pos_loss: torch.Tensor
    neg_loss: torch.Tensor
    bias: torch.Tensor


class SigmoidMultiviewLoss(nn.Module):
    """Balanced pairwise sigmoid loss over views (module docstring for formula and DDP scheme).

    Args:
        rank: this process's rank.
        world_size: number of ranks; embeddings are gathered with gradient when > 1 and a
            process group is initialised.
        init_bias: initial value of the learnable bias b.

    After each forward, ``last_stats`` holds a :class:`SigmoidStats`.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, init_bias: float = 0.0) -> None:
        super().__init__()
        self.rank = rank
        self.world_size = world_size
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.last_stats: SigmoidStats | None = None

    def forward(
        self,
        z: torch.Tensor,
        valid: torch.Tensor,
        pseudo: torch.Tensor,
        tau: torch.Tensor | float,
    ) -> torch.Tensor:
        """Loss of this rank (its mean over ranks is the global loss).

        Args:
            z: [B, N, D] L2-normalised embeddings of the local batch, N = T·V views/frames.
            valid: [B] bool; padding rows (False) are in no pair.
            pseudo: [B] long confident pseudo-label, -1 = not confident.
            tau: temperature, 0-d tensor (may require grad) or float.

        Returns:
            0-d tensor; 0 (connected to the graph) when there is no pair.
        """
        # Similarities / τ reach 100 at τ = 0.01: bf16 autocast would round them by ~0.4.
        with torch.autocast(z.device.type, enabled=False):
            return self._loss(z, valid, pseudo, tau)

    def _loss(
        self,
        z: torch.Tensor,
        valid: torch.Tensor,
        pseudo: torch.Tensor,
        tau: torch.Tensor | float,
    ) -> torch.Tensor:
        g = gather_views(z, valid, pseudo, self.rank, self.world_size)
        b, n, _ = g.z.shape
        tau_t = torch.as_tensor(tau, dtype=g.z.dtype, device=g.z.device)
        bias = self.bias.to(g.z.dtype)
        neg_all = negative_sample_mask(g.valid_all, g.pseudo_all)  # [Bg, Bg]
        # Global pair counts (ordered pairs, as every view is an anchor once).
        n_pos = g.valid_all.sum() * (n * (n - 1))
        n_neg = neg_all.sum() * (n * n)
        neg = neg_all[g.offset : g.offset + b]  # [B, Bg]

        off_diag = ~torch.eye(n, dtype=torch.bool, device=g.z.device)
        x_pos = torch.einsum("bnd,bmd->bnm", g.z, g.z) / tau_t + bias  # [B, N, N]
        x_neg = torch.einsum("bnd,cmd->bncm", g.z, g.z_all) / tau_t + bias  # [B, N, Bg, N]
        pos_mask = g.valid[:, None, None] & off_diag  # [B, N, N]
        neg_mask = neg[:, None, :, None]  # [B, 1, Bg, 1]
        # logsigmoid is finite for every finite input, so masking by product is NaN-safe.
        pos_sum = (-F.logsigmoid(x_pos) * pos_mask).sum()
        neg_sum = (-F.logsigmoid(-x_neg) * neg_mask).sum()
        ws = self.world_size
        pos_loss = pos_sum * (ws / n_pos.clamp_min(1).to(pos_sum.dtype))
        neg_loss = neg_sum * (ws / n_neg.clamp_min(1).to(neg_sum.dtype))
        self.last_stats = SigmoidStats(
            pos_loss=pos_loss.detach(), neg_loss=neg_loss.detach(), bias=bias.detach()
        )
        return pos_loss + neg_loss
