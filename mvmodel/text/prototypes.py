"""Prompt embeddings (computed once, cached on disk) and class prototypes in the joint space.

docs/method.md: ``c[k]`` = prototype of emotion k = the mean of its prompt embeddings after the
text projection, normalised. The paper speaks of text prompts guiding an implicit alignment in a
joint embedding space; the frozen encoder + trainable projection + mean-of-normalised-rows
prototype is this project's reading of it.

Cache layout: one safetensors file per (bank fingerprint, encoder name) in ``cache_dir``,
``prompt-emb-<fingerprint[:16]>-<encoder slug>-<sha256(encoder name)[:8]>.safetensors``, with the
tensors ``embeddings`` (float32 [P, dim]) and ``class_index`` (int64 [P]) and string metadata
``format``, ``bank_fingerprint``, ``encoder_name``, ``classes`` (a JSON list). It is written to a
temporary file in the same folder and moved into place with :func:`os.replace`, so a reader sees
either no file or a whole one, even with several processes (ranks) writing at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from torch import nn

from mvmodel.text.encoders import TextEncoder, l2_normalise
from mvmodel.text.prompts import PromptBank

CACHE_FORMAT = "mvmodel.text.prompt_embeddings/1"


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare fields explicitly
class PromptEmbeddings:
    """Every prompt of a bank encoded once: row i is a prompt of class ``classes[class_index[i]]``."""

    embeddings: np.ndarray  # float32 [P_total, dim], unit-norm rows
    class_index: np.ndarray  # int64 [P_total]
    classes: tuple[str, ...]
    encoder_name: str
    bank_fingerprint: str

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.classes)

    @property
    def dim(self) -> int:
        """Width of the text embeddings."""
        return int(self.embeddings.shape[1])

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeddings, class_index)`` as torch tensors on ``device``."""
        return (
            torch.from_numpy(self.embeddings).to(device),
            torch.from_numpy(self.class_index).to(device),
        )


def cache_path(cache_dir: Path, bank_fingerprint: str, encoder_name: str) -> Path:
    """Where the embeddings of (bank, encoder) are cached; readable, and unique per full key."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name)[:48]
    tag = hashlib.sha256(encoder_name.encode("utf-8")).hexdigest()[:8]
    return Path(cache_dir) / f"prompt-emb-{bank_fingerprint[:16]}-{slug}-{tag}.safetensors"


def prompt_embeddings(
    bank: PromptBank,
    encoder: TextEncoder,
    cache_dir: Path | None = None,
    batch_size: int = 64,
) -> PromptEmbeddings:
    """Encode every prompt of ``bank`` with ``encoder``, or load them from the cache.

    With ``cache_dir`` the result is read from (or written to) the file named by
    :func:`cache_path`; a file whose metadata does not match the key in full, or that cannot be
    read, is recomputed and replaced. Without it, the prompts are encoded each call.
    """
    fingerprint = bank.fingerprint()
    path = None
    if cache_dir is not None:
        path = cache_path(Path(cache_dir), fingerprint, encoder.name)
        cached = _read_cache(path, fingerprint, encoder.name, bank.classes)
        if cached is not None:
            return cached
    texts, class_index = bank.flat()
    emb = l2_normalise(encoder.encode(texts, batch_size=batch_size))
    if emb.shape != (len(texts), encoder.dim):
        raise ValueError(
            f"{encoder.name}: encode gave shape {emb.shape}, expected {(len(texts), encoder.dim)}"
        )
    result = PromptEmbeddings(
        embeddings=emb,
        class_index=class_index,
        classes=bank.classes,
        encoder_name=encoder.name,
        bank_fingerprint=fingerprint,
    )
    if path is not None:
        _write_cache(path, result)
    return result


def _read_cache(
    path: Path, fingerprint: str, encoder_name: str, classes: tuple[str, ...]
) -> PromptEmbeddings | None:
    """The cached embeddings when ``path`` holds exactly this key, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if (
                meta.get("format") != CACHE_FORMAT
                or meta.get("bank_fingerprint") != fingerprint
                or meta.get("encoder_name") != encoder_name
                or json.loads(meta.get("classes", "null")) != list(classes)
                or set(f.keys()) != {"embeddings", "class_index"}
            ):
                return None
            embeddings = f.get_tensor("embeddings")
            class_index = f.get_tensor("class_index")
    except (SafetensorError, json.JSONDecodeError):
        # Unreadable (e.g. a file left by something other than the atomic writer below):
        # a miss; the caller recomputes and replaces it.
        return None
    return PromptEmbeddings(
        embeddings=embeddings.astype(np.float32, copy=False),
        class_index=class_index.astype(np.int64, copy=False),
        classes=classes,
        encoder_name=encoder_name,
        bank_fingerprint=fingerprint,
    )


def _write_cache(path: Path, emb: PromptEmbeddings) -> None:
    """Write ``emb`` to ``path`` atomically: a temporary file in the same folder, then os.replace.

    Same folder, because os.replace is atomic only within one file system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    done = False
    try:
        save_file(
            {
                "embeddings": np.ascontiguousarray(emb.embeddings, dtype=np.float32),
                "class_index": np.ascontiguousarray(emb.class_index, dtype=np.int64),
            },
            str(tmp),
            metadata={
                "format": CACHE_FORMAT,
                "bank_fingerprint": emb.bank_fingerprint,
                "encoder_name": emb.encoder_name,
                "classes": json.dumps(list(emb.classes)),
            },
        )
        # Flush to disk before the rename, so a crash cannot leave a renamed but empty file.
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def _class_means(
    rows: torch.Tensor, class_index: torch.Tensor | np.ndarray, num_classes: int | None
) -> torch.Tensor:
    """Per class: mean of the L2-normalised ``rows``, then L2-normalised. ``[K, dim]``."""
    idx = torch.as_tensor(class_index, dtype=torch.long, device=rows.device)
    if idx.ndim != 1 or idx.shape[0] != rows.shape[0]:
        raise ValueError(
            f"class_index shape {tuple(idx.shape)} does not match rows {tuple(rows.shape)}"
        )
    k = int(idx.max().item()) + 1 if num_classes is None else num_classes
    counts = torch.bincount(idx, minlength=k)
    if counts.shape[0] > k or bool((counts == 0).any()):
        raise ValueError(
            f"every class 0..{k - 1} needs at least one prompt; counts {counts.tolist()}"
        )
    unit = nn.functional.normalize(rows, dim=-1)
    sums = torch.zeros(k, rows.shape[1], dtype=unit.dtype, device=unit.device).index_add(
        0, idx, unit
    )
    # Dividing by the count does not change the direction, but keeps the mean's meaning explicit.
    means = sums / counts.to(unit.dtype).unsqueeze(1)
    return nn.functional.normalize(means, dim=-1)


class TextProjection(nn.Module):
    """Trainable map from the frozen text space to the joint space, and the class prototypes.

    ``kind="linear"``: one linear layer. ``kind="mlp"``: linear → GELU → linear with
    ``hidden_dim`` (default: the larger of the two widths). The (last) weight starts
    (semi-)orthogonal with zero bias: with ``out_dim >= in_dim`` the projection then preserves
    every cosine of the frozen space, so the first prototypes keep the text encoder's zero-shot
    geometry instead of a random one.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kind: Literal["linear", "mlp"] = "linear",
        hidden_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.kind = kind
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim, bias=bias)
        elif kind == "mlp":
            hidden = hidden_dim or max(in_dim, out_dim)
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim, bias=bias)
            )
        else:
            raise ValueError(f"TextProjection kind must be 'linear' or 'mlp', got {kind!r}")
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        #: Mean of the prompt bank's embeddings, subtracted from every text embedding before the
        #: projection (zero: nothing subtracted). See :meth:`set_center`.
        self.center: torch.Tensor
        self.register_buffer("center", torch.zeros(in_dim))

    def set_center(self, emb: torch.Tensor) -> None:
        """Centre the frozen text space on the mean of ``emb`` (the prompt bank's rows).

        The prompts share most of their words ("a face ... seen from the left, in a 3D scan"), so
        in the frozen space the class means sit close together (cosines 0.81-0.94 with
        all-MiniLM-L6-v2); subtracting the bank's mean (and renormalising) leaves what tells the
        classes apart. Measured on 150 synthetic samples: with raw prompts the image->text loss
        did not learn in 40 steps (the text->image term pushed every embedding away from all
        the near-identical prototypes); centred, it reached 0.50 training accuracy. Every text
        embedding goes through the same centring, the prompts and a user's query alike, and the
        mean is saved with the weights.
        """
        self.center.copy_(emb.detach().float().mean(dim=0).to(self.center.device))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """``[..., in_dim]`` → ``[..., out_dim]`` (not normalised); centred first when a
        centre is set (:meth:`set_center`)."""
        center = self.center
        if bool(center.any()):
            emb = nn.functional.normalize(emb - center.to(emb.dtype), dim=-1)
        return self.net(emb)

    def prototypes(
        self,
        emb: torch.Tensor,
        class_index: torch.Tensor | np.ndarray,
        num_classes: int | None = None,
    ) -> torch.Tensor:
        """``c``: ``[K, out_dim]``, per class the normalised mean of its normalised projected rows.

        ``num_classes`` defaults to ``max(class_index) + 1``; every class needs a prompt.
        """
        return _class_means(self(emb), class_index, num_classes)


def zero_shot_prototypes(
    emb: torch.Tensor,
    class_index: torch.Tensor | np.ndarray,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Prototypes in the frozen text space (identity projection): ``[K, dim]``, unit rows."""
    return _class_means(emb, class_index, num_classes)


def class_prototypes_numpy(
    embeddings: np.ndarray, class_index: np.ndarray, num_classes: int
) -> np.ndarray:
    """:func:`zero_shot_prototypes` in numpy, for evaluation: ``[K, dim]`` float32."""
    emb = l2_normalise(embeddings)
    idx = np.asarray(class_index, dtype=np.int64)
    if idx.shape != (emb.shape[0],):
        raise ValueError(f"class_index shape {idx.shape} does not match embeddings {emb.shape}")
    counts = np.bincount(idx, minlength=num_classes)
    if counts.shape[0] > num_classes or (counts == 0).any():
        raise ValueError(
            f"every class 0..{num_classes - 1} needs at least one prompt; counts {counts.tolist()}"
        )
    sums = np.zeros((num_classes, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, idx, emb)
    return l2_normalise(sums / counts[:, None])
