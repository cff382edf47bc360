"""Step-based checkpoints, written so that a kill at any moment leaves the last one whole.

Layout of a run directory::

    RUN/checkpoints/ckpt-00000200/model.safetensors   weights (safetensors: loading runs no code)
    RUN/checkpoints/ckpt-00000200/trainer.pt          optimizer, scheduler, step, samples seen,
                                                      pseudo-labeller queue, each rank's loader
                                                      state and RNG states, config hash
    RUN/checkpoints/LATEST                            name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder and renamed into place when complete;
``LATEST`` is replaced atomically after that, and old checkpoints are pruned last. ``trainer.pt``
holds only tensors, numbers, strings, lists and dicts, so it is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mvdata.io import atomic_write

__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_weights",
    "save_checkpoint",
    "write_weights",
]

CHECKPOINT_DIR = "checkpoints"
PREFIX = "ckpt-"
LATEST = "LATEST"
WEIGHTS = "model.safetensors"
TRAINER = "trainer.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, incomplete, or from another config."""


def write_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Save ``state`` as safetensors at ``path`` atomically (contiguous CPU copies)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file; ``CheckpointError`` naming the file."""
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    return tensors, meta


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / TRAINER).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``LATEST`` names, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINT_DIR
    marker = root / LATEST
    if marker.is_file():
        named = root / marker.read_text(encoding="ascii").strip()
        if (named / TRAINER).is_file() and (named / WEIGHTS).is_file():
            return named
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    metadata: dict[str, str],
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` (atomically), point ``LATEST`` at it, keep the newest ``keep``."""
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        write_weights(tmp / WEIGHTS, weights, metadata)
        torch.save(trainer_state, tmp / TRAINER)
        os.chmod(tmp, 0o755)
        if final.exists():  # a rerun of the same step (resume after a kill right after saving)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write(root / LATEST, (final.name + "\n").encode("ascii"))
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(f".{PREFIX}*.tmp"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, expected_hash: str | tuple[str, ...] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and trainer state of checkpoint ``path``.

    With ``expected_hash`` (one hash, or the hashes one config has had: the current one first),
    a checkpoint written under another config is refused (:class:`CheckpointError` naming both
    hashes and the config file to compare with).
    """
    path = Path(path)
    weights, meta = read_weights(path / WEIGHTS)
    try:
        state = torch.load(path / TRAINER, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path / TRAINER}: missing: an incomplete checkpoint") from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path / TRAINER}: not readable ({exc})") from exc
    if not isinstance(state, dict) or "config_hash" not in state:
        raise CheckpointError(f"{path / TRAINER}: not an mvmodel trainer state")
    accepted = (expected_hash,) if isinstance(expected_hash, str) else expected_hash
    if accepted is not None and state["config_hash"] not in accepted:
        saved = json.loads(meta.get("config", "{}")) if meta.get("config") else {}
        hint = f" (saved config sections: {', '.join(sorted(saved))})" if saved else ""
        raise CheckpointError(
            f"{path}: written with config hash {state['config_hash']}, but this run's config "
            f"hashes to {accepted[0]}: resume with the same settings (see config.yaml in the "
            f"run directory){hint}, or train into a new --out"
        )
    return weights, state
