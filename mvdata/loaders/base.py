"""What both loader backends share: settings, the epoch/step position and its saved state."""

from __future__ import annotations

from typing import Any

from mvdata.loaders.dataset import DatasetInfo
from mvdata.loaders.options import LoaderOptions


class LoaderBase:
    """One rank's loader over a shard directory. Subclasses set :attr:`backend` and
    :attr:`steps` (batches per epoch, equal on every rank) and iterate one epoch."""

    backend = "base"
    steps: int

    def __init__(self, info: DatasetInfo, opts: LoaderOptions) -> None:
        self.info = info
        self.batch_size = opts.batch_size
        self.rank, self.world_size = opts.rank, opts.world_size
        self.train = opts.train
        self.shuffle = opts.train if opts.shuffle is None else opts.shuffle
        self.seed, self.epoch, self.step = opts.seed, opts.epoch, 0
        self.size = opts.image_size or info.meta.image_size
        self.with_depth = opts.with_depth and info.has_depth
        self.with_normals = opts.with_normals and info.has_normals
        self.max_zoom, self.jitter = opts.max_zoom, opts.jitter

    def __len__(self) -> int:
        return self.steps

    def image_exts(self) -> list[str]:
        """The image members this loader decodes: rgb, then depth and normals when loaded."""
        return [
            *self.info.rgb_exts(),
            *(self.info.depth_exts() if self.with_depth else []),
            *(self.info.normal_exts() if self.with_normals else []),
        ]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning on the next iteration."""
        self.epoch, self.step = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        """Backend, epoch and step (subclasses add what they need to resume exactly)."""
        return {
            "backend": self.backend,
            "epoch": self.epoch,
            "step": self.step,
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of a loader with the same data and settings; a state
        saved after an epoch's last batch resumes at the start of the next epoch."""
        if state.get("backend") != self.backend or state.get("world_size") != self.world_size:
            raise ValueError("loader state is from another backend or world size")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self.step >= self.steps:
            self.epoch, self.step = self.epoch + 1, 0
