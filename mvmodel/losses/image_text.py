"""Image <-> text alignment against emotion prototypes, guided by soft pseudo-labels.

Paper's words (docs/method.md): pseudo-labels derived from generated text prompts guide an
implicit alignment of emotional semantics; image->text and text->image terms; matching
image-text pairs are positives, other emotions negatives.

This project's design:

- i2t: soft-target cross-entropy ``-Σ_k q_bk log softmax(f_b·cᵀ/τ)_k`` for each confident valid
  sample, averaged over those samples; the same for every per-view embedding ``z[b, n]``
  (averaged over views, then samples), weighted by ``view_weight``.
- t2i: for each class k with confident samples in the GATHERED batch, the prototype c_k is
  contrasted against the gathered fused embeddings. Positives: confident samples with
  ``argmax q == k``. Negatives: confident samples of other classes; samples that are not
  confident are left out, since they may well belong to k (the same false-negative reasoning as
  the multiview loss). As in the multiview loss each positive is contrasted against the
  negatives only (log-sum-exp form), ``l(k, p) = logaddexp(s_kp, logsumexp_n s_kn) - s_kp``;
  averaged over the positives of k, then over the classes that have positives and negatives.

DDP: every term uses the scheme of :mod:`mvmodel.losses.multiview` (anchors = this rank's rows;
for t2i the anchors are this rank's positives; global counts from gathered labels; rank r
returns ``world_size · S_r / G``), so each returned term's mean over ranks is the
single-process term on the concatenated batch, and so are the DDP-averaged gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gather import gather_no_grad, gather_with_grad


@dataclass(frozen=True)
class ImageTextLossOutput:
    """Result of :class:`ImageTextLoss` (all 0-d tensors of this rank, scaled for DDP).

    Attributes:
        total: ``i2t + view_weight · i2t_views + t2i_weight · t2i`` (backpropagate this).
        i2t: fused-embedding soft cross-entropy, unweighted.
        i2t_views: per-view soft cross-entropy, unweighted.
        t2i: prototype -> fused-embedding contrast, unweighted.
        confident: number of confident valid samples in the gathered batch (detached).
    """

    total: torch.Tensor
    i2t: torch.Tensor
    i2t_views: torch.Tensor
    t2i: torch.Tensor
    confident: torch.Tensor


class ImageTextLoss(nn.Module):
    """Bidirectional image <-> text loss (module docstring for the terms and DDP scheme).

    Args:
        rank: this process's rank.
        world_size: number of ranks; fused embeddings are gathered with gradient when > 1 and a
            process group is initialised.
        view_weight: weight of the per-view i2t term.
        t2i_weight: weight of the t2i term.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        view_weight: float = 1.0,
        t2i_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.rank = rank
        self.world_size = world_size
        self.view_weight = view_weight
        self.t2i_weight = t2i_weight

    def forward(
        self,
        f: torch.Tensor,
        z: torch.Tensor,
        c: torch.Tensor,
        q: torch.Tensor,
        confident: torch.Tensor,
        valid: torch.Tensor,
        tau: torch.Tensor | float,
    ) -> ImageTextLossOutput:
        """Compute the terms for this rank.

        Args:
            f: [B, D] L2-normalised fused embeddings of the local batch.
            z: [B, N, D] L2-normalised per-view embeddings.
            c: [K, D] L2-normalised class prototypes (the same on every rank; may require grad).
            q: [B, K] soft pseudo-labels, rows sum to 1.
            confident: [B] bool, ``max q >= γ``.
            valid: [B] bool; padding rows (False) take no part.
            tau: temperature, 0-d tensor (may require grad) or float.

        Returns:
            :class:`ImageTextLossOutput`; terms without any contributing sample are 0 and stay
            connected to the graph (every rank always runs the same collectives).
        """
        # Similarities / τ reach 100 at τ = 0.01: bf16 autocast would round them by ~0.4.
        with torch.autocast(f.device.type, enabled=False):
            return self._loss(f, z, c, q, confident, valid, tau)

    def _loss(
        self,
        f: torch.Tensor,
        z: torch.Tensor,
        c: torch.Tensor,
        q: torch.Tensor,
        confident: torch.Tensor,
        valid: torch.Tensor,
        tau: torch.Tensor | float,
    ) -> ImageTextLossOutput:
        k = q.shape[1]
        dtype = torch.promote_types(torch.promote_types(f.dtype, c.dtype), torch.float32)
        dev = f.device
        zero = torch.zeros((), dtype=dtype, device=dev)
        valid = valid.to(device=dev, dtype=torch.bool)
        conf = valid & confident.to(device=dev, dtype=torch.bool)
        # torch.where, not a product: padding rows may hold NaN.
        f = torch.where(valid[:, None], f.to(dtype), zero)
        z = torch.where(valid[:, None, None], z.to(dtype), zero)
        q = torch.where(conf[:, None], q.to(dtype), zero)
        c = c.to(dtype)
        tau_t = torch.as_tensor(tau, dtype=dtype, device=dev)

        label = torch.where(conf, q.argmax(dim=1), -1)
        label_all = gather_no_grad(label, self.world_size)  # [Bg]
        f_all = gather_with_grad(f, self.world_size)  # [Bg, D]
        n_conf = (label_all >= 0).sum()
        scale = self.world_size / n_conf.clamp_min(1).to(dtype)

        # i2t: soft-target cross-entropy (log_softmax = logit - logsumexp).
        ce = -(q * F.log_softmax(f @ c.T / tau_t, dim=1)).sum(dim=1)  # [B]
        logp_v = F.log_softmax(torch.einsum("bnd,kd->bnk", z, c) / tau_t, dim=2)
        ce_v = -(q[:, None, :] * logp_v).sum(dim=2).mean(dim=1)  # [B]
        i2t = (ce * conf).sum() * scale
        i2t_views = (ce_v * conf).sum() * scale

        # t2i: per class, over the gathered batch.
        classes = torch.arange(k, device=dev)
        pos_all = label_all[None, :] == classes[:, None]  # [K, Bg]
        neg_all = (label_all[None, :] >= 0) & ~pos_all  # [K, Bg]
        n_pos = pos_all.sum(dim=1)
        has_neg = neg_all.any(dim=1)
        active = (n_pos > 0) & has_neg  # [K]
        s_all = c @ f_all.T / tau_t  # [K, Bg]
        # Classes without negatives use all entries (finite) and get weight 0 below.
        use = neg_all | ~has_neg[:, None]
        lse_neg = torch.logsumexp(s_all.masked_fill(~use, -math.inf), dim=1)  # [K]
        # Anchors: this rank's confident samples, as positives of their own class.
        own = label.clamp_min(0)  # [B] class index (0 for rows that get weight 0)
        s_pos = (f * c[own]).sum(dim=1) / tau_t  # [B]
        pair = torch.logaddexp(s_pos, lse_neg[own]) - s_pos  # [B]
        n_active = active.sum().clamp_min(1).to(dtype)
        weight = (conf & active[own]).to(dtype) / (n_pos[own].clamp_min(1).to(dtype) * n_active)
        t2i = (pair * weight).sum() * self.world_size

        total = i2t + self.view_weight * i2t_views + self.t2i_weight * t2i
        return ImageTextLossOutput(
            total=total, i2t=i2t, i2t_views=i2t_views, t2i=t2i, confident=n_conf.detach()
        )
