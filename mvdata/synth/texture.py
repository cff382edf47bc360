"""Procedural skin albedo on a face model's UV layout (tone, lips, brows vary per identity).

Drawn with PIL (polygons, lines, Gaussian blur) from the UV positions of the ibug landmarks, so
the same code textures the SFM and the procedural face.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

# Base skin tones (sRGB) from light to dark; an identity picks one and jitters it.
_SKIN_TONES = np.array(
    [
        [236, 200, 178],
        [224, 180, 150],
        [198, 150, 118],
        [170, 120, 90],
        [130, 88, 62],
        [95, 64, 46],
    ],
    dtype=np.float64,
)
_HAIR = np.array(
    [[40, 30, 24], [70, 50, 35], [110, 80, 50], [150, 120, 80], [25, 22, 20]], dtype=np.float64
)


def skin_albedo(
    uv_by_ibug: dict[int, tuple[float, float]],
    rng: np.random.Generator,
    size: int = 256,
) -> NDArray[np.uint8]:
    """An RGB albedo texture (row 0 at the top) for landmark UVs given in OpenGL convention.

    ``uv_by_ibug`` maps ibug ids to (u, v) with v up; the image row of v is ``(1 - v) * size``.
    """
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 8, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 6, 3)
    lip_tint = np.array([175.0, 85.0, 90.0]) + rng.normal(0, 10, 3)
    lip_mix = rng.uniform(0.35, 0.6)
    brow_width = rng.uniform(0.012, 0.025) * size

    # Low-frequency blotches: coarse noise upsampled smoothly. Mostly brightness (scaled with
    # the tone, so dark skin is not tinted by a fixed-size chroma noise), a little redness.
    coarse = rng.normal(0, 1, (8, 8, 2)) * np.array(
        [rng.uniform(0.03, 0.07), rng.uniform(0.01, 0.03)]
    )
    up = np.stack(
        [
            np.asarray(
                Image.fromarray(c.astype(np.float32), "F").resize(
                    (size, size), Image.Resampling.BICUBIC
                )
            )
            for c in np.moveaxis(coarse, 2, 0)
        ],
        axis=2,
    ).astype(np.float64)
    shade = 1.0 + up[..., :1] + rng.normal(0, 0.012, (size, size, 1))
    redness = up[..., 1:] * np.array([1.0, -0.5, -0.5]) * tone.mean()
    base = np.clip(tone[None, None, :] * shade + redness, 0, 255).astype(np.uint8)
    img = Image.fromarray(base, "RGB")

    def px(ids: range | list[int]) -> list[tuple[float, float]]:
        return [
            (uv_by_ibug[i][0] * size, (1.0 - uv_by_ibug[i][1]) * size)
            for i in ids
            if i in uv_by_ibug
        ]

    # Lips: the outer lip polygon (ibug 49-60), tinted and softened.
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    lips = px(range(49, 61))
    if len(lips) >= 3:
        draw.polygon(lips, fill=int(255 * lip_mix))
    mask = mask.filter(ImageFilter.GaussianBlur(size / 128))
    lip_layer = Image.new("RGB", (size, size), tuple(int(c) for c in lip_tint.clip(0, 255)))
    img = Image.composite(lip_layer, img, mask)

    # Brows: thick lines through ibug 18-22 and 23-27 in the hair colour.
    bmask = Image.new("L", (size, size), 0)
    bdraw = ImageDraw.Draw(bmask)
    for ids in (range(18, 23), range(23, 28)):
        pts = px(ids)
        if len(pts) >= 2:
            bdraw.line(pts, fill=210, width=max(1, int(brow_width)), joint="curve")
    bmask = bmask.filter(ImageFilter.GaussianBlur(size / 200))
    img = Image.composite(
        Image.new("RGB", (size, size), tuple(int(c) for c in hair.clip(0, 255))), img, bmask
    )

    # Eyes: a darker almond over each eye ring (ibug 37-42, 43-48).
    emask = Image.new("L", (size, size), 0)
    edraw = ImageDraw.Draw(emask)
    for ids in (range(37, 43), range(43, 49)):
        pts = px(ids)
        if len(pts) >= 3:
            edraw.polygon(pts, fill=180)
    emask = emask.filter(ImageFilter.GaussianBlur(size / 256))
    img = Image.composite(Image.new("RGB", (size, size), (60, 45, 40)), img, emask)
    return np.asarray(img, dtype=np.uint8).copy()


def sample_texture(texture: NDArray[np.uint8], uvs: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Vertex colours: the texel nearest each (OpenGL-convention) UV."""
    h, w = texture.shape[:2]
    cols = np.clip((uvs[:, 0] * w).astype(np.int64), 0, w - 1)
    rows = np.clip(((1.0 - uvs[:, 1]) * h).astype(np.int64), 0, h - 1)
    return texture[rows, cols].copy()
