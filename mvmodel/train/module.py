"""Everything that trains, in one module (what DDP wraps): the vision model, the text
projection, the temperature and the losses (the sigmoid variant carries a learnable bias)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mvmodel.config import TrainConfig
from mvmodel.losses import (
    ImageTextLoss,
    LearnableTemperature,
    MultiviewContrastiveLoss,
    SigmoidMultiviewLoss,
)
from mvmodel.text.prototypes import TextProjection
from mvmodel.vision.model import MultiviewVLM, VisionOutput

__all__ = ["MultiviewVLMTrainer", "TrainerOutput", "image_scores"]


@dataclass
class TrainerOutput:
    """One forward: per-view ``z [B, T·V, D]``, fused ``f [B, D]``, prototypes ``c [K, D]``
    (all L2-normalised) and the temperature τ (0-d)."""

    vision: VisionOutput
    c: torch.Tensor
    tau: torch.Tensor


class MultiviewVLMTrainer(nn.Module):
    """The trainable parts of MultiviewVLM; ``forward`` embeds a batch and the prompts.

    The losses are submodules so that their parameters (the sigmoid variant's bias) are
    synchronised by DDP like the others; they are called by the training step after the
    pseudo-labels of the batch are known.
    """

    def __init__(self, cfg: TrainConfig, text_dim: int, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.vision = MultiviewVLM(cfg.model)
        self.text = TextProjection(
            text_dim, cfg.model.embed_dim, kind=cfg.text.projection, bias=cfg.text.projection_bias
        )
        self.temperature = LearnableTemperature(
            cfg.loss.tau_init, cfg.loss.tau_min, cfg.loss.tau_max
        )
        self.multiview_loss: nn.Module
        if cfg.loss.multiview == "sigmoid":
            self.multiview_loss = SigmoidMultiviewLoss(rank, world_size)
        else:
            self.multiview_loss = MultiviewContrastiveLoss(
                rank, world_size, nominal_negatives=cfg.loss.nominal_negatives
            )
        self.image_text_loss = ImageTextLoss(
            rank, world_size, view_weight=cfg.loss.view_weight, t2i_weight=cfg.loss.t2i_weight
        )
        self.num_classes = len(cfg.text.prompts.classes)

    def forward(
        self,
        images: torch.Tensor,
        depth: torch.Tensor | None,
        normals: torch.Tensor | None,
        view_ids: torch.Tensor | None,
        prompt_emb: torch.Tensor,
        class_index: torch.Tensor,
    ) -> TrainerOutput:
        """Embed the batch (``[B, T, V, ...]``) and project the prompts into class prototypes."""
        out = self.vision(images, depth, normals, view_ids)
        c = self.text.prototypes(prompt_emb, class_index, self.num_classes)
        return TrainerOutput(vision=out, c=c.float(), tau=self.temperature())


def image_scores(z: torch.Tensor, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The image side of the pseudo-labels: ``s[b, k]`` = the mean over views and frames of
    ``<z[b, tv], c[k]>``, averaged with ``<f[b], c[k]>`` (method.md), ``[B, K]``, no gradient."""
    with torch.no_grad():
        per_view = torch.einsum("bnd,kd->bk", z.float(), c.float()) / z.shape[1]
        return 0.5 * (per_view + f.float() @ c.float().T)
