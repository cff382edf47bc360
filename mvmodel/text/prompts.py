"""Text prompts per emotion class: a deterministic generated bank, extendable from a user's file.

The paper says only that pseudo-labels come from *generated text prompts*. Which prompts, how many
and how they are built is this project's design: per class, a product of

    descriptor (synonym adjectives and FACS-like visual descriptions)
    × intensity word ("", "slightly", "clearly", "strongly")
    × view word ("", "from the front", "seen from the left", "seen from the right")
    × modality word ("", "in a 3D scan", "in a depth map", "in a rendered image")

in a fixed nested order, 512 prompts per class by default. The FACS descriptions follow the same
EMFACS prototypes as the geometric prior (docs/method.md), e.g. happiness = AU6+12 "raising the
cheeks and narrowing the eyes", "pulling the lip corners up".

Everything here is deterministic: plain tuples and nested loops (never set or dict-of-set iteration
order, never an unseeded random draw), so the same config gives the identical list, and the same
:meth:`PromptBank.fingerprint`, on every machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, field_validator

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
"""The six basic emotions, spelled as the dataset labels elsewhere in the project (mvdata)."""

NEUTRAL = "neutral"

ALL_CLASSES: tuple[str, ...] = (*EMOTIONS, NEUTRAL)
"""Every class a bank may hold. Neutral goes last so that indices 0..5 mean the same emotion
whether or not a dataset has neutral samples."""

INTENSITIES: tuple[str, ...] = ("", "slightly", "clearly", "strongly")
# "slightly neutral" means nothing; neutral gets its own degree words so that every class has the
# same number of prompts (balanced prototypes: no class is averaged over more text than another).
NEUTRAL_INTENSITIES: tuple[str, ...] = ("", "completely", "mostly", "entirely")
VIEWS: tuple[str, ...] = ("", "from the front", "seen from the left", "seen from the right")
MODALITIES: tuple[str, ...] = ("", "in a 3D scan", "in a depth map", "in a rendered image")


@dataclass(frozen=True)
class ClassVocabulary:
    """Words for one class.

    ``adjectives`` fill "a {intensity} {adjective} face"; ``actions`` (FACS-like, gerund phrases
    describing the visible movement) fill "a face {intensity} {action}".
    """

    adjectives: tuple[str, ...]
    actions: tuple[str, ...]


VOCABULARY: Mapping[str, ClassVocabulary] = {
    # AU4+5+7+23: brows lowered and drawn together, upper lids raised, lids tightened, lips pressed.
    "anger": ClassVocabulary(
        adjectives=("angry", "furious", "irritated", "hostile"),
        actions=(
            "frowning with the brows lowered and drawn together",
            "glaring with tightened eyelids",
            "pressing the lips together firmly",
            "staring hard with a tense jaw",
        ),
    ),
    # AU9+10+15: nose wrinkled, upper lip raised, lip corners down, brows lowered.
    "disgust": ClassVocabulary(
        adjectives=("disgusted", "repulsed", "revolted", "nauseated"),
        actions=(
            "wrinkling the nose",
            "raising the upper lip in distaste",
            "pulling the lip corners down under lowered brows",
            "wrinkling the nose and curling the upper lip",
        ),
    ),
    # AU1+2+4+5+20+26: inner brows up and together, eyes wide, lips stretched, jaw a little down.
    "fear": ClassVocabulary(
        adjectives=("fearful", "frightened", "scared", "terrified"),
        actions=(
            "raising the inner brows and drawing them together",
            "opening the eyes wide in alarm",
            "stretching the lips back horizontally",
            "dropping the jaw with tense stretched lips",
        ),
    ),
    # AU6+12: cheeks raised, lip corners pulled up.
    "happiness": ClassVocabulary(
        adjectives=("happy", "joyful", "cheerful", "smiling"),
        actions=(
            "smiling broadly with raised cheeks",
            "pulling the lip corners up",
            "raising the cheeks and narrowing the eyes",
            "grinning with crinkled eyes",
        ),
    ),
    # AU1+4+15: inner brows raised and together, lip corners down.
    "sadness": ClassVocabulary(
        adjectives=("sad", "unhappy", "sorrowful", "gloomy"),
        actions=(
            "raising the inner corners of the brows",
            "pulling the lip corners down",
            "drooping the upper eyelids with a downturned mouth",
            "pushing the chin up with a trembling lower lip",
        ),
    ),
    # AU1+2+5+26: brows up, eyes wide open, jaw dropped.
    "surprise": ClassVocabulary(
        adjectives=("surprised", "astonished", "amazed", "startled"),
        actions=(
            "raising the eyebrows high",
            "opening the eyes wide with raised lids",
            "dropping the jaw open",
            "raising the brows with the mouth hanging open",
        ),
    ),
    "neutral": ClassVocabulary(
        adjectives=("neutral", "expressionless", "calm", "relaxed"),
        actions=(
            "resting with relaxed muscles",
            "showing no emotion",
            "keeping the mouth closed and relaxed",
            "keeping the brows level and the eyes relaxed",
        ),
    ),
}

USER_FILE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json", ".tsv", ".txt")


class PromptConfig(BaseModel):
    """How a :class:`PromptBank` is built.

    Attributes:
        classes: class names in index order (a subset of :data:`ALL_CLASSES`, no repeats); add
            ``"neutral"`` for data that has it.
        max_per_class: cap on the *generated* prompts per class, chosen by a deterministic,
            seeded subsample that keeps the generated order; ``None`` keeps all of them. A user
            file's prompts are never dropped (they were chosen on purpose).
        include_views: add the view words ("from the front", "seen from the left", ...).
        include_modalities: add the modality words ("in a 3D scan", "in a depth map", ...).
        user_file: YAML/JSON ``{class: [prompt, ...]}`` or TSV/text ``class<TAB>prompt`` lines.
        user_mode: ``"append"`` the file's prompts after the generated ones, or ``"replace"`` the
            generated ones entirely (every class must then appear in the file).
        seed: seed of the subsample (only used with ``max_per_class``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] = EMOTIONS
    max_per_class: int | None = None
    include_views: bool = True
    include_modalities: bool = True
    user_file: Path | None = None
    user_mode: Literal["append", "replace"] = "append"
    seed: int = 0

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("classes must not be empty")
        unknown = [c for c in v if c not in ALL_CLASSES]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; known: {list(ALL_CLASSES)}")
        if len(set(v)) != len(v):
            raise ValueError(f"classes repeat: {list(v)}")
        return v

    @field_validator("max_per_class")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"max_per_class must be >= 1 or None, got {v}")
        return v


def _with_article(phrase: str) -> str:
    """``phrase`` with the indefinite article "a" or "an" (by its first letter: enough here)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _join(*parts: str) -> str:
    """Join non-empty parts with single spaces (an empty intensity/view word leaves no gap)."""
    return " ".join(p for p in parts if p)


def _subjects(cls_name: str) -> Iterator[str]:
    """The face descriptions of one class, before view and modality words, in a fixed order."""
    vocab = VOCABULARY[cls_name]
    intensities = NEUTRAL_INTENSITIES if cls_name == NEUTRAL else INTENSITIES
    for adjective in vocab.adjectives:
        for intensity in intensities:
            yield _with_article(_join(intensity, adjective, "face"))
    for action in vocab.actions:
        for intensity in intensities:
            yield _join("a face", intensity, action)


def generate_prompts(
    cls_name: str, *, include_views: bool = True, include_modalities: bool = True
) -> list[str]:
    """All generated prompts of one class, in their fixed order, without duplicates."""
    if cls_name not in VOCABULARY:
        raise ValueError(f"unknown class {cls_name!r}; known: {list(ALL_CLASSES)}")
    views = VIEWS if include_views else ("",)
    modalities = MODALITIES if include_modalities else ("",)
    out: dict[str, None] = {}  # an insertion-ordered set
    for subject in _subjects(cls_name):
        for view in views:
            for modality in modalities:
                out.setdefault(_join(subject, view, modality), None)
    return list(out)


def _subsample(prompts: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` of ``prompts`` chosen by a seeded hash of each prompt, kept in their original order.

    A hash of (seed, text) is the same on every machine and Python version (unlike ``random``'s
    algorithms, which have changed between versions), and a prompt's selection does not depend on
    its neighbours.
    """
    if n >= len(prompts):
        return list(prompts)

    def key(i: int) -> str:
        return hashlib.sha256(f"{seed}\x00{prompts[i]}".encode()).hexdigest()

    keep = sorted(sorted(range(len(prompts)), key=key)[:n])
    return [prompts[i] for i in keep]


def _normalise_prompt(text: str) -> str:
    """Strip and collapse internal whitespace, so "a  happy face" and "a happy face" are one."""
    return re.sub(r"\s+", " ", text).strip()


def load_user_prompts(path: Path, classes: Sequence[str] = ALL_CLASSES) -> dict[str, list[str]]:
    """Read a user's prompt file into ``{class: [prompt, ...]}`` (file order, duplicates dropped).

    Formats (by suffix): ``.yaml``/``.yml``/``.json`` hold a mapping ``{class: [prompt, ...]}``;
    ``.tsv``/``.txt`` hold ``class<TAB>prompt`` lines (blank lines and lines starting with ``#``
    are skipped). Class names are matched case-insensitively against :data:`ALL_CLASSES`; prompts
    for a known class that is not in ``classes`` are skipped (one file can serve 6- and 7-class
    banks).

    Raises:
        ValueError: naming the file (and the line for text files and parse errors) on an unknown
            suffix, a parse error, a wrong structure, an unknown class or an empty prompt.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in USER_FILE_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported prompt file suffix {path.suffix!r}; use one of {USER_FILE_SUFFIXES}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    if suffix in (".tsv", ".txt"):
        pairs = _parse_lines(path, text)
    else:
        pairs = _parse_mapping(path, text, suffix)
    out: dict[str, list[str]] = {}
    for cls_name, prompt, where in pairs:
        if cls_name not in ALL_CLASSES:
            raise ValueError(
                f"{path}{where}: unknown class {cls_name!r}; known: {list(ALL_CLASSES)}"
            )
        if not prompt:
            raise ValueError(f"{path}{where}: empty prompt for class {cls_name!r}")
        if cls_name in classes:
            bucket = out.setdefault(cls_name, [])
            if prompt not in bucket:
                bucket.append(prompt)
    return out


def _parse_lines(path: Path, text: str) -> list[tuple[str, str, str]]:
    """``class<TAB>prompt`` lines → (class, prompt, ", line N") triples."""
    pairs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"{path}, line {lineno}: expected 'class<TAB>prompt', got {line!r}")
        cls_name, prompt = line.split("\t", 1)
        pairs.append((cls_name.strip().lower(), _normalise_prompt(prompt), f", line {lineno}"))
    return pairs


def _parse_mapping(path: Path, text: str, suffix: str) -> list[tuple[str, str, str]]:
    """A YAML/JSON ``{class: [prompt, ...]}`` document → (class, prompt, where) triples."""
    data: Any
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {e.lineno}: invalid JSON: {e.msg}") from e
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}{where}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a mapping {{class: [prompt, ...]}} at the top level, "
            f"got {type(data).__name__}"
        )
    pairs = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: class names must be strings, got {key!r}")
        cls_name = key.strip().lower()
        if cls_name not in ALL_CLASSES:
            # Checked here too so that a class with an empty list is still validated.
            raise ValueError(f"{path}: unknown class {key!r}; known: {list(ALL_CLASSES)}")
        if not isinstance(value, list):
            raise ValueError(
                f"{path}: class {key!r} must map to a list of prompts, got {type(value).__name__}"
            )
        for i, prompt in enumerate(value):
            where = f", class {key!r} item {i}"
            if not isinstance(prompt, str):
                raise ValueError(f"{path}{where}: prompt must be a string, got {prompt!r}")
            pairs.append((cls_name, _normalise_prompt(prompt), where))
    return pairs


@dataclass(frozen=True)
class PromptBank:
    """Prompts per class: ``prompts[k]`` are the prompts of ``classes[k]``."""

    classes: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.prompts):
            raise ValueError(f"{len(self.classes)} classes but {len(self.prompts)} prompt lists")
        for name, ps in zip(self.classes, self.prompts, strict=True):
            if not ps:
                raise ValueError(f"class {name!r} has no prompts")

    @classmethod
    def build(cls, config: PromptConfig | None = None) -> PromptBank:
        """Generate the bank for ``config`` (defaults: 6 emotions, every prompt, no user file)."""
        config = config or PromptConfig()
        generated = {
            c: generate_prompts(
                c,
                include_views=config.include_views,
                include_modalities=config.include_modalities,
            )
            for c in config.classes
        }
        if config.max_per_class is not None:
            generated = {
                c: _subsample(ps, config.max_per_class, config.seed) for c, ps in generated.items()
            }
        if config.user_file is not None:
            user = load_user_prompts(config.user_file, config.classes)
            if config.user_mode == "replace":
                missing = [c for c in config.classes if not user.get(c)]
                if missing:
                    raise ValueError(
                        f"{config.user_file}: user_mode='replace' but no prompts for {missing}"
                    )
                generated = {c: [] for c in config.classes}
            for c, ps in user.items():
                generated[c] = list(dict.fromkeys([*generated[c], *ps]))
            _check_disjoint(generated, config.user_file)
        return cls(
            classes=tuple(config.classes),
            prompts=tuple(tuple(generated[c]) for c in config.classes),
        )

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)

    def counts(self) -> dict[str, int]:
        """Prompts per class name."""
        return {c: len(ps) for c, ps in zip(self.classes, self.prompts, strict=True)}

    def for_class(self, name: str) -> tuple[str, ...]:
        """The prompts of class ``name``."""
        return self.prompts[self.classes.index(name)]

    def flat(self) -> tuple[list[str], np.ndarray]:
        """All prompts class after class, and their class index (int64), aligned."""
        texts = [p for ps in self.prompts for p in ps]
        index = np.repeat(
            np.arange(len(self.prompts), dtype=np.int64), [len(ps) for ps in self.prompts]
        )
        return texts, index

    def fingerprint(self) -> str:
        """sha256 hex of the content (classes and prompts, in order): a cache key."""
        doc = {"classes": list(self.classes), "prompts": [list(ps) for ps in self.prompts]}
        blob = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _check_disjoint(prompts: Mapping[str, Sequence[str]], source: Path) -> None:
    """A prompt listed under two classes would pull both prototypes together: refuse it."""
    owner: dict[str, str] = {}
    for c, ps in prompts.items():
        for p in ps:
            if owner.setdefault(p, c) != c:
                raise ValueError(f"{source}: prompt {p!r} is under both {owner[p]!r} and {c!r}")


def build_prompt_bank(config: PromptConfig | None = None) -> PromptBank:
    """Same as :meth:`PromptBank.build`."""
    return PromptBank.build(config)
