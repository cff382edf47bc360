"""The common in-memory types every source yields and every later stage consumes, and the
errors that name a file.

A source (``mvdata.sources.*``) scans a dataset root into :class:`Item` objects. An item is a
static scan (one frame) or a sequence of frames; frames are loaded lazily with
:func:`mvdata.sources.registry.load_frame` so that a plan over thousands of sequences stays small and
picklable (items travel to worker processes).

Conventions, fixed here once for all readers and the renderer:

* vertices in millimetres, float32, right-handed, +y up, +z towards the viewer where the dataset
  says so (readers do not re-orient; the renderer normalises from landmarks / bounding box);
* faces are triangles (int32, 0-based); readers fan-triangulate polygons;
* texture coordinates follow OpenGL: origin at the bottom-left of the image, v up. The texture
  image is stored as decoded, row 0 at the top. A reader whose format puts the origin at the top
  converts (v -> 1 - v) so the renderer never has to know the dataset;
* ``uvs`` are indexed by ``uv_faces`` (one UV triple per triangle corner), because VRML and OBJ
  index texture coordinates separately from positions; a per-vertex UV set has
  ``uv_faces is faces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

Float32Array = NDArray[np.float32]
Int32Array = NDArray[np.int32]
UInt8Array = NDArray[np.uint8]


class InvalidMesh(ValueError):
    """:meth:`Mesh.validate` found inconsistent arrays; ``kind`` is ``"nan"`` (NaN/inf values)
    or ``"parse"`` (shapes and indices), the error kinds readers report."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(eq=False)
class Mesh:
    """One triangle mesh (a scan or one frame of a sequence).

    Attributes:
        vertices: ``(N, 3)`` float32, millimetres.
        faces: ``(F, 3)`` int32 vertex indices.
        vertex_colors: ``(N, 3)`` uint8 RGB, or None.
        uvs: ``(M, 2)`` float32 texture coordinates (OpenGL origin, bottom-left), or None.
        uv_faces: ``(F, 3)`` int32 indices into ``uvs`` per triangle corner, or None.
        texture: ``(H, W, 3)`` uint8 RGB image, row 0 at the top, or None.
        landmarks: ``(L, 3)`` float32 landmark positions in the mesh frame, or None.
        landmark_names: one name per landmark row (e.g. ``"ibug37"``), or empty.
    """

    vertices: Float32Array
    faces: Int32Array
    vertex_colors: UInt8Array | None = None
    uvs: Float32Array | None = None
    uv_faces: Int32Array | None = None
    texture: UInt8Array | None = None
    landmarks: Float32Array | None = None
    landmark_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (N, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {self.faces.shape}")
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.uint8)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
            if self.uv_faces is None:
                self.uv_faces = self.faces
            self.uv_faces = np.ascontiguousarray(self.uv_faces, dtype=np.int32)
        if self.landmarks is not None:
            self.landmarks = np.ascontiguousarray(self.landmarks, dtype=np.float32)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def validate(self) -> None:
        """Raise :class:`InvalidMesh` when the arrays are inconsistent or hold NaN/inf."""
        n = self.num_vertices
        if n == 0 or self.num_faces == 0:
            raise InvalidMesh("parse", "empty mesh (no vertices or no faces)")
        if not np.isfinite(self.vertices).all():
            raise InvalidMesh("nan", "vertices contain NaN or inf")
        if self.faces.min() < 0 or self.faces.max() >= n:
            raise InvalidMesh("parse", f"face index out of range [0, {n})")
        if self.vertex_colors is not None and self.vertex_colors.shape != (n, 3):
            raise InvalidMesh(
                "parse", f"vertex_colors must be ({n}, 3), got {self.vertex_colors.shape}"
            )
        if self.uvs is not None:
            assert self.uv_faces is not None
            if self.uv_faces.shape != self.faces.shape:
                raise InvalidMesh("parse", "uv_faces must have the shape of faces")
            if (
                len(self.uvs) == 0
                or self.uv_faces.min() < 0
                or self.uv_faces.max() >= len(self.uvs)
            ):
                raise InvalidMesh("parse", "uv index out of range")
            if not np.isfinite(self.uvs).all():
                raise InvalidMesh("nan", "texture coordinates contain NaN or inf")
        if self.landmarks is not None:
            if self.landmarks.ndim != 2 or self.landmarks.shape[1] != 3:
                raise InvalidMesh("parse", f"landmarks must be (L, 3), got {self.landmarks.shape}")
            if self.landmark_names and len(self.landmark_names) != len(self.landmarks):
                raise InvalidMesh("parse", "landmark_names and landmarks differ in length")


def vertex_normals(vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> NDArray[np.float32]:
    """Per-vertex normals: the area-weighted sum of the adjacent faces' normals, unit length.

    One function for the renderer's shading and the synthetic source's noise along normals.
    Hand-written (a few numpy lines) rather than trimesh's ``vertex_normals``: trimesh's
    angle-weighted version took 22 ms for 10k and 74 ms for 35k vertices here, more than drawing
    all views; this takes ~1 ms. Vertices of degenerate faces only keep a zero normal (the shader
    then faces them to the camera).
    """
    v = vertices.astype(np.float64)
    tri = v[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    n = len(vertices)
    flat = faces.ravel()
    acc = np.stack(
        [np.bincount(flat, weights=np.repeat(face_n[:, k], 3), minlength=n) for k in range(3)],
        axis=1,
    )
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    out = np.divide(acc, length, out=np.zeros_like(acc), where=length > 1e-20)
    return np.ascontiguousarray(out, dtype=np.float32)


class Settings(BaseModel):
    """Base of every stage's settings (synthetic source, build, loaders): a frozen pydantic
    model, validated once when it is made (unknown fields are errors); a bad value raises
    ``pydantic.ValidationError`` (a ``ValueError``) naming the field."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def differing_settings(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two JSON dumps of settings (a key missing on one
    side differs), sorted: what a refused resume names."""
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


ItemKind = Literal["static", "sequence"]


@dataclass(frozen=True)
class ItemMeta:
    """What a reader knows about an item without loading its geometry.

    Labels (``expression``, ``intensity``, ``action_units``) come from file names or label files
    where the dataset defines them. They are kept for evaluation only and never reach training.
    """

    dataset: str
    subject: str
    sequence: str
    expression: str | None = None
    intensity: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """A static scan (``num_frames == 1``) or a sequence of frames, loaded lazily.

    ``frame_paths[t]`` lists the files frame ``t`` is read from (geometry first, then texture /
    landmarks), relative to ``root``. ``key`` is the deterministic sample key stem: ASCII letters,
    digits, ``_`` and ``-`` only (no dots: WebDataset splits member names at the first dot).
    """

    source: str
    root: str
    key: str
    kind: ItemKind
    meta: ItemMeta
    frame_paths: tuple[tuple[str, ...], ...]
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    @property
    def source_paths(self) -> tuple[str, ...]:
        """Every file this item reads, in frame order, without repeats."""
        seen: dict[str, None] = {}
        for paths in self.frame_paths:
            for p in paths:
                seen.setdefault(p, None)
        return tuple(seen)


@dataclass(frozen=True)
class ReadError:
    """A file (or item) a reader could not use: counted and reported, never fatal to a scan."""

    path: str
    kind: str  # short machine-readable category, e.g. "truncated", "bad-magic", "nan", "name"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}"


class MeshReadError(Exception):
    """Raised by a format parser; the message names the file and what is wrong with it."""

    def __init__(self, path: str, kind: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.kind = kind
        self.message = message

    def as_read_error(self) -> ReadError:
        return ReadError(self.path, self.kind, self.message)


class SampleError(Exception):
    """One sample (of a build, or of a loader's epoch) that cannot be made or used: counted and
    skipped, never fatal to the job. ``kind`` is its error category (a shard parquet's
    ``error_kind``); the message names the file or the shard and key."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
