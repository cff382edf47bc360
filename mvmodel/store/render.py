"""Hits as a picture: each hit's views read back from its shard (through the DALI index: one seek
per member, no tar scan) and laid out as a contact sheet, one row per hit (rgb views, then depth
when stored), labelled with rank, key, subject, pseudo-label and similarity.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from mvdata.io import atomic_write
from mvdata.shards.contact_sheet import contact_sheet
from mvdata.shards.index import read_index
from mvdata.shards.names import MODALITY_EXT, shard_paths
from mvdata.shards.reader import filesystem
from mvmodel.store.schema import StoreError

__all__ = ["hit_views", "hits_png"]


def _members_of(shard_dir: str, shard: str, key: str) -> dict[str, tuple[int, int]]:
    """``ext -> (offset, size)`` of a sample's members, from its shard's index."""
    fs, root = filesystem(shard_dir)
    idx = shard_paths(root, shard)["idx"]
    try:
        with fs.open(idx, "rb") as f:
            entries = read_index(f.read(), where=idx)
    except FileNotFoundError:
        raise StoreError(f"{idx}: not there (the shards moved since they were embedded?)") from None
    for sample in entries:
        if sample and sample[0][3].split(".", 1)[0] == key:
            return {ext: (off, size) for ext, off, size, _ in sample}
    raise StoreError(f"{idx}: no sample {key} (the shards changed since they were embedded?)")


def hit_views(hit: dict[str, Any]) -> dict[str, np.ndarray]:
    """The hit's views of its middle clip frame: ``{"rgb": [V, H, W, 3] uint8, "depth":
    [V, H, W] uint16}`` (depth when the sample has it)."""
    shard_dir, shard, key = hit["shard_dir"], hit["shard"], hit["key"]
    members = _members_of(shard_dir, shard, key)
    frames = sorted({e.split(".", 1)[0] for e in members if e.startswith("t")})
    t = frames[len(frames) // 2]
    fs, root = filesystem(shard_dir)
    tar = shard_paths(root, shard)["tar"]
    out: dict[str, np.ndarray] = {}
    with fs.open(tar, "rb") as f:
        for modality in ("rgb", "depth"):
            exts = sorted(
                e for e in members if e.startswith(f"{t}.") and e.endswith(MODALITY_EXT[modality])
            )
            views = []
            for ext in exts:
                off, size = members[ext]
                f.seek(off)
                data = f.read(size)
                try:
                    img = Image.open(io.BytesIO(data))
                    img.load()
                except OSError as exc:
                    raise StoreError(f"{tar}: member {key}.{ext} does not decode ({exc})") from None
                views.append(np.asarray(img.convert("RGB") if modality == "rgb" else img))
            if views:
                arr = np.stack(views)
                out[modality] = arr.astype(np.uint16) if modality == "depth" else arr
    if "rgb" not in out:
        raise StoreError(f"{tar}: sample {key} has no rgb member")
    return out


#: Views are shown at least this large (nearest-neighbour upscaling): a row's label must fit.
MIN_VIEW_PX = 128


def _upscale(views: np.ndarray) -> np.ndarray:
    """``[V, H, W(, C)]`` repeated to at least :data:`MIN_VIEW_PX` pixels (integer factor)."""
    factor = -(-MIN_VIEW_PX // views.shape[1])
    if factor <= 1:
        return views
    return views.repeat(factor, axis=1).repeat(factor, axis=2)


def _label(rank: int, hit: dict[str, Any]) -> str:
    parts = [f"#{rank} {hit['key']}"]
    if hit.get("similarity") is not None:
        parts.append(f"sim {float(hit['similarity']):.3f}")
    if hit.get("pseudo_label"):
        parts.append(f"pseudo {hit['pseudo_label']}")
    return "  ".join(parts)


def hits_png(hits: Sequence[dict[str, Any]], out: str, query: dict[str, Any] | None = None) -> str:
    """Write a PNG strip of ``hits`` (one row each, best first) to ``out``, after the ``query``
    row's views when given (a stored row: ``shard_dir``, ``shard``, ``key``); returns ``out``."""
    if not hits:
        raise StoreError("no hits to draw")
    shown = ([query] if query is not None else []) + list(hits)
    labels = [_label(i + 1, h) for i, h in enumerate(hits)]
    if query is not None:
        labels.insert(0, f"query {query['key']}")
    rows = [{m: _upscale(v) for m, v in hit_views(h).items()} for h in shown]
    # Every row must hold the same modalities: draw depth only when every hit has it.
    if not all("depth" in r for r in rows):
        rows = [{"rgb": r["rgb"]} for r in rows]
    try:
        sheet = contact_sheet(rows, labels)
    except ValueError as exc:
        raise StoreError(f"the hits cannot share one picture: {exc}") from None
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write(out, buf.getvalue())
    return out
