"""The project's versioned contracts, as pydantic models: the one source of truth.

``python -m schemas.export`` writes one JSON Schema file per model next to this module; a test
fails when those files and these models disagree. Every writer validates what it writes against
these models (``model_validate`` for JSON, :func:`schemas.tables.check_frame` for parquet), and
every reader checks ``schema_version`` before using data.

Bump ``SCHEMA_VERSION`` (major) whenever a change breaks an existing reader; minor for an
additive field that this version still reads when absent. History: 1.1 (2026-12-05) adds
``SampleJson.reference_frame``/``reference_landmarks`` (a 4D clip's label-free reference).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.1"

Modality = Literal["rgb", "depth", "normal"]
#: Every modality a build can render, in the renderer's output order (spelled once, above).
MODALITIES: tuple[Modality, ...] = get_args(Modality)
#: The six basic emotions, the expression vocabulary every reader maps its dataset's codes to
#: (labels are kept for evaluation only) and the model's prompt classes; and with neutral.
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
ALL_EXPRESSIONS: tuple[str, ...] = ("neutral", *EXPRESSIONS)
ItemKindLit = Literal["static", "sequence"]
SampleStatus = Literal["ok", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Labels(_Strict):
    """Source labels, parsed from names/label files. Evaluation only: never used in training."""

    expression: str | None = None
    intensity: int | None = None
    extra: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- synthetic source
class SynthRow(_Strict):
    """One row of a synthetic set's ``metadata.parquet``: one mesh file (a scan or a frame)."""

    schema_version: str = SCHEMA_VERSION
    subject: str = Field(description="Subject id, e.g. S0001")
    identity_index: int = Field(ge=0)
    kind: ItemKindLit
    sequence: str = Field(description="Sequence id; for static scans the scan id")
    expression: str = Field(description="neutral|anger|disgust|fear|happiness|sadness|surprise")
    intensity: int = Field(ge=0, le=4, description="0 for neutral, 1-4 as in BU-3DFE")
    frame: int = Field(ge=0, description="Frame index in the sequence; 0 for static scans")
    num_frames: int = Field(ge=1)
    fps: float | None = Field(default=None, description="Frames per second of sequences")
    expression_weight: float = Field(
        description="Weight of the expression at this frame (0 neutral .. ~1.3 apex)"
    )
    phase: Literal["neutral", "onset", "apex", "offset", "static"]
    mesh_path: str = Field(description="Mesh file, relative to the set's root")
    texture_path: str | None = Field(default=None, description="Albedo texture, relative")
    face_model: str = Field(description="'sfm_shape_3448' or 'procedural'")
    registered: bool = Field(description="True when frames share one topology and vertex order")
    num_vertices: int = Field(ge=1)
    landmark_names: list[str]
    landmarks: list[list[float]] = Field(description="(L, 3) landmark positions, mm")


class SynthMetadata(_Strict):
    """``synth.json`` at the root of a synthetic set."""

    schema_version: str = SCHEMA_VERSION
    generator: str = "mvdata.synth"
    generator_version: str
    face_model: str
    face_model_sha256: str | None
    seed: int
    num_identities: int
    expressions: list[str]
    intensities: list[int]
    static: bool
    sequences: bool
    registered_sequences: bool
    fps: float
    pose_jitter_deg: float
    noise_mm: float
    mesh_format: Literal["ply", "obj"]
    num_meshes: int
    licence: str


# --------------------------------------------------------------------------- shards
class ViewCamera(_Strict):
    """One camera of the rig. Angles in degrees; matrices row-major 4x4."""

    index: int = Field(ge=0)
    yaw: float
    pitch: float
    fov_y: float = Field(gt=0, lt=180, description="Vertical field of view, degrees")
    distance: float = Field(gt=0, description="Camera distance in normalised units")
    world_to_camera: list[list[float]]
    projection: list[list[float]]


class Normalisation(_Strict):
    """How the face was brought to the canonical frame before rendering: x' = (x - centre) * scale."""

    method: Literal["landmarks", "bbox"]
    centre: list[float]
    scale: float
    rotation: list[list[float]]


class SampleJson(_Strict):
    """The ``json`` member of every shard sample."""

    schema_version: str = SCHEMA_VERSION
    key: str
    dataset: str
    source: str
    subject: str
    sequence: str
    kind: ItemKindLit
    fold: int = Field(ge=0)
    frames: list[int] = Field(description="Source frame index of each clip frame t")
    num_views: int = Field(ge=1)
    modalities: list[Modality]
    image_size: int = Field(ge=8)
    views: list[ViewCamera]
    normalisation: list[Normalisation] = Field(description="One per clip frame")
    landmarks: list[list[list[float]]] | None = Field(
        default=None, description="[T][L][3] normalised landmarks, or None"
    )
    landmark_names: list[str] = Field(default_factory=list)
    reference_frame: int | None = Field(
        default=None,
        ge=0,
        description="Sequences: source index of the frame carried as the label-free reference "
        "(the sequence's first frame, which a motion-sampled clip does not hold); None otherwise",
    )
    reference_landmarks: list[list[float]] | None = Field(
        default=None,
        description="[L][3] landmarks of reference_frame, in the clip's normalisation and "
        "landmark_names order; None when the sequence has no landmarks (added in 1.1)",
    )
    depth_scale_mm: float = Field(
        description="Depth PNG value * depth_scale_mm = metric depth in mm; 0 = background"
    )
    labels: Labels = Field(description="Evaluation only: never used in training")
    source_paths: list[str]


class ManifestRow(_Strict):
    """One row of ``manifest.parquet``: the whole build plan, one row per planned sample."""

    key: str
    source: str
    dataset: str
    subject: str
    sequence: str
    kind: ItemKindLit
    num_source_frames: int = Field(ge=1)
    expression: str | None
    intensity: int | None
    fold: int = Field(ge=0)
    split: str
    shard: int = Field(ge=0)
    shard_name: str
    index_in_shard: int = Field(ge=0)
    order: int = Field(ge=0, description="Position after the global seeded shuffle")


class ShardRow(_Strict):
    """One row of a per-shard parquet: a planned sample, written or failed with its reason."""

    key: str
    shard_name: str
    status: SampleStatus
    error_kind: str | None
    error_message: str | None
    subject: str
    sequence: str
    fold: int = Field(ge=0)
    expression: str | None
    intensity: int | None
    num_frames: int = Field(ge=0)
    offset: int | None = Field(description="Byte offset of the sample's first member header")
    num_bytes: int | None = Field(description="Bytes of the sample's members, headers included")


class ShardStats(_Strict):
    """``{shard}.stats.json``: written last, by temp file + rename; its presence commits a shard."""

    schema_version: str = SCHEMA_VERSION
    shard_name: str
    num_planned: int = Field(ge=0)
    num_written: int = Field(ge=0)
    num_failed: int = Field(ge=0)
    errors: dict[str, int] = Field(description="Count per error kind")
    tar_bytes: int = Field(ge=0)
    tar_sha256: str
    index_sha256: str
    parquet_sha256: str
    seconds: dict[str, float] = Field(description="Time per stage: read, render, encode, write")


class DatasetMetadata(_Strict):
    """``dataset.json`` at the root of a shard directory."""

    schema_version: str = SCHEMA_VERSION
    format: Literal["mvdata-webdataset"] = "mvdata-webdataset"
    name: str
    source: str
    dataset: str
    source_root: str
    licence: str
    publishable: bool = Field(description="May be published without the user's explicit consent")
    seed: int
    num_folds: int = Field(ge=2)
    folds_from: str | None = Field(
        default=None,
        description="Where the subject -> fold map came from when it was given "
        "(`mvdata build --folds-from`): the file's name and a digest of its subject -> fold "
        "pairs; null where folds came from the shuffle seeded by `seed`",
    )
    split: str
    views: list[ViewCamera]
    modalities: list[Modality]
    image_size: int
    clip_frames: int = Field(ge=1)
    clip_sampling: Literal["uniform", "motion"]
    jpeg_quality: int
    depth_scale_mm: float
    member_names: list[str] = Field(description="The member extensions every sample carries")
    num_samples: int
    num_failed: int
    num_shards: int
    samples_per_shard: int
    generator_version: str


class SizesJson(_Strict):
    """``sizes.json``: samples per shard file, as webdataset-style tools expect."""

    shards: dict[str, int]


# --------------------------------------------------------------------------- embeddings
class EmbeddingRow(_Strict):
    """One row of the LanceDB embeddings table (``mvmodel embed``): one shard sample.

    The table's schema is generated from this model (``mvmodel.store.table.lance_model``, with
    ``vector`` and ``view_vectors`` as fixed-size float32 vectors of the model's width); a test
    checks that the two agree field by field. One table holds the rows of ONE checkpoint.
    """

    schema_version: str = SCHEMA_VERSION
    key: str = Field(description="Sample key, unique in the table (the merge key)")
    vector: list[float] = Field(
        description="Fused embedding f [D] of every view and frame, unit length (cosine)"
    )
    view_vectors: list[list[float]] | None = Field(
        default=None, description="Per-view embeddings z [T*V][D] (embed --per-view), else null"
    )
    dataset: str
    source: str
    subject: str
    sequence: str
    kind: ItemKindLit
    frames: list[int] = Field(description="Source frame index of each clip frame t")
    fold: int = Field(ge=0, description="Subject-independent fold of the build")
    expression: str | None = Field(description="Source label: evaluation only")
    intensity: int | None = Field(description="Source label: evaluation only")
    pseudo_label: str = Field(
        description="The model's zero-shot class (argmax over the prompt prototypes); no label"
    )
    pseudo_confidence: float = Field(ge=0, le=1, description="Its softmax probability")
    zero_shot_label: str | None = Field(
        default=None, description="Written back by mvmodel classify (null until then)"
    )
    zero_shot_confidence: float | None = Field(default=None, ge=0, le=1)
    model_id: str = Field(description="Config hash of the training run")
    checkpoint_sha256: str = Field(description="sha256 of the weights file that embedded it")
    checkpoint_step: int = Field(ge=0)
    shard_dir: str = Field(description="The shard directory (path or URL) the sample is in")
    shard: str = Field(description="Shard name, e.g. train-000003 (data/{shard}.tar)")
    members: list[str] = Field(description="The sample's member names in its tar")


#: Every contract with its JSON Schema file name, in one place for export and the agreement test.
CONTRACTS: dict[str, type[BaseModel]] = {
    "synth_row": SynthRow,
    "synth_metadata": SynthMetadata,
    "sample_json": SampleJson,
    "manifest_row": ManifestRow,
    "shard_row": ShardRow,
    "shard_stats": ShardStats,
    "dataset_metadata": DatasetMetadata,
    "sizes": SizesJson,
    "embedding_row": EmbeddingRow,
}
