"""The text side of MultiviewVLM: prompts, a frozen text encoder, class prototypes.

What the paper (arXiv 2505.09336) says: pseudo-labels derived from *generated text prompts* guide
an implicit alignment of emotional semantics in a *joint embedding space* shared with the
multiview image embeddings; image→text and text→image terms align the two.

What is this project's design (docs/method.md), not the paper's words:

* :mod:`~mvmodel.text.prompts`: the prompt bank, a fixed product of synonyms and FACS-like
  descriptions (the same EMFACS action units as the geometric prior) × intensity words × view and
  modality words, 512 prompts per class by default; deterministic, fingerprinted, extendable from
  a user's YAML/JSON/TSV file (e.g. prompts written by a language model).
* :mod:`~mvmodel.text.encoders`: a frozen sentence encoder, all-MiniLM-L6-v2 (384-d) by default,
  loaded offline from a PyPI package; an open_clip text tower as an option.
* :mod:`~mvmodel.text.prototypes`: every prompt encoded once and cached on disk; a trainable
  projection into the joint space; ``c[k]`` = normalised mean of class k's normalised projected
  prompt embeddings.
"""

from __future__ import annotations

from mvmodel.text.encoders import (
    MiniLMEncoder,
    OpenClipTextEncoder,
    TextEncoder,
    l2_normalise,
    make_text_encoder,
)
from mvmodel.text.prompts import (
    ALL_CLASSES,
    EMOTIONS,
    NEUTRAL,
    PromptBank,
    PromptConfig,
    build_prompt_bank,
    generate_prompts,
    load_user_prompts,
)
from mvmodel.text.prototypes import (
    PromptEmbeddings,
    TextProjection,
    cache_path,
    class_prototypes_numpy,
    prompt_embeddings,
    zero_shot_prototypes,
)

__all__ = [
    "ALL_CLASSES",
    "EMOTIONS",
    "NEUTRAL",
    "MiniLMEncoder",
    "OpenClipTextEncoder",
    "PromptBank",
    "PromptConfig",
    "PromptEmbeddings",
    "TextEncoder",
    "TextProjection",
    "build_prompt_bank",
    "cache_path",
    "class_prototypes_numpy",
    "generate_prompts",
    "l2_normalise",
    "load_user_prompts",
    "make_text_encoder",
    "prompt_embeddings",
    "zero_shot_prototypes",
]
