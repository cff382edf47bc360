"""Multiview contrastive loss with stable positive/negative pair sampling.

Paper's words (arXiv 2505.09336, abstract and figure as read in docs/method.md): multiview
contrastive learning with *stable positive-negative pair sampling*; positives are the views of
one sample; negatives are other emotions; a *gradient-friendly* loss; distributed training.

This project's design: for an anchor view i, positives P(i) are the other views/frames of the
same sample; negatives N(i) are all views of the other valid samples of the GLOBAL (gathered)
batch minus those whose confident pseudo-label equals the anchor's (false-negative masking).
Each positive is contrasted against the negatives only, and the negative sum is a mean times a
fixed M::

    l(i, p) = -log( e^{s_ip/τ} / (e^{s_ip/τ} + M · mean_{n∈N(i)} e^{s_in/τ}) )

so neither the other positives nor the number of negatives in the batch move the loss scale
("stable"). Everything is in log-sum-exp form: ``log(M·mean e^x) = log M + logsumexp(x) -
log|N(i)|`` and ``l = logaddexp(a, b) - a``; the gradient w.r.t. each logit is a softmax weight,
bounded by 1.

DDP normalisation (shared by every loss in this package): anchors are this rank's rows,
negatives come from the gathered batch, and every rank computes the GLOBAL number G of
contributing anchors from gathered labels. Rank r returns ``world_size · S_r / G`` (S_r = sum of
its anchors' losses). The mean over ranks is then the loss of one process on the concatenated
batch, and since DDP averages parameter gradients over ranks while the gather's backward sums the
gradient of every rank's loss onto the rank that owns each row, the averaged gradient is exactly
the single-process gradient, whatever the number of valid rows on each rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .gather import gather_no_grad, gather_with_grad, local_offset

#: Default M: about the negatives one anchor sees in a reference batch (e.g. 32 samples x 4
#: views/frames per rank leaves 31 x 4 = 124 views of other samples). M only sets the balance
#: between the positive and the (averaged) negatives; it is fixed so that it never follows the
#: batch's make-up.
DEFAULT_NOMINAL_NEGATIVES = 128.0


@dataclass(frozen=True)
class GatheredViews:
    """Per-view embeddings of the local batch, padding zeroed, with the gathered batch.

    Attributes:
        z: [B, N, D] local embeddings (padding rows set to 0, dtype at least float32).
        valid: [B] bool.
        pseudo: [B] long, -1 where not confident or padding.
        z_all: [Bg, N, D] gathered embeddings (with gradient), Bg = world_size · B.
        valid_all: [Bg] bool.
        pseudo_all: [Bg] long.
        offset: index of this rank's first row in the gathered batch.
    """

    z: torch.Tensor
    valid: torch.Tensor
    pseudo: torch.Tensor
    z_all: torch.Tensor
    valid_all: torch.Tensor
    pseudo_all: torch.Tensor
    offset: int


def gather_views(
    z: torch.Tensor, valid: torch.Tensor, pseudo: torch.Tensor, rank: int, world_size: int
) -> GatheredViews:
    """Zero the padding rows, promote to at least float32, gather embeddings and labels.

    Padding rows are replaced (``torch.where``) rather than multiplied by 0 so that garbage or NaN
    in them can never reach the loss or its gradient.

    Args:
        z: [B, N, D] embeddings.
        valid: [B] bool.
        pseudo: [B] long confident pseudo-label, -1 = not confident.
        rank: this process's rank.
        world_size: number of ranks.
    """
    if z.dim() != 3:
        raise ValueError(f"z must be [B, N, D], got {tuple(z.shape)}")
    batch = z.shape[0]
    dtype = torch.promote_types(z.dtype, torch.float32)
    valid = valid.to(device=z.device, dtype=torch.bool)
    z = torch.where(
        valid[:, None, None], z.to(dtype), torch.zeros((), dtype=dtype, device=z.device)
    )
    pseudo = torch.where(valid, pseudo.to(device=z.device, dtype=torch.long), -1)
    labels = gather_no_grad(torch.stack([valid.long(), pseudo], dim=1), world_size)
    return GatheredViews(
        z=z,
        valid=valid,
        pseudo=pseudo,
        z_all=gather_with_grad(z, world_size),
        valid_all=labels[:, 0].bool(),
        pseudo_all=labels[:, 1],
        offset=local_offset(batch, rank, world_size),
    )


def negative_sample_mask(valid: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    """Which samples are negatives of which: [Bg, Bg] bool.

    ``mask[a, b]`` is True when a != b, both are valid, and they do not share a confident
    pseudo-label (pseudo >= 0 on both and equal): the false-negative masking.

    Args:
        valid: [Bg] bool.
        pseudo: [Bg] long, -1 = not confident.
    """
    n = valid.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=valid.device)
    same = (pseudo[:, None] >= 0) & (pseudo[:, None] == pseudo[None, :])
    return valid[:, None] & valid[None, :] & ~eye & ~same


@dataclass(frozen=True)
class MultiviewStats:
    """Logging values of the last forward, detached 0-d tensors, over this rank's anchors.

    Attributes:
        pos_sim: mean cosine over positive pairs (views of one valid sample).
        neg_sim: mean cosine over (anchor, kept negative) pairs.
        masked_frac: fraction of candidate negatives (views of other valid samples) removed by
            the pseudo-label mask.
        anchors: number of this rank's anchor views that contributed to the loss.
    """

    pos_sim: torch.Tensor
    neg_sim: torch.Tensor
    masked_frac: torch.Tensor
    anchors: torch.Tensor


def _safe_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """total / count, 0 where count is 0."""
    return total / count.clamp_min(1).to(total.dtype)


class MultiviewContrastiveLoss(nn.Module):
    """Stable multiview contrastive loss (module docstring for the formula and DDP scheme).

    Args:
        rank: this process's rank.
        world_size: number of ranks; embeddings are gathered with gradient when > 1 and a
            process group is initialised.
        nominal_negatives: the fixed M multiplying the mean over negatives.

    After each forward, ``last_stats`` holds a :class:`MultiviewStats`.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        nominal_negatives: float = DEFAULT_NOMINAL_NEGATIVES,
    ) -> None:
        super().__init__()
        if nominal_negatives <= 0:
            raise ValueError("nominal_negatives must be > 0")
        self.rank = rank
        self.world_size = world_size
        self.log_m = math.log(nominal_negatives)
        self.last_stats: MultiviewStats | None = None

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
            valid: [B] bool; padding rows (False) are never anchors, positives or negatives.
            pseudo: [B] long confident pseudo-label, -1 = not confident.
            tau: temperature, 0-d tensor (may require grad) or float.

        Returns:
            0-d tensor; 0 (connected to the graph) when no anchor contributes.
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
        neg_all = negative_sample_mask(g.valid_all, g.pseudo_all)  # [Bg, Bg]
        # An anchor contributes when its sample is valid, has another view (a positive) and
        # keeps at least one negative. G counts them over the gathered batch, on every rank.
        contrib_all = g.valid_all & neg_all.any(dim=1) & (n > 1)
        count = contrib_all.sum() * n
        neg = neg_all[g.offset : g.offset + b]  # [B, Bg]
        contrib = contrib_all[g.offset : g.offset + b]  # [B]

        cos_pos = torch.einsum("bnd,bmd->bnm", g.z, g.z)  # [B, N, N]
        cos_neg = torch.einsum("bnd,cmd->bncm", g.z, g.z_all)  # [B, N, Bg, N]
        logit_neg = cos_neg / tau_t
        # Rows without negatives use every entry (finite) instead of all -inf: a logsumexp
        # over -inf only has a NaN gradient, which a 0 weight would not cancel.
        has_neg = neg.any(dim=1)
        use = (neg | ~has_neg[:, None])[:, None, :, None].expand_as(logit_neg)
        lse = torch.logsumexp(logit_neg.masked_fill(~use, -math.inf).flatten(2), dim=2)  # [B, N]
        n_neg = (neg.sum(dim=1) * n).clamp_min(1)  # [B] views among the negatives
        log_neg = self.log_m + lse - torch.log(n_neg.to(lse.dtype))[:, None]  # [B, N]

        a = cos_pos / tau_t  # [B, N, N] positive logits
        pair = torch.logaddexp(a, log_neg[:, :, None]) - a  # l(i, p)
        off_diag = ~torch.eye(n, dtype=torch.bool, device=g.z.device)
        per_anchor = (pair * off_diag).sum(dim=2) / max(n - 1, 1)  # [B, N]
        local_sum = (per_anchor * contrib[:, None]).sum()
        loss = local_sum * (self.world_size / count.clamp_min(1).to(local_sum.dtype))

        with torch.no_grad():
            pos_pairs = (g.valid[:, None, None] & off_diag).expand_as(cos_pos)
            neg_pairs = neg[:, None, :, None].expand_as(cos_neg)
            cand = g.valid[:, None] & g.valid_all[None, :]
            cand[
                torch.arange(b, device=cand.device), g.offset + torch.arange(b, device=cand.device)
            ] = False
            self.last_stats = MultiviewStats(
                pos_sim=_safe_mean((cos_pos * pos_pairs).sum(), pos_pairs.sum()),
                neg_sim=_safe_mean((cos_neg * neg_pairs).sum(), neg_pairs.sum()),
                masked_frac=_safe_mean((cand & ~neg).sum().to(g.z.dtype), cand.sum()),
                anchors=contrib.sum() * n,
            )
        return loss
