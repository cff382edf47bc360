"""The synthetic 3D/4D face source: the embedded default that needs no licensed data.

Identities are drawn from a face model's shape space (the SFM's 63 components, or the procedural
face's few); each identity shows neutral plus the six basic expressions at four intensities, as
in BU-3DFE, and optionally 4D sequences at 25 fps going neutral -> onset -> apex -> offset ->
neutral with jittered timing, as in BU-4DFE. Every expression is varied per identity (its own
scale, a little of the other expressions mixed in, a left/right asymmetry) so that subjects do
not share one displacement field. Everything is a deterministic function of the seed: each
identity draws from its own ``SeedSequence`` child, so adding identities never changes others.

Writing the set to disk is :mod:`mvdata.synth.writer`'s job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationInfo, field_validator, model_validator

from mvdata.core import Mesh, Settings, vertex_normals
from mvdata.sources.conventions.bu3dfe import BU_CODES, ETHNICITIES
from mvdata.synth.facemodel import FaceModel
from mvdata.synth.texture import sample_texture, skin_albedo
from schemas.models import ALL_EXPRESSIONS, EXPRESSIONS

#: BU-3DFE's intensity levels as blendshape weights (before the per-identity scale).
INTENSITY_WEIGHTS = {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
Phase = Literal["neutral", "onset", "apex", "offset", "static"]


class SynthConfig(Settings):
    """What to generate, validated once when made. Defaults: a small static set quick enough for
    a quickstart.

    Each bound sits on its own field, so that a bad value's error names that field (the CLI
    turns the field into its option's name); numbers must be finite (``inf`` noise would
    write NaN meshes, a NaN fps invalid JSON). Checks across fields have no single field and
    say what to change in words."""

    num_identities: int = Field(10, ge=1)
    expressions: tuple[str, ...] = ALL_EXPRESSIONS
    intensities: tuple[int, ...] = (1, 2, 3, 4)
    static: bool = True
    sequences: bool = False
    registered: bool = True
    num_frames: int = Field(50, ge=1)
    fps: float = Field(25.0, gt=0, allow_inf_nan=False)
    #: up to a half turn either way (beyond that the range repeats itself)
    pose_jitter_deg: float = Field(0.0, ge=0, le=180, allow_inf_nan=False)
    #: sigma in mm; 10 mm is already far beyond any scanner (and keeps vertices finite)
    noise_mm: float = Field(0.0, ge=0, le=10, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    texture_size: int = Field(256, ge=16, le=4096)

    @field_validator("expressions")
    @classmethod
    def _known_expressions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in v if e not in ALL_EXPRESSIONS]
        if unknown or not v:
            raise ValueError(
                f"unknown expressions {unknown}: choose from {', '.join(ALL_EXPRESSIONS)}"
            )
        return v

    @field_validator("intensities")
    @classmethod
    def _known_intensities(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [i for i in v if i not in INTENSITY_WEIGHTS]
        if bad or not v:
            raise ValueError(f"intensities must be among 1 2 3 4, got {list(v)}")
        return v

    @field_validator("num_frames")
    @classmethod
    def _enough_frames(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("sequences") and v < 10:
            raise ValueError("sequences need at least 10 frames")
        return v

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        """Something to generate at all."""
        if not (self.static or self.sequences):
            raise ValueError("nothing to generate: enable static scans or sequences")
        if expected_mesh_count(self) == 0:
            raise ValueError(
                "nothing to generate: sequences go from neutral to an expression, so they "
                "need an expression other than neutral (or enable static scans)"
            )
        return self


@dataclass
class SynthMesh:
    """One generated mesh (a static scan or one frame of a sequence) with its labels."""

    subject: str
    identity_index: int
    kind: Literal["static", "sequence"]
    sequence: str
    expression: str
    intensity: int
    frame: int
    num_frames: int
    fps: float | None
    expression_weight: float
    phase: Phase
    registered: bool
    sex: str
    ethnicity: str
    mesh: Mesh
    face_model: str = "procedural"


@dataclass
class _Identity:
    index: int
    subject: str
    sex: str
    ethnicity: str
    shape: NDArray[np.float32]
    texture: NDArray[np.uint8]
    colors: NDArray[np.uint8]
    expr_scale: dict[str, float]
    expr_mix: dict[str, NDArray[np.float64]]
    asymmetry: dict[str, float]
    rng: np.random.Generator = field(repr=False)


def _identity(model: FaceModel, cfg: SynthConfig, index: int) -> _Identity:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(index,)))
    alpha = rng.standard_normal(model.num_components)
    shape = model.shape(alpha)
    uv_by_ibug = {
        k: (float(model.uvs[v, 0]), float(model.uvs[v, 1])) for k, v in model.landmarks.items()
    }
    texture = skin_albedo(uv_by_ibug, rng, cfg.texture_size)
    colors = sample_texture(texture, model.uvs)
    n_expr = len(EXPRESSIONS)
    scale, mix, asym = {}, {}, {}
    for e_idx, e in enumerate(EXPRESSIONS):
        scale[e] = float(rng.uniform(0.75, 1.25))
        m = rng.uniform(0.0, 0.12, n_expr)
        m[e_idx] = 0.0
        mix[e] = m
        asym[e] = float(rng.uniform(-0.15, 0.15))
    return _Identity(
        index=index,
        subject=f"S{index + 1:04d}",
        sex="F" if rng.random() < 0.5 else "M",
        ethnicity=ETHNICITIES[int(rng.integers(len(ETHNICITIES)))],
        shape=shape,
        texture=texture,
        colors=colors,
        expr_scale=scale,
        expr_mix=mix,
        asymmetry=asym,
        rng=rng,
    )


def _expression_offset(
    model: FaceModel, ident: _Identity, expression: str, weight: float
) -> NDArray[np.float32]:
    """This identity's displacement for ``expression`` at ``weight`` (0 = neutral)."""
    if expression == "neutral" or weight == 0.0:
        return np.zeros_like(model.mean)
    e_idx = EXPRESSIONS.index(expression)
    w = np.asarray(ident.expr_mix[expression] * weight, dtype=np.float64)
    w[e_idx] = ident.expr_scale[expression] * weight
    offset = np.tensordot(w.astype(np.float32), model.blendshapes, axes=1)
    # A smooth left/right gradient of the expression's strength (faces are not symmetric).
    side = 1.0 + ident.asymmetry[expression] * np.tanh(model.mean[:, 0:1] / 25.0)
    return (offset * side).astype(np.float32)


def _rotation(yaw: float, pitch: float, roll: float) -> NDArray[np.float32]:
    cy, sy = np.cos(np.radians(yaw)), np.sin(np.radians(yaw))
    cp, sp = np.cos(np.radians(pitch)), np.sin(np.radians(pitch))
    cr, sr = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (ry @ rx @ rz).astype(np.float32)


def _finish_mesh(
    model: FaceModel,
    ident: _Identity,
    verts: NDArray[np.float32],
    rng: np.random.Generator,
    cfg: SynthConfig,
    resample: bool,
) -> Mesh:
    """Pose jitter, landmarks, scanner noise and (scan-like mode) re-sampling of one mesh."""
    if cfg.pose_jitter_deg > 0:
        j = cfg.pose_jitter_deg
        rot = _rotation(*rng.uniform(-j, j, 3))
        centre = verts.mean(axis=0)
        verts = ((verts - centre) @ rot.T + centre).astype(np.float32)
    lm_ids = list(model.landmarks)
    landmarks = verts[[model.landmarks[i] for i in lm_ids]].copy()
    if cfg.noise_mm > 0:
        normals = vertex_normals(verts, model.faces)
        verts = (verts + normals * rng.normal(0, cfg.noise_mm, (len(verts), 1))).astype(np.float32)
    faces, uvs, colors = model.faces, model.uvs, ident.colors
    if resample:
        verts, faces, uvs, colors = _resample(verts, faces, uvs, colors, rng)
    return Mesh(
        vertices=verts,
        faces=faces,
        vertex_colors=colors,
        uvs=uvs,
        uv_faces=faces,
        texture=ident.texture,
        landmarks=landmarks,
        landmark_names=tuple(f"ibug{i}" for i in lm_ids),
    )


def _resample(
    verts: NDArray[np.float32],
    faces: NDArray[np.int32],
    uvs: NDArray[np.float32],
    colors: NDArray[np.uint8],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.float32], NDArray[np.uint8]]:
    """Scan-like frame: slide every vertex to a random point of one of its triangles (on the
    surface) and shuffle the vertex order, so frames share no vertex correspondence."""
    n = len(verts)
    # One incident face per vertex: the last face listing it (vectorised scatter).
    incident = np.empty(n, dtype=np.int64)
    for k in range(3):
        incident[faces[:, k]] = np.arange(len(faces))
    tri = faces[incident]
    bary = rng.dirichlet((6.0, 1.0, 1.0), n)  # mostly the vertex itself, moved towards the others
    own = tri == np.arange(n)[:, None]
    order = np.argsort(~own, axis=1, kind="stable")  # own vertex first
    tri = np.take_along_axis(tri, order, axis=1)
    new_v = np.einsum("nk,nkd->nd", bary, verts[tri]).astype(np.float32)
    new_uv = np.einsum("nk,nkd->nd", bary, uvs[tri]).astype(np.float32)
    perm = rng.permutation(n)
    inverse = np.empty(n, dtype=np.int32)
    inverse[perm] = np.arange(n, dtype=np.int32)
    return new_v[perm], inverse[faces], new_uv[perm], colors[perm]


def sequence_weights(
    num_frames: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], list[Phase]]:
    """Expression weight per frame (0..1) and phase labels: neutral -> onset -> apex -> offset ->
    neutral, with jittered durations; both ends are neutral."""
    fr = np.array(
        [
            rng.uniform(0.08, 0.15),
            rng.uniform(0.15, 0.25),
            rng.uniform(0.2, 0.3),
            rng.uniform(0.15, 0.25),
        ]
    )
    bounds = np.cumsum(np.round(fr * num_frames).astype(int))
    bounds = np.minimum(bounds, num_frames - 2)
    n0, n1, n2, n3 = (int(b) for b in bounds)
    w = np.zeros(num_frames)
    phases: list[Phase] = []
    for t in range(num_frames):
        p: Phase
        if t < n0:
            w[t], p = 0.0, "neutral"
        elif t < n1:
            s = (t - n0 + 1) / (n1 - n0 + 1)  # strictly below the apex weight
            w[t], p = 0.5 - 0.5 * np.cos(np.pi * s), "onset"
        elif t < n2:
            w[t], p = 1.0, "apex"
        elif t < n3:
            s = (t - n2 + 1) / (n3 - n2 + 1)  # strictly above neutral
            w[t], p = 0.5 + 0.5 * np.cos(np.pi * s), "offset"
        else:
            w[t], p = 0.0, "neutral"
        phases.append(p)
    return w, phases


def iter_synth(cfg: SynthConfig, model: FaceModel) -> Iterator[SynthMesh]:
    """Every mesh of the set, deterministically: per subject, static scans (neutral, then each
    expression at each intensity), then sequences frame by frame."""
    for index in range(cfg.num_identities):
        ident = _identity(model, cfg, index)
        make = partial(
            SynthMesh,
            subject=ident.subject,
            identity_index=index,
            sex=ident.sex,
            ethnicity=ident.ethnicity,
            face_model=model.name,
        )

        if cfg.static:
            for expr in cfg.expressions:
                levels = (0,) if expr == "neutral" else cfg.intensities
                for level in levels:
                    weight = 0.0 if level == 0 else INTENSITY_WEIGHTS[level]
                    verts = ident.shape + _expression_offset(model, ident, expr, weight)
                    mesh = _finish_mesh(model, ident, verts, ident.rng, cfg, resample=False)
                    yield make(
                        kind="static",
                        sequence=f"{ident.subject}_{BU_CODES[expr]}{level:02d}",
                        expression=expr,
                        intensity=level,
                        frame=0,
                        num_frames=1,
                        fps=None,
                        expression_weight=weight,
                        phase="static",
                        registered=True,
                        mesh=mesh,
                    )
        if cfg.sequences:
            for expr in cfg.expressions:
                if expr == "neutral":
                    continue
                weights, phases = sequence_weights(cfg.num_frames, ident.rng)
                for t, (w, ph) in enumerate(zip(weights, phases, strict=True)):
                    verts = ident.shape + _expression_offset(model, ident, expr, float(w))
                    mesh = _finish_mesh(
                        model, ident, verts, ident.rng, cfg, resample=not cfg.registered
                    )
                    yield make(
                        kind="sequence",
                        sequence=f"{ident.subject}_{expr}",
                        expression=expr,
                        intensity=4,
                        frame=t,
                        num_frames=cfg.num_frames,
                        fps=cfg.fps,
                        expression_weight=float(w),
                        phase=ph,
                        registered=cfg.registered,
                        mesh=mesh,
                    )


def expected_mesh_count(cfg: SynthConfig) -> int:
    """How many meshes ``cfg`` generates (for progress bars)."""
    non_neutral = [e for e in cfg.expressions if e != "neutral"]
    per_id = 0
    if cfg.static:
        per_id += len(non_neutral) * len(cfg.intensities) + ("neutral" in cfg.expressions)
    if cfg.sequences:
        per_id += len(non_neutral) * cfg.num_frames
    return per_id * cfg.num_identities
