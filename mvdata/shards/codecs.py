"""Member codecs: deterministic JPEG / 16-bit PNG / 8-bit PNG encoders (same pixels, same
bytes) and the ``json`` member's parser."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image


# --------------------------------------------------------------------------- encoders
def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Encode an ``[H, W, 3]`` uint8 image as baseline JPEG (deterministic: no optimise pass)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(
        buf, format="JPEG", quality=int(quality), optimize=False, progressive=False, subsampling=0
    )
    return buf.getvalue()


def encode_png16(depth: np.ndarray) -> bytes:
    """Encode an ``[H, W]`` uint16 image as a 16-bit greyscale PNG (no timestamp chunks)."""
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError(f"expected [H, W] uint16, got {depth.shape} {depth.dtype}")
    buf = io.BytesIO()
    # Little-endian "I;16" is what PIL's PNG encoder turns into a 16-bit grey PNG.
    Image.fromarray(np.ascontiguousarray(depth, dtype="<u2")).save(
        buf, format="PNG", optimize=False, compress_level=6
    )
    return buf.getvalue()


def encode_png8(img: np.ndarray) -> bytes:
    """Encode an ``[H, W]`` or ``[H, W, 3]`` uint8 image as an 8-bit PNG (deterministic)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected [H, W] or [H, W, 3] uint8, got {img.shape} {img.dtype}")
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def decode_json(data: bytes) -> dict[str, Any]:
    """Parse a ``json`` member."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("json member is not an object")
    return obj
