"""The image backbone and what it is fed.

* :func:`make_backbone` builds a timm model as a pooled feature extractor (``num_classes=0``),
  randomly initialised by default (training from scratch must work: no weights are ever needed),
  or from a local state dict, or (for users who are online) from timm's hub.
* :class:`InputAdapter` turns a batch's images, depth and normals into the backbone's input
  channels: ``"rgb"`` (3), ``"rgb+depth"`` (4) or ``"rgb+depth+normal"`` (7).

Defaults: on a GPU ``vit_small_patch16_224`` at 224 px; on a CPU ``resnet18`` at 112 px (the first
probe of this project trained a random-init ResNet-18 at 112 px on 2 cores, see method.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models import get_pretrained_cfg, split_model_name_tag
from torch import nn

log = logging.getLogger(__name__)

#: Backbone and image size used on a GPU by default.
DEFAULT_GPU_BACKBONE = "vit_small_patch16_224"
DEFAULT_GPU_IMAGE_SIZE = 224
#: Backbone and image size used on a CPU by default.
DEFAULT_CPU_BACKBONE = "resnet18"
DEFAULT_CPU_IMAGE_SIZE = 112

Channels = Literal["rgb", "rgb+depth", "rgb+depth+normal"]
#: Input channels of each channel configuration.
CHANNELS: dict[str, int] = {"rgb": 3, "rgb+depth": 4, "rgb+depth+normal": 7}
assert set(CHANNELS) == set(get_args(Channels))

#: Depth is fed as millimetres from the face's median depth divided by this scale: a face is
#: ~100 mm deep, so the channel spans about ±2, the range of the normalised RGB channels.
DEPTH_SCALE_MM = 50.0
#: Standardised depth is clipped to ±this value (±200 mm): hair, shoulders or stray points far
#: behind the face would otherwise dominate the channel.
DEPTH_CLIP = 4.0

#: Prefix of a ``pretrained`` value that asks for timm's hub weights (network needed).
TIMM_HUB_PREFIX = "timm:"


def needs_img_size(name: str) -> bool:
    """Whether a timm architecture fixes its input size at construction (ViTs, Swin, …).

    Those take ``img_size`` (their position embeddings depend on it); convolutional networks do
    not accept the argument at all. timm records this as ``fixed_input_size`` in the model's
    pretrained config.
    """
    cfg = get_pretrained_cfg(split_model_name_tag(name)[0])
    return bool(cfg is not None and cfg.fixed_input_size)


def _create(
    name: str, in_chans: int, image_size: int, drop_path: float, pretrained: bool = False
) -> nn.Module:
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": in_chans}
    if needs_img_size(name):
        kwargs["img_size"] = image_size
    if drop_path > 0:
        kwargs["drop_path_rate"] = drop_path
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def make_backbone(
    name: str,
    in_chans: int,
    pretrained: str | None,
    image_size: int,
    drop_path: float = 0.0,
) -> tuple[nn.Module, int]:
    """A timm model returning pooled features ``[N, feature_dim]`` for ``[N, in_chans, S, S]``.

    ``pretrained``:

    * ``None``: random initialisation (the default; nothing is downloaded or read).
    * a local file (``.safetensors``, or a ``.pth``/``.pt``/``.bin`` torch state dict): loaded
      with :func:`load_local_weights` (``strict=False``; missing, unexpected and shape-mismatched
      keys are logged; a 3-channel first conv / patch embedding is adapted to ``in_chans``, and
      ViT position embeddings are resampled to ``image_size``).
    * ``"timm:"`` or ``"timm:<name>[.<tag>]"``: timm's hub weights for this architecture (needs
      the network; ``<name>`` must be the same architecture as ``name``). They are loaded into a
      3-channel model and adapted to ``in_chans`` the same way as a local file.

    Returns the module and its feature dimension.
    """
    if pretrained is not None and pretrained.startswith(TIMM_HUB_PREFIX):
        hub_name = _hub_model_name(name, pretrained)
        if in_chans == 3:
            model = _create(hub_name, in_chans, image_size, drop_path, pretrained=True)
        else:
            # Our channel adaptation rather than timm's (which cycles RGB and rescales them), so
            # hub and local weights start a 4- or 7-channel model the same way.
            source = _create(hub_name, 3, image_size, drop_path, pretrained=True)
            model = _create(name, in_chans, image_size, drop_path)
            load_state_dict_adapted(model, source.state_dict()).log(hub_name)
    else:
        model = _create(name, in_chans, image_size, drop_path)
        if pretrained is not None:
            load_local_weights(model, pretrained).log(pretrained)
    return model, int(model.num_features)  # type: ignore[arg-type]


def _hub_model_name(name: str, pretrained: str) -> str:
    """The timm name (with tag) a ``"timm:…"`` value asks for; its architecture must be ``name``'s."""
    spec = pretrained[len(TIMM_HUB_PREFIX) :]
    if not spec:
        return name
    arch, _ = split_model_name_tag(spec)
    if arch != split_model_name_tag(name)[0]:
        raise ValueError(
            f"pretrained={pretrained!r} names architecture {arch!r}, but the backbone is {name!r}"
        )
    return spec


@dataclass
class LoadReport:
    """What loading a state dict into a backbone did (lists of parameter names)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    #: Keys whose shape did not match and could not be adapted: left at their initial value.
    mismatched: list[str] = field(default_factory=list)
    #: Keys adapted to the model: first conv / patch embedding channels, resampled pos embed.
    adapted: list[str] = field(default_factory=list)

    def log(self, source: str) -> None:
        """Log the report: info for what is expected, warnings for what was left out."""
        log.info("loaded backbone weights from %s (adapted: %s)", source, self.adapted or "none")
        if self.unexpected:
            # A classifier head is expected here: the backbone is built with num_classes=0.
            log.info("unused keys in %s: %s", source, self.unexpected)
        if self.missing:
            log.warning("keys missing from %s (left at init): %s", source, self.missing)
        if self.mismatched:
            log.warning("shape-mismatched keys in %s (left at init): %s", source, self.mismatched)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch state dict file (CPU, weights only).

    A checkpoint that wraps its weights (``{"state_dict": …}``, ``{"model": …}``) is unwrapped,
    and a DistributedDataParallel ``module.`` prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Mapping[str, object] = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            inner = state.get(wrapper) if isinstance(state, Mapping) else None
            if isinstance(inner, Mapping):
                state = inner
                break
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_local_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a local state dict file into ``model`` (see :func:`load_state_dict_adapted`)."""
    return load_state_dict_adapted(model, read_state_dict(path))


def adapt_input_conv_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-layer weight ``[O, 3, k, k]`` (RGB) made ``[O, in_chans, k, k]``.

    The RGB filters are copied unchanged, so the RGB response of a pretrained model is kept
    exactly; each extra channel (depth, normals) starts from the mean of the RGB filters, i.e.
    the filter the model applies to a grey image: it already detects edges and blobs, which is
    what depth and normal maps are made of. The extra inputs are standardised to the range of
    normalised RGB (see :class:`InputAdapter`), so this adds a response of comparable size.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected an RGB weight [O, 3, k, k], got {tuple(weight.shape)}")
    if in_chans < 3:
        raise ValueError(f"in_chans must be >= 3, got {in_chans}")
    extra = weight.mean(dim=1, keepdim=True).expand(-1, in_chans - 3, -1, -1)
    return torch.cat([weight, extra], dim=1)


def load_state_dict_adapted(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load ``state`` into ``model`` with ``strict=False``, adapting what can be adapted.

    * A 4-D weight whose source has 3 input channels where the model has more (the first conv of
      a CNN, the patch embedding of a ViT) goes through :func:`adapt_input_conv_weight`.
    * A ViT's absolute position embedding is resampled to the model's patch grid (a checkpoint
      trained at 224 px loads into a model at 112 px).
    * Other keys whose shape differs are left out (``torch`` would otherwise refuse the whole
      load) and reported as mismatched.
    """
    target = model.state_dict()
    report = LoadReport()
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            continue  # reported as unexpected by load_state_dict below
        want = target[key].shape
        if value.shape == want:
            to_load[key] = value
        elif (
            value.ndim == 4
            and value.shape[1] == 3
            and want[1] > 3
            and (value.shape[0], *value.shape[2:]) == (want[0], *want[2:])
        ):
            to_load[key] = adapt_input_conv_weight(value, int(want[1]))
            report.adapted.append(key)
        elif key.endswith("pos_embed") and value.ndim == 3 and value.shape[-1] == want[-1]:
            to_load[key] = _resample_pos_embed(model, value)
            report.adapted.append(key)
        else:
            report.mismatched.append(key)
    result = model.load_state_dict(to_load, strict=False)
    report.missing = [k for k in result.missing_keys if k not in report.mismatched]
    report.unexpected = [k for k in state if k not in target]
    return report


def _resample_pos_embed(model: nn.Module, posemb: torch.Tensor) -> torch.Tensor:
    """A ViT's position embedding ``[1, P + N, C]`` resampled to the model's patch grid."""
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    if grid is None:
        raise ValueError("cannot resample pos_embed: the model has no patch_embed.grid_size")
    prefix = 0 if getattr(model, "no_embed_class", False) else int(model.num_prefix_tokens)  # type: ignore[arg-type]
    return resample_abs_pos_embed(posemb, new_size=list(grid), num_prefix_tokens=prefix)


def standardise_depth(
    depth: torch.Tensor, scale_mm: float = DEPTH_SCALE_MM, clip: float = DEPTH_CLIP
) -> torch.Tensor:
    """Depth in mm ``[..., 1, H, W]`` (0 = background) → scale-free relief, same shape.

    Each image becomes ``(median foreground depth − depth) / scale_mm``, clipped to ``±clip``,
    with background 0: positive towards the camera (the nose tip is the largest value), like the
    ``z`` of the camera-space normals. Why relative to the median: the absolute distance to the
    camera carries no expression information (it varies with the rig, the dataset and the
    subject's position) and would let the model tell datasets apart instead of expressions;
    the face's relief around its own median does carry it (jaw drop, lip protrusion, brow
    raise). Dividing by a fixed millimetre scale, not by each image's spread, keeps real sizes
    comparable across samples. An image without foreground (a padding row) stays all zeros.
    """
    fg = depth > 0
    flat = depth.flatten(start_dim=-3).float()
    nan = torch.full_like(flat, float("nan"))
    median = torch.nanmedian(torch.where(flat > 0, flat, nan), dim=-1).values
    median = median[..., None, None, None]
    rel = ((median - depth.float()) / scale_mm).clamp(-clip, clip)
    return torch.where(fg, rel, torch.zeros_like(rel))


class InputAdapter(nn.Module):
    """A batch's views → backbone input ``[B, T, V, C, S, S]`` for a channel configuration.

    Inputs (from ``MultiviewBatch``): ``images`` ``[B, T, V, 3, H, W]`` ImageNet-normalised,
    ``depth`` ``[B, T, V, 1, H, W]`` in mm (0 = background) or ``None``, ``normals``
    ``[B, T, V, 3, H, W]`` unit camera-space normals (0 = background) or ``None``.
    Channels: RGB as given; depth through :func:`standardise_depth`; normals as they are
    (already in [-1, 1], the range of the other channels). Views whose size is not
    ``image_size`` are resized: RGB bilinearly with antialiasing, depth and normals by nearest
    neighbour (interpolating would blend the face with the zero background into false depths
    and non-unit normals along the silhouette).
    """

    def __init__(self, channels: Channels, image_size: int) -> None:
        super().__init__()
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {sorted(CHANNELS)}, got {channels!r}")
        self.channels = channels
        self.image_size = image_size

    @property
    def in_chans(self) -> int:
        """The number of backbone input channels."""
        return CHANNELS[self.channels]

    @property
    def uses_depth(self) -> bool:
        return "depth" in self.channels

    @property
    def uses_normals(self) -> bool:
        return "normal" in self.channels

    def forward(
        self,
        images: torch.Tensor,
        depth: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, T, V, 3, H, W]`` (+ depth, normals) → ``[B, T, V, in_chans, S, S]``."""
        if images.ndim != 6 or images.shape[3] != 3:
            raise ValueError(f"images must be [B, T, V, 3, H, W], got {tuple(images.shape)}")
        lead = images.shape[:3]
        parts = [self._resize(images, geometric=False)]
        if self.uses_depth:
            if depth is None:
                raise ValueError(
                    f"channels={self.channels!r} needs depth, but the batch has none "
                    "(write depth into the shards, or use channels='rgb')"
                )
            _check_shape("depth", depth, (*lead, 1))
            parts.append(self._resize(standardise_depth(depth), geometric=True))
        if self.uses_normals:
            if normals is None:
                raise ValueError(
                    f"channels={self.channels!r} needs normals, but the batch has none "
                    "(write normals into the shards, or use channels='rgb+depth')"
                )
            _check_shape("normals", normals, (*lead, 3))
            parts.append(self._resize(normals.to(images.dtype), geometric=True))
        return torch.cat([p.to(images.dtype) for p in parts], dim=3)

    def _resize(self, x: torch.Tensor, geometric: bool) -> torch.Tensor:
        size = self.image_size
        if x.shape[-2:] == (size, size):
            return x
        flat = x.flatten(0, 2)
        if geometric:
            out = F.interpolate(flat, size=(size, size), mode="nearest-exact")
        else:
            out = F.interpolate(
                flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return out.unflatten(0, x.shape[:3])


def _check_shape(what: str, x: torch.Tensor, lead: tuple[int, ...]) -> None:
    if x.ndim != 6 or tuple(x.shape[:4]) != lead:
        raise ValueError(
            f"{what} must be [{', '.join(map(str, lead))}, H, W] to match images, "
            f"got {tuple(x.shape)}"
        )
