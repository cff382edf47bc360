"""The settings every loader backend takes, validated once (:func:`mvdata.loaders.make_loader`
documents each)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: ``auto`` = DALI where it imports and the data is local, else webdataset.
Backend = Literal["auto", "dali", "wds"]


class LoaderOptions(BaseModel):
    """The settings every backend takes (:func:`mvdata.loaders.make_loader` documents them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(ge=1)
    rank: int = Field(default=0, ge=0)
    world_size: int = Field(default=1, ge=1)
    train: bool = True
    seed: int = 0
    epoch: int = Field(default=0, ge=0)
    image_size: int | None = Field(default=None, ge=8)
    with_depth: bool = True
    with_normals: bool = True
    #: DALI's thread count, or the DataLoader's worker count.
    num_workers: int = Field(default=2, ge=0)
    #: None: shuffle when training.
    shuffle: bool | None = None
    max_zoom: float = Field(default=0.1, ge=0.0, lt=1.0)
    jitter: float = Field(default=0.2, ge=0.0, lt=1.0)
