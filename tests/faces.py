"""Small synthetic face sets in a dataset's own layout, and the mistakes the convention checks
must catch in them (shared by the inspect, texture and build tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mvdata.synth.facemodel import FaceModel
from mvdata.synth.generate import SynthConfig
from mvdata.synth.writer import write_synth


def facescape_set(model: FaceModel, root: Path) -> Path:
    """FaceScape-layout OBJs without landmarks: 3 identities x (neutral, happiness, surprise) at
    intensity 3, 128-px textures, 3 degrees of pose jitter; returns the dataset root."""
    cfg = SynthConfig(
        num_identities=3,
        expressions=("neutral", "happiness", "surprise"),
        intensities=(3,),
        texture_size=128,
        pose_jitter_deg=3.0,
        seed=4,
    )
    return write_synth(cfg, model, root, fmt="facescape").out_dir


def store_images_upside_down(root: Path, pattern: str, fmt: str) -> None:
    """Rewrite every image under ``root`` matching ``pattern`` with its rows reversed, in
    ``fmt`` (what a texture stored against its UVs' convention looks like)."""
    for path in sorted(root.rglob(pattern)):
        with Image.open(path) as im:
            flipped = np.ascontiguousarray(np.asarray(im.convert("RGB"))[::-1])
        Image.fromarray(flipped).save(
            path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})
        )
