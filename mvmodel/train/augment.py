"""A second augmented copy of each view, on the device, for the single-view contrastive
baseline (SimCLR-style: two crops of one image are positives). The loaders' own augmentation
already varies each view once per epoch; this draws a second, independent one from torch's RNG
(saved in checkpoints, so resume stays exact)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["second_crop"]


def _affine(n: int, max_zoom: float, device: torch.device) -> torch.Tensor:
    """``[n, 2, 3]`` crop transforms: scale in ``[1 - max_zoom, 1]``, a shift that keeps the crop
    inside the image; no flip (left and right are not interchangeable for expressions)."""
    scale = 1.0 - max_zoom * torch.rand(n, device=device)
    shift = (1.0 - scale).unsqueeze(1) * (2.0 * torch.rand(n, 2, device=device) - 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    return theta


def second_crop(
    images: torch.Tensor,
    depth: torch.Tensor | None,
    normals: torch.Tensor | None,
    *,
    max_zoom: float = 0.4,
    jitter: float = 0.4,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Another crop (and colour jitter of the RGB) of every ``[B, T, V, C, H, W]`` view; depth and
    normals follow the same crop with nearest sampling (no blending into the background)."""
    b, t, v = images.shape[:3]
    n = b * t * v
    theta = _affine(n, max_zoom, images.device)
    flat = images.reshape(n, *images.shape[3:]).float()
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    rgb = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = 1.0 + jitter * (2.0 * torch.rand(n, 1, 1, 1, device=images.device) - 1.0)
    bias = jitter * (2.0 * torch.rand(n, 1, 1, 1, device=images.device) - 1.0)
    rgb = (rgb * gain + bias).reshape(images.shape)

    def follow(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        flat_x = x.reshape(n, *x.shape[3:]).float()
        out = F.grid_sample(flat_x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return out.reshape(x.shape)

    return rgb.to(images.dtype), follow(depth), follow(normals)
