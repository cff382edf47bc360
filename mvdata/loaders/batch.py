"""The one batch contract both loaders return: :class:`MultiviewBatch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np
import torch

from mvdata.shards.codecs import decode_json

#: ImageNet statistics used to normalise RGB (values in 0..1 before normalising).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LoaderDataError(RuntimeError):
    """A shard member could not be read or decoded and the backend cannot skip it."""


class LazyMeta(Sequence[dict[str, Any] | None]):
    """The rows' ``json`` members, each parsed when first read (padding rows are ``None``).

    A training step never reads them (labels stay out of training), and parsing every row of
    every batch on the loader's thread cost more than a GPU pipeline leaves: a 4D sample's json
    is ~15 KB, ~0.3 ms to parse, 40 ms a batch of 128. A member that does not parse raises
    :class:`LoaderDataError` naming its shard and key when read; its images are unaffected, and
    ``mvdata verify`` finds such members up front."""

    def __init__(self, raw: Sequence[bytes | np.ndarray | None], where: Sequence[str]) -> None:
        self._raw = list(raw)
        self._where = list(where)
        self._parsed: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any] | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any] | None]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # negative indices, IndexError
        raw = self._raw[i]
        if raw is None:
            return None
        if i not in self._parsed:
            data = raw.tobytes() if isinstance(raw, np.ndarray) else raw
            try:
                obj = decode_json(data.rstrip(b"\0"))  # DALI pads the member with zeros
            except ValueError as exc:
                raise LoaderDataError(
                    f"{self._where[i]}: json member does not parse ({exc})"
                ) from None
            self._parsed[i] = obj
        return self._parsed[i]


@dataclass
class MultiviewBatch:
    """One batch of multiview (and multi-frame) samples.

    Shapes: ``images`` float32 ``[B, T, V, 3, H, W]`` normalised with ImageNet mean/std;
    ``depth`` float32 ``[B, T, V, 1, H, W]`` in millimetres (0 = background) or ``None``;
    ``normals`` float32 ``[B, T, V, 3, H, W]``, camera-space unit normals (x right, y up, z towards
    the camera; the zero vector on background) or ``None``.
    ``valid[b]`` is False for padding rows (the end of an epoch, filled so that every rank takes
    the same number of steps): their ``key`` is ``""``, their ``meta`` ``None``, and they must be
    left out of losses and metrics. ``meta`` parses each row's json when it is read
    (:class:`LazyMeta`).
    """

    images: torch.Tensor
    depth: torch.Tensor | None
    keys: list[str]
    valid: torch.Tensor
    meta: Sequence[dict[str, Any] | None]
    views: list[int] = field(default_factory=list)
    frames: int = 1
    normals: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Rows in the batch, padding included."""
        return int(self.images.shape[0])

    @property
    def num_valid(self) -> int:
        """Rows that are real samples."""
        return int(self.valid.sum().item())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MultiviewBatch:
        """A copy with the tensors on ``device``."""
        return replace(
            self,
            images=self.images.to(device, non_blocking=non_blocking),
            depth=None if self.depth is None else self.depth.to(device, non_blocking=non_blocking),
            normals=None
            if self.normals is None
            else self.normals.to(device, non_blocking=non_blocking),
            valid=self.valid.to(device, non_blocking=non_blocking),
        )

    def as_padding(self) -> MultiviewBatch:
        """The same shapes with every row marked as padding (for the steps a rank has no data)."""
        n = self.batch_size
        return replace(
            self,
            keys=[""] * n,
            meta=[None] * n,
            valid=torch.zeros(n, dtype=torch.bool, device=self.valid.device),
        )


def normalise_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 → float32 normalised with ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1) * 255.0
    return (images.float() - mean) / std


def normals_from_uint8(normals: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 normal map (``[-1, 1]`` stored as ``0..255``, background 0) →
    float32 unit vectors, the zero vector on background (where all three channels are 0).

    The length is summed channel by channel, not with ``F.normalize(dim=-3)``: on the CPU that
    reduction over a strided size-3 dim took 47-110 ms for a training batch (16 samples × 3
    views at 112 px; 3-14 ms this way, 2026-12-08, ``bench/bench_loader_parts.py``), on the
    training loop's thread: the largest share of the loader's cost. Over every stored triple
    the two agree within 2 ulp. No stored value is 127.5, so no component is 0 and the length
    never is: no clamp is needed."""
    v = normals.float() * (2.0 / 255.0) - 1.0
    x, y, z = v.unbind(dim=-3)
    length = torch.sqrt(x * x + y * y + z * z).unsqueeze(-3)
    return v / length * (normals.amax(dim=-3, keepdim=True) > 0)


def unnormalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised RGB ``[..., 3, H, W]`` back to the 0..255 range (float), for looking
    at batches and comparing them with decoded JPEGs."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    return (images * std + mean) * 255.0
