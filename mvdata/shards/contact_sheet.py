"""A contact sheet of rendered samples: a quick visual check of views and modalities.

One row per sample; in each row the views of each modality side by side (rgb, then depth, then
normals), a label above. Depth is shown as grey levels, near bright and far dark, stretched over
the row's foreground range; background stays black. Used by ``mvdata info``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

#: Modalities in the order they appear in a row; any other key is ignored.
SHEET_ORDER = ("rgb", "depth", "normal")
LABEL_HEIGHT = 14
GAP = 6
BACKGROUND = (40, 40, 40)
TEXT = (235, 235, 235)


def depth_to_grey(depth: NDArray[np.uint16]) -> NDArray[np.uint8]:
    """``[V, H, W]`` uint16 depth (0 = background) -> ``[V, H, W, 3]`` uint8, near = bright.

    The grey ramp spans 40..255 over the foreground's min..max so that the farthest surface
    stays distinguishable from the black background.
    """
    mask = depth > 0
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not mask.any():
        return out
    fg = depth[mask].astype(np.float64)
    lo, hi = fg.min(), fg.max()
    span = hi - lo if hi > lo else 1.0
    grey = 255.0 - 215.0 * (depth.astype(np.float64) - lo) / span
    out[mask] = np.rint(grey[mask]).astype(np.uint8)[:, None]
    return out


def _as_rgb_views(modality: str, arr: NDArray[np.generic]) -> NDArray[np.uint8]:
    """A modality's ``[V, H, W(, C)]`` array as displayable ``[V, H, W, 3]`` uint8."""
    if modality == "depth":
        return depth_to_grey(np.asarray(arr, np.uint16))
    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{modality} must be uint8 [V, H, W, 3], got {a.dtype} {a.shape}")
    return a


def contact_sheet(rows: Sequence[dict[str, np.ndarray]], labels: Sequence[str]) -> Image.Image:
    """Lay out rendered samples (dicts as returned by ``Renderer.render``) as one RGB image.

    Every row must hold the same modalities with the same number and size of views.
    """
    if not rows:
        raise ValueError("no rows to lay out")
    if len(labels) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    modalities = [m for m in SHEET_ORDER if m in rows[0]]
    if not modalities:
        raise ValueError(f"rows hold none of {SHEET_ORDER}")
    strips: list[NDArray[np.uint8]] = []
    for i, row in enumerate(rows):
        if [m for m in SHEET_ORDER if m in row] != modalities:
            raise ValueError(f"row {i} has modalities {sorted(row)}, row 0 has {modalities}")
        groups = []
        for m in modalities:
            views = _as_rgb_views(m, row[m])
            groups.append(np.concatenate(list(views), axis=1))  # views side by side
        height = groups[0].shape[0]
        if any(g.shape != groups[0].shape for g in groups):
            raise ValueError(f"row {i}: modalities differ in view count or size")
        gap = np.empty((height, GAP, 3), np.uint8)
        gap[:] = BACKGROUND
        parts: list[NDArray[np.uint8]] = []
        for g in groups:
            parts += [g, gap]
        strips.append(np.concatenate(parts[:-1], axis=1))
    width = strips[0].shape[1]
    if any(s.shape != strips[0].shape for s in strips):
        raise ValueError("rows differ in view count or size")
    row_h = strips[0].shape[0] + LABEL_HEIGHT
    sheet = Image.new("RGB", (width, row_h * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    group_w = (width - GAP * (len(modalities) - 1)) // len(modalities)
    for i, (strip, label) in enumerate(zip(strips, labels, strict=True)):
        top = i * row_h
        sheet.paste(Image.fromarray(strip), (0, top + LABEL_HEIGHT))
        draw.text((2, top + 1), label, fill=TEXT)
        if i == 0:  # name the modality groups once, right-aligned above each group
            for k, m in enumerate(modalities):
                x_end = (k + 1) * group_w + k * GAP
                draw.text((x_end - 6 * len(m) - 2, top + 1), m, fill=TEXT)
    return sheet
