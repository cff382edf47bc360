"""One launcher-agnostic view of distributed training: torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; multi-node through torchrun's
rendezvous), gloo on the CPU, NCCL on GPUs, and a plain single process when none is set."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_objects", "barrier", "init_distributed", "shutdown"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that writes logs, checkpoints and the final weights)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device_name(device: str) -> str:
    """``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; any other name unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> DistInfo:
    """Join the process group torchrun describes (or run alone) and pick this rank's device.

    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` (GPU ``LOCAL_RANK``) or
    ``cuda:N``. The backend is NCCL when the device is a GPU, gloo otherwise.
    """
    rank = _env_int("RANK", 0)
    world = _env_int("WORLD_SIZE", 1)
    local = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent")
    device = resolve_device_name(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available")
        index = int(device.partition(":")[2] or local)
        dev = torch.device("cuda", index)
        torch.cuda.set_device(dev)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    backend = None
    if world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
            )
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (nothing to do alone)."""
    if info.world_size > 1:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index or 0])
        else:
            dist.barrier()


def all_gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if info.world_size == 1:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown(info: DistInfo) -> None:
    """Leave the process group (safe to call when alone or already left)."""
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
