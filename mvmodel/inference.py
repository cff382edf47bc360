"""A trained MultiviewVLM, loaded for use: embed shard batches, embed text, classify zero-shot.

:meth:`TrainedModel.load` reads ``RUN/model.safetensors`` (or a checkpoint's), which holds every
trained weight and the run's config in its metadata: loading executes no code (safetensors, no
pickle). The frozen text encoder named in the metadata (MiniLM by default) is loaded only when
text is embedded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvdata.loaders import Loader, MultiviewBatch, make_loader
from mvmodel.checkpoint import WEIGHTS, CheckpointError, read_weights
from mvmodel.config import TrainConfig, config_hash, with_recorded_defaults
from mvmodel.train.module import MultiviewVLMTrainer

__all__ = ["EmbeddedBatch", "TrainedModel", "pick_views", "weights_path"]


def weights_path(path: str | Path) -> Path:
    """The weights file of a run directory, a checkpoint directory, or the file itself."""
    p = Path(path)
    if p.is_dir():
        if (p / WEIGHTS).is_file():
            return p / WEIGHTS
        raise CheckpointError(f"{p}: no {WEIGHTS} (is it a finished run or a checkpoint?)")
    if p.is_file():
        return p
    raise CheckpointError(f"{p}: no such run, checkpoint or weights file")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pick_views(batch: MultiviewBatch, pick: Sequence[int]) -> MultiviewBatch:
    """The batch with only the view positions ``pick`` (as the training step slices them)."""
    p = list(pick)
    if max(p, default=-1) >= batch.images.shape[2]:
        raise ValueError(
            f"the run trained on view positions {p}; these shards have "
            f"{batch.images.shape[2]} view(s)"
        )
    return replace(
        batch,
        images=batch.images[:, :, p],
        depth=None if batch.depth is None else batch.depth[:, :, p],
        normals=None if batch.normals is None else batch.normals[:, :, p],
        views=[batch.views[i] for i in p] if batch.views else p,
    )


@dataclass
class EmbeddedBatch:
    """One loader batch embedded: only valid rows, ``f [N, D]`` and ``z [N, T·V, D]`` (float32,
    unit rows, on the CPU), with the rows' keys and parsed json members. ``fused [N, F]``: the
    fused backbone feature ``f`` is projected from (not normalised)."""

    keys: list[str]
    meta: list[dict[str, Any]]
    f: np.ndarray
    z: np.ndarray
    fused: np.ndarray


class TrainedModel:
    """The trained parts of MultiviewVLM in eval mode on ``device``."""

    def __init__(
        self,
        trainer: MultiviewVLMTrainer,
        config: TrainConfig,
        metadata: dict[str, str],
        source: Path,
        device: torch.device,
    ) -> None:
        self.trainer = trainer.eval()
        self.config = config
        self.metadata = metadata
        self.source = source
        self.device = device
        self.classes: list[str] = list(config.text.prompts.classes)
        #: The config hash of the run: the same for every checkpoint of one run.
        self.model_id = metadata.get("config_hash") or config_hash(config)
        #: sha256 of the weights file: different for every checkpoint.
        self.checkpoint_sha256 = _sha256(source)
        self.step = int(metadata.get("step", "0"))
        self._encoder: Any = None
        self._prototypes: torch.Tensor | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> TrainedModel:
        """Load a run directory, a checkpoint directory or a ``model.safetensors`` file."""
        src = weights_path(path)
        tensors, meta = read_weights(src)
        if "config" not in meta:
            raise CheckpointError(f"{src}: no config in its metadata: not an mvmodel weights file")
        config = TrainConfig.model_validate(with_recorded_defaults(json.loads(meta["config"])))
        text_dim = _text_in_dim(tensors, src)
        trainer = MultiviewVLMTrainer(config, text_dim)
        missing, unexpected = trainer.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{src}: weights do not fit the config in its metadata (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        return cls(trainer.to(dev), config, meta, src, dev)

    # ----------------------------------------------------------------------- images
    def loader(
        self, shards: str | Path, *, batch_size: int = 32, split: str | None = None, **kw: Any
    ) -> Loader:
        """An eval loader (sorted, no augmentation) shaped for this model's channels and size."""
        return make_loader(
            shards,
            batch_size=batch_size,
            train=False,
            split=split,
            device=str(self.device),
            image_size=self.config.model.image_size,
            with_depth="depth" in self.config.model.channels,
            with_normals="normal" in self.config.model.channels,
            **kw,
        )

    @property
    def trained_views(self) -> tuple[int, ...] | None:
        """The view positions the run trained on (``data.views``), None for all of them."""
        views = self.config.data.views
        return tuple(int(v) for v in views) if views is not None else None

    @torch.no_grad()
    def embed_batch(self, batch: MultiviewBatch) -> EmbeddedBatch:
        """Embeddings of a batch's valid rows, from the views the run trained on.

        A run trained on a subset of the views (``data.views``, e.g. the single-view baseline)
        sees only those positions, sliced as the training step slices them: its fused
        embedding of views it never saw together would not be the representation it learned.
        """
        dev = self.device
        if self.trained_views is not None:
            batch = pick_views(batch, self.trained_views)
        view_ids = torch.as_tensor(list(batch.views), device=dev) if batch.views else None
        ctx = (
            torch.autocast(dev.type, dtype=torch.bfloat16)
            if dev.type == "cuda"
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.trainer.vision(
                batch.images.to(dev),
                None if batch.depth is None else batch.depth.to(dev),
                None if batch.normals is None else batch.normals.to(dev),
                view_ids,
            )
        rows = [i for i, ok in enumerate(batch.valid.tolist()) if ok]
        idx = torch.as_tensor(rows, dtype=torch.long, device=dev)
        meta = [batch.meta[i] or {} for i in rows]
        return EmbeddedBatch(
            keys=[batch.keys[i] for i in rows],
            meta=meta,
            f=out.f[idx].float().cpu().numpy(),
            z=out.z[idx].float().cpu().numpy(),
            fused=out.fused[idx].float().cpu().numpy(),
        )

    def embed_shards(
        self, shards: str | Path, *, batch_size: int = 32, split: str | None = None, **kw: Any
    ) -> Iterator[EmbeddedBatch]:
        """Every sample of ``shards`` (one eval epoch), batch by batch."""
        for batch in self.loader(shards, batch_size=batch_size, split=split, **kw):
            if batch.num_valid:
                yield self.embed_batch(batch)

    # ----------------------------------------------------------------------- text
    @property
    def text_encoder(self) -> Any:
        """The frozen text encoder the run was trained with (loaded on first use)."""
        if self._encoder is None:
            from mvmodel.text.encoders import make_text_encoder

            self._encoder = make_text_encoder(self.config.text.encoder)
        return self._encoder

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, D]`` unit rows: the texts through the frozen encoder and the trained projection,
        in the joint space of :meth:`embed_batch`'s ``f``."""
        raw = torch.from_numpy(self.text_encoder.encode(list(texts))).to(self.device)
        out = torch.nn.functional.normalize(self.trainer.text(raw).float(), dim=-1)
        return out.cpu().numpy()

    @property
    def prototypes(self) -> torch.Tensor:
        """Class prototypes ``c [K, D]`` (``RUN/prototypes.safetensors`` when present, else the
        prompt bank re-encoded through the projection)."""
        if self._prototypes is None:
            proto_file = self.source.parent / "prototypes.safetensors"
            if proto_file.is_file():
                tensors, _ = read_weights(proto_file)
                self._prototypes = tensors["prototypes"].float().to(self.device)
            else:
                from mvmodel.text.prompts import build_prompt_bank

                bank = build_prompt_bank(self.config.text.prompts)
                texts, class_index = bank.flat()
                emb = torch.from_numpy(self.text_encoder.encode(texts)).to(self.device)
                with torch.no_grad():
                    self._prototypes = self.trainer.text.prototypes(
                        emb, torch.from_numpy(class_index).to(self.device), len(self.classes)
                    ).float()
        return self._prototypes

    @torch.no_grad()
    def zero_shot(self, f: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities ``[N, K]`` of fused embeddings: softmax of the cosine to each
        prototype over the learned temperature."""
        x = torch.as_tensor(f, dtype=torch.float32, device=self.device)
        tau = float(self.trainer.temperature())
        return torch.softmax(x @ self.prototypes.T / tau, dim=-1).cpu().numpy()


def _text_in_dim(tensors: dict[str, torch.Tensor], src: Path) -> int:
    """The frozen text encoder's width, read from the projection's first layer."""
    for key in ("text.net.weight", "text.net.0.weight"):
        if key in tensors:
            return int(tensors[key].shape[1])
    raise CheckpointError(f"{src}: no text projection weights (text.net.*)")
