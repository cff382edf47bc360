"""Choosing the T frames of a 4D clip: uniformly, or around the peak of motion (no labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mvdata.mesh import Mesh

NDArrayF = NDArray[np.float64]


def uniform_clip(num_frames: int, clip: int) -> list[int]:
    """``clip`` frame indices spread evenly over the sequence (repeats when it is shorter)."""
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, clip)]


def motion_energy(meshes: Sequence[Mesh]) -> NDArrayF:
    """Per-frame displacement from the first frame, without labels: landmark distance when
    landmarks exist, else the mean nearest-vertex distance of a fixed vertex subsample (frames of
    scan-like sequences share no vertex correspondence)."""
    first = meshes[0]
    out = np.zeros(len(meshes))
    if all(m.landmarks is not None and len(m.landmarks) for m in meshes):
        ref = first.landmarks
        assert ref is not None
        for t, m in enumerate(meshes):
            assert m.landmarks is not None
            if m.landmarks.shape == ref.shape:
                out[t] = float(np.linalg.norm(m.landmarks - ref, axis=1).mean())
        return out
    rng = np.random.default_rng(0)
    for t, m in enumerate(meshes):
        pts = m.vertices[rng.choice(len(m.vertices), size=min(256, len(m.vertices)), replace=False)]
        d = np.linalg.norm(pts[:, None, :] - first.vertices[None, ::4, :], axis=2).min(axis=1)
        out[t] = float(d.mean())
    return out


def motion_clip(energy: NDArrayF, clip: int) -> list[int]:
    """``clip`` frames evenly over a window centred on the frame of largest motion energy; the
    window spans half the sequence (clipped to its ends)."""
    n = len(energy)
    peak = int(np.argmax(energy))
    half = max((n - 1) / 4.0, (clip - 1) / 2.0)
    lo, hi = peak - half, peak + half
    if lo < 0:
        lo, hi = 0.0, min(n - 1.0, hi - lo)
    if hi > n - 1:
        lo, hi = max(0.0, lo - (hi - (n - 1))), n - 1.0
    return [int(round(x)) for x in np.linspace(lo, hi, clip)]
