"""Cross-rank gathering for the contrastive losses.

Embeddings are gathered WITH gradient (``torch.distributed.nn.functional.all_gather``: its
backward sums, over ranks, the gradient each rank put on every slice and hands each rank the sum
for its own slice). Plain ``dist.all_gather`` writes into fresh buffers and cuts the graph, which
silently drops every gradient that flows through another rank's copy (see docs/gotchas.md).
Labels and masks need no gradient and go through plain ``dist.all_gather``.

Every rank must call these in the same order with tensors of the same shape (the loader pads
each rank's batch to the same size and marks padding rows with ``valid = False``).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


def is_distributed(world_size: int) -> bool:
    """True when a gather is needed: ``world_size > 1`` and a process group is initialised.

    Raises:
        ValueError: the process group's size disagrees with ``world_size``.
    """
    if world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return False
    actual = dist.get_world_size()
    if actual != world_size:
        raise ValueError(f"loss built for world_size={world_size}, process group has {actual}")
    return True


def local_offset(batch: int, rank: int, world_size: int) -> int:
    """Row index of this rank's first sample in the gathered batch (0 when nothing is gathered).

    Args:
        batch: local batch size B (the same on every rank).
        rank: this process's rank.
        world_size: number of ranks the loss was built for.
    """
    return rank * batch if is_distributed(world_size) else 0


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    The backward of ``torch.distributed.nn.functional.all_gather`` (torch 2.14) allocates its
    receive buffers with ``torch.empty_like(grad)``, which copies the gradient's strides, and on
    gloo fills them with ``dist.scatter``, which writes non-contiguous outputs wrongly
    (pytorch/pytorch#192920). A permuted gradient (as an einsum's backward produces) then comes
    back scrambled: off by 0.13 on 2 gloo ranks without this, matching to ~1e-16 with it.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def gather_with_grad(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, in rank order, keeping the autograd graph.

    Args:
        x: [B, ...] local tensor; B and the trailing shape must match on every rank.
        world_size: number of ranks (identity when 1 or when no process group is initialised).

    Returns:
        [world_size * B, ...]; rows ``rank * B : (rank + 1) * B`` are this rank's ``x``.
    """
    if not is_distributed(world_size):
        return x
    with warnings.catch_warnings():
        # torch 2.14 marks this op deprecated in favour of a private module
        # (torch.distributed._functional_collectives); it is still the public, documented
        # autograd-aware gather; with _ContiguousGrad it matches one process on gloo.
        warnings.simplefilter("ignore", FutureWarning)
        parts = dist_nn.all_gather(x.contiguous())
    # cat's backward hands each part a dim-0 slice of the (now contiguous) gradient: contiguous.
    out: torch.Tensor = _ContiguousGrad.apply(torch.cat(parts, dim=0))
    return out


def gather_no_grad(x: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate ``x`` (labels, masks) from every rank along dim 0, without gradient.

    Bool tensors travel as uint8 because not every backend (gloo) reduces/gathers bool.

    Args:
        x: [B, ...] local tensor; same shape on every rank.
        world_size: number of ranks (returns ``x.detach()`` when nothing is gathered).

    Returns:
        [world_size * B, ...] detached, same dtype as ``x``.
    """
    src = x.detach()
    if not is_distributed(world_size):
        return src
    is_bool = src.dtype == torch.bool
    if is_bool:
        src = src.to(torch.uint8)
    src = src.contiguous()
    parts = [torch.empty_like(src) for _ in range(world_size)]
    dist.all_gather(parts, src)
    out = torch.cat(parts, dim=0)
    return out.bool() if is_bool else out
