"""The image side of MultiviewVLM: views → per-view embeddings ``z`` and a fused embedding ``f``.

From the paper: a shared image backbone over the views, whose embeddings live in a joint
image-text space (``z`` and ``f`` are compared with the text prototypes ``c[k]`` by cosine).
This project's design: the input channels (RGB, depth, normals), the projection heads, and the
view/frame fusion transformer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mvmodel.vision.backbone import (
    CHANNELS,
    DEFAULT_CPU_BACKBONE,
    DEFAULT_CPU_IMAGE_SIZE,
    DEFAULT_GPU_BACKBONE,
    DEFAULT_GPU_IMAGE_SIZE,
    Channels,
    InputAdapter,
    make_backbone,
)
from mvmodel.vision.fusion import ViewFrameFusion

#: safetensors metadata key under which :meth:`MultiviewVLM.save_weights` stores the config.
CONFIG_METADATA_KEY = "mvmodel.vision.config"


class VisionConfig(BaseModel):
    """Configuration of :class:`MultiviewVLM` (immutable; serialises to JSON).

    The field defaults are the CPU default (``resnet18`` at 112 px, random init, RGB + depth +
    normals); :meth:`gpu_default` gives ``vit_small_patch16_224`` at 224 px. ``rgb+depth+normal``
    is the default since 2026-12-05: chosen on a validation fold of training subjects by a rule
    written before the runs (bench/results/channels_validation_seed1.json: zero-shot 76.7 vs
    56.7 for ``rgb+depth``); before that ``rgb+depth``, because the first probe learned faster
    with depth than with RGB alone (method.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: timm architecture name.
    backbone: str = DEFAULT_CPU_BACKBONE
    #: None (random init), a local ``.safetensors``/``.pth`` state dict, or ``"timm:[name]"``.
    pretrained: str | None = None
    #: Backbone input channels: ``"rgb"`` (3), ``"rgb+depth"`` (4), ``"rgb+depth+normal"`` (7).
    channels: Channels = "rgb+depth+normal"
    #: Side of the square views fed to the backbone (inputs of another size are resized).
    image_size: int = Field(default=DEFAULT_CPU_IMAGE_SIZE, gt=0)
    #: Dimension D of the joint image-text space.
    embed_dim: int = Field(default=256, gt=0)
    #: Hidden width of the projection heads.
    proj_hidden: int = Field(default=1024, gt=0)
    #: Transformer layers of the view/frame fusion.
    fusion_depth: int = Field(default=2, ge=1)
    #: Attention heads of the fusion (must divide the backbone's feature dimension).
    fusion_heads: int = Field(default=4, ge=1)
    #: Number of view embeddings (largest camera index + 1).
    max_views: int = Field(default=8, ge=1)
    #: Number of frame embeddings (longest sequence T).
    max_frames: int = Field(default=8, ge=1)
    #: Stochastic depth rate of the backbone (timm's ``drop_path_rate``).
    drop_path: float = Field(default=0.0, ge=0.0, lt=1.0)

    @property
    def in_chans(self) -> int:
        """Backbone input channels for :attr:`channels`."""
        return CHANNELS[self.channels]

    @classmethod
    def cpu_default(cls, **overrides: object) -> VisionConfig:
        """``resnet18`` at 112 px (plus ``overrides``)."""
        return cls.model_validate(
            {"backbone": DEFAULT_CPU_BACKBONE, "image_size": DEFAULT_CPU_IMAGE_SIZE, **overrides}
        )

    @classmethod
    def gpu_default(cls, **overrides: object) -> VisionConfig:
        """``vit_small_patch16_224`` at 224 px with drop path 0.1 (plus ``overrides``)."""
        return cls.model_validate(
            {
                "backbone": DEFAULT_GPU_BACKBONE,
                "image_size": DEFAULT_GPU_IMAGE_SIZE,
                "drop_path": 0.1,
                **overrides,
            }
        )

    @classmethod
    def for_device(cls, device: torch.device | str, **overrides: object) -> VisionConfig:
        """:meth:`gpu_default` on a CUDA device, else :meth:`cpu_default`."""
        if torch.device(device).type == "cuda":
            return cls.gpu_default(**overrides)
        return cls.cpu_default(**overrides)


@dataclass
class VisionOutput:
    """What :class:`MultiviewVLM` returns for a batch of B samples, T frames × V views.

    ``z``: ``[B, T·V, D]`` per-view embeddings, L2-normalised, index ``t·V + v``.
    ``f``: ``[B, D]`` fused sample embeddings, L2-normalised.
    ``tokens``: ``[B, T·V, F]`` backbone features before projection (F = feature dim).
    ``fused``: ``[B, F]`` the fusion's output before its projection head (``f`` is its
    projection; in autocast's dtype): the layer a SimCLR/CLIP-style linear probe reads
    (``scripts/probe_layers.py``).
    ``z`` and ``f`` are float32 even under autocast (the losses divide their cosines by a
    temperature as small as 0.01, where bf16's 3 significant digits are not enough).
    """

    z: torch.Tensor
    f: torch.Tensor
    tokens: torch.Tensor
    fused: torch.Tensor


class BatchLike(Protocol):
    """What :meth:`MultiviewVLM.encode` reads from a batch (``mvdata``'s ``MultiviewBatch``)."""

    images: torch.Tensor
    depth: torch.Tensor | None
    normals: torch.Tensor | None


class ProjectionHead(nn.Sequential):
    """``[..., F]`` → ``[..., D]``: LayerNorm, Linear, GELU, Linear (not normalised).

    LayerNorm rather than the BatchNorm of SimCLR's head: it needs no statistics across the batch,
    so padding rows and the split of a batch across ranks do not change a sample's embedding.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, out_dim),
        )


class MultiviewVLM(nn.Module):
    """The vision model: one shared backbone over every view, projection heads, fusion.

    ``forward(images, depth, normals)``: the views of all samples and frames go through the
    backbone in one call (``B·T·V`` images); each view's feature is projected to ``z``; the
    features of a sample's ``T·V`` views (not their projections: the heads discard what the
    contrastive objective does not reward, which fusion may still use) are fused by
    :class:`ViewFrameFusion` and projected, by a separate head, to ``f``.
    """

    def __init__(self, config: VisionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else VisionConfig()
        self.adapter = InputAdapter(config.channels, config.image_size)
        self.backbone, self.feature_dim = make_backbone(
            config.backbone,
            in_chans=config.in_chans,
            pretrained=config.pretrained,
            image_size=config.image_size,
            drop_path=config.drop_path,
        )
        self.view_head = ProjectionHead(self.feature_dim, config.proj_hidden, config.embed_dim)
        self.fusion = ViewFrameFusion(
            self.feature_dim,
            num_views_max=config.max_views,
            num_frames_max=config.max_frames,
            depth=config.fusion_depth,
            heads=config.fusion_heads,
        )
        self.fused_head = ProjectionHead(self.feature_dim, config.proj_hidden, config.embed_dim)

    def forward(
        self,
        images: torch.Tensor,
        depth: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        view_ids: torch.Tensor | None = None,
    ) -> VisionOutput:
        """Embed a batch.

        Args:
            images: ``[B, T, V, 3, H, W]`` ImageNet-normalised RGB.
            depth: ``[B, T, V, 1, H, W]`` depth in mm (0 = background); needed for ``*depth*``.
            normals: ``[B, T, V, 3, H, W]`` unit normals (0 = background); needed for ``*normal``.
            view_ids: camera index of each view, ``[V]`` or ``[B, V]``; default ``0..V-1``.

        Returns:
            :class:`VisionOutput` with ``z`` ``[B, T·V, D]``, ``f`` ``[B, D]``, ``tokens``
            ``[B, T·V, F]``.
        """
        x = self.adapter(images, depth, normals)  # [B, T, V, C, S, S]
        b, t, v = x.shape[:3]
        feats = self.backbone(x.flatten(0, 2))  # [B·T·V, F]: one call, one set of weights
        feats = feats.reshape(b, t, v, self.feature_dim)
        z = F.normalize(self.view_head(feats).float(), dim=-1).reshape(b, t * v, -1)
        fused = self.fusion(feats, view_ids)  # [B, F]
        f = F.normalize(self.fused_head(fused).float(), dim=-1)
        return VisionOutput(z=z, f=f, tokens=feats.reshape(b, t * v, self.feature_dim), fused=fused)

    def encode(self, batch: BatchLike) -> VisionOutput:
        """Embed a ``MultiviewBatch`` (or anything with ``images``, ``depth``, ``normals``).

        Tensors are moved to the model's device; the batch's ``views`` (dataset camera indices),
        when present, select the view embeddings. Padding rows (``valid`` False) are embedded
        like the others: leave them out downstream.
        """
        device = next(self.parameters()).device

        def to(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device, non_blocking=True)

        views: Sequence[int] | None = getattr(batch, "views", None)
        view_ids = None
        if views:  # an empty list means the loader did not say: use 0..V-1
            view_ids = torch.as_tensor(list(views), dtype=torch.long)
            if int(view_ids.max()) >= self.config.max_views:
                raise ValueError(
                    f"batch views {list(views)} exceed max_views={self.config.max_views}"
                )
            view_ids = view_ids.to(device)
        images = to(batch.images)
        assert images is not None
        return self(images, to(batch.depth), to(getattr(batch, "normals", None)), view_ids)

    def save_weights(self, path: str | Path) -> None:
        """Write the weights to a ``.safetensors`` file, the config in its metadata."""
        from safetensors.torch import save_model

        save_model(self, str(path), metadata={CONFIG_METADATA_KEY: self.config.model_dump_json()})

    def load_weights(self, path: str | Path, strict: bool = True) -> None:
        """Load weights written by :meth:`save_weights` (or ``safetensors.torch.save_model``)."""
        from safetensors.torch import load_model

        missing, unexpected = load_model(self, str(path), strict=strict)
        if missing or unexpected:
            raise ValueError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")

    @classmethod
    def from_safetensors(cls, path: str | Path) -> MultiviewVLM:
        """A model built from the config stored by :meth:`save_weights`, with its weights."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if CONFIG_METADATA_KEY not in meta:
            raise ValueError(
                f"{path} has no {CONFIG_METADATA_KEY!r} metadata: build the model "
                "from its config and call load_weights"
            )
        config = VisionConfig.model_validate(json.loads(meta[CONFIG_METADATA_KEY]))
        # The stored weights replace any initial ones: do not read (or download) them again.
        model = cls(config.model_copy(update={"pretrained": None}))
        model.load_weights(path)
        return model


def example_input(
    config: VisionConfig, batch: int = 1, frames: int = 1, views: int = 3
) -> dict[str, torch.Tensor]:
    """Random forward kwargs for ``config``: images, and depth/normals when its channels need them.

    Depth is a plausible face: ~600 mm away, 100 mm of relief, a background border of zeros.
    """
    s = config.image_size
    lead = (batch, frames, views)
    out = {"images": torch.randn(*lead, 3, s, s)}
    fg = torch.zeros(*lead, 1, s, s, dtype=torch.bool)
    fg[..., s // 8 : s - s // 8, s // 8 : s - s // 8] = True
    if "depth" in config.channels:
        out["depth"] = torch.where(fg, 600 + 100 * torch.rand(*lead, 1, s, s), 0.0)
    if "normal" in config.channels:
        out["normals"] = F.normalize(torch.randn(*lead, 3, s, s), dim=3) * fg
    return out


def flops_per_sample(
    model: nn.Module, example_input: torch.Tensor | Mapping[str, torch.Tensor | None]
) -> float:
    """Forward FLOPs per sample, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    ``example_input``: ``images`` ``[B, T, V, 3, H, W]`` or the forward's keyword arguments
    (see :func:`example_input`). The count (matmuls and convolutions, 2 FLOPs per
    multiply-add) is divided by B. A training step costs about 3× this (forward + backward,
    the usual MFU convention). Runs with gradients enabled: in ``no_grad`` eval mode PyTorch's
    fused transformer fast path would hide the fusion's matmuls from the counter.
    """
    kwargs = {"images": example_input} if isinstance(example_input, torch.Tensor) else example_input
    images = kwargs["images"]
    assert images is not None
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        model(**kwargs)
    return counter.get_total_flops() / images.shape[0]
