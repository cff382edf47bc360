"""Choosing the T frames of a 4D clip: uniformly, or around the peak of motion (no labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh

NDArrayF = NDArray[np.float64]


def uniform_clip(num_frames: int, clip: int) -> list[int]:
    """``clip`` frame indices spread evenly over the sequence (repeats when it is shorter)."""
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, clip)]


class MotionReference:
    """The first frame of a sequence, against which later frames' displacement is measured
    without labels: the mean landmark distance when both frames carry the same landmarks, else
    the 90th percentile of the distances from a seeded sample of the frame's vertices to the
    nearest vertex of the first frame. Scan-like frames share no vertex correspondence, and most
    of a face does not move, so a high percentile (not the mean) shows where the face moved."""

    SAMPLE = 512

    def __init__(self, first: Mesh) -> None:
        from scipy.spatial import cKDTree  # nearest-neighbour search: no need to hand-write one

        self.first = first
        self._tree = cKDTree(first.vertices.astype(np.float64))

    def motion(self, mesh: Mesh, seed: int = 0) -> float:
        """Displacement of ``mesh`` from the first frame (0 for the first frame itself)."""
        a, b = self.first.landmarks, mesh.landmarks
        if a is not None and b is not None and len(a) and a.shape == b.shape:
            return float(np.linalg.norm(b - a, axis=1).mean())
        rng = np.random.default_rng(seed)
        n = len(mesh.vertices)
        pts = mesh.vertices[rng.choice(n, size=min(self.SAMPLE, n), replace=False)]
        dist, _ = self._tree.query(pts.astype(np.float64))
        return float(np.percentile(dist, 90))


def motion_energy(meshes: Sequence[Mesh]) -> NDArrayF:
    """:meth:`MotionReference.motion` of every frame against the first."""
    ref = MotionReference(meshes[0])
    return np.array([ref.motion(m, t) for t, m in enumerate(meshes)])


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
