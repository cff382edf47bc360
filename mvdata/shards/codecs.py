"""Member codecs: deterministic JPEG / 16-bit PNG / 8-bit PNG encoders (same pixels, same
bytes), the ``json`` member's parser, and :func:`image_problem`, the one check of an image
member that ``mvdata verify`` and the DALI loader's culprit search share."""

from __future__ import annotations

import io
import json
import zlib
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

#: The PIL modes each image member kind (the extension after ``tNN.vNN.``) must decode to: what
#: the build writes, and what DALI's decoders take (an RGB PNG in a depth slot breaks its stack).
IMAGE_MODES: dict[str, tuple[str, ...]] = {
    "rgb.jpg": ("RGB",),
    "depth.png": ("I;16", "I;16B", "I"),
    "normal.png": ("RGB",),
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


# --------------------------------------------------------------------------- checks
def png_crc_problem(data: bytes) -> str | None:
    """``None`` when every chunk of a PNG is whole and carries a correct CRC, else the reason.

    PIL does not check the CRC of ``IDAT`` chunks (it streams them to zlib), but libpng, which
    DALI uses, refuses the image; so this checks them itself (zlib's crc32, a few GB/s)."""
    if not data.startswith(_PNG_MAGIC):
        return "not a PNG (no PNG signature)"
    pos = len(_PNG_MAGIC)
    while pos < len(data):
        if pos + 8 > len(data):
            return f"truncated PNG: chunk header cut at byte {pos}"
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        end = pos + 8 + length + 4
        if end > len(data):
            return f"truncated PNG: chunk {ctype!r} needs {end} bytes, the member has {len(data)}"
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return f"PNG chunk {ctype!r} at byte {pos} fails its CRC"
        if ctype == b"IEND":
            return None
        pos = end
    return "truncated PNG: no IEND chunk"


def image_problem(kind: str, data: bytes, size: int) -> str | None:
    """``None`` when an image member of ``kind`` (``rgb.jpg``, ``depth.png``, ``normal.png``)
    decodes to a ``size`` x ``size`` image of its mode, else the reason it does not.

    What DALI checks, so that a member this passes is one DALI decodes: PNG chunk CRCs, the
    declared size (compared before anything is decoded, so a header declaring 60,000² pixels
    costs nothing), the mode / bit depth, then a full decode (PIL's default
    ``LOAD_TRUNCATED_IMAGES = False``: a truncated image is an error)."""
    if kind.endswith(".png"):
        why = png_crc_problem(data)
        if why is not None:
            return why
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (size, size):
                return f"image is {im.size[0]}x{im.size[1]}, expected {size}x{size}"
            modes = IMAGE_MODES.get(kind, ())
            if modes and im.mode not in modes:
                return f"image has mode {im.mode}, expected one of {', '.join(modes)}"
            im.load()
    except UnidentifiedImageError:
        return f"not an image PIL recognises ({len(data)} bytes, starting {data[:8]!r})"
    except Image.DecompressionBombError as exc:
        return f"declares too many pixels, expected {size}x{size} ({exc})"
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # PIL's decode errors
        return f"does not decode: {type(exc).__name__}: {exc}"
    return None
