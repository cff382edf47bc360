"""The vision side of MultiviewVLM.

From the paper (arXiv 2505.09336, as far as its abstract and figure tell): a shared image backbone
over the views of a face, and a joint image-text embedding space in which the views of a sample
and its emotion's text prompts are aligned (``z``, ``f`` here; cosine similarity with the text
prototypes).

This project's design, within those words: the input channels (RGB, plus scale-free depth and
camera-space normals, which give a randomly initialised backbone the face's geometry), the
projection heads, and the view/frame fusion transformer with learned view and frame embeddings
that turns a sample's ``T·V`` views into one embedding ``f``.

Modules: :mod:`.backbone` (timm backbone, weight loading, :class:`InputAdapter`), :mod:`.fusion`
(:class:`ViewFrameFusion`), :mod:`.model` (:class:`MultiviewVLM`, :class:`VisionConfig`,
:func:`flops_per_sample`).
"""

from __future__ import annotations

from mvmodel.vision.backbone import (
    CHANNELS,
    DEFAULT_CPU_BACKBONE,
    DEFAULT_CPU_IMAGE_SIZE,
    DEFAULT_GPU_BACKBONE,
    DEFAULT_GPU_IMAGE_SIZE,
    DEPTH_SCALE_MM,
    Channels,
    InputAdapter,
    LoadReport,
    adapt_input_conv_weight,
    load_local_weights,
    load_state_dict_adapted,
    make_backbone,
    standardise_depth,
)
from mvmodel.vision.fusion import ViewFrameFusion
from mvmodel.vision.model import (
    MultiviewVLM,
    ProjectionHead,
    VisionConfig,
    VisionOutput,
    example_input,
    flops_per_sample,
)

__all__ = [
    "CHANNELS",
    "DEFAULT_CPU_BACKBONE",
    "DEFAULT_CPU_IMAGE_SIZE",
    "DEFAULT_GPU_BACKBONE",
    "DEFAULT_GPU_IMAGE_SIZE",
    "DEPTH_SCALE_MM",
    "Channels",
    "InputAdapter",
    "LoadReport",
    "MultiviewVLM",
    "ProjectionHead",
    "ViewFrameFusion",
    "VisionConfig",
    "VisionOutput",
    "adapt_input_conv_weight",
    "example_input",
    "flops_per_sample",
    "load_local_weights",
    "load_state_dict_adapted",
    "make_backbone",
    "standardise_depth",
]
