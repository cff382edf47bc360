"""The dataset card (``README.md``) of a shard directory, in the Hugging Face Hub format.

The YAML front matter declares ``configs`` with explicit ``data_files`` (the Hub and
``datasets.load_dataset`` then never guess the layout), the licence (``other`` plus its name and
text for anything that is not a plain SPDX-style id), task categories, tags and size category.

``mvdata build`` writes the card without :class:`HubCard`; ``mvdata publish`` renders the same
card with one (:mod:`mvdata.hub.card`), which adds what only a published copy needs: annotation
creators and source datasets in the metadata, counts per split / expression / intensity, the
contact sheet, and how to load the data from the Hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from mvdata.shards.names import DATA_DIR, MODALITY_EXT
from schemas.models import DatasetMetadata, SizesJson

#: Licence ids the Hub knows, lower-case; any other licence becomes ``other`` + name + text.
HUB_LICENCES = frozenset(
    {
        "apache-2.0",
        "mit",
        "cc0-1.0",
        "cc-by-4.0",
        "cc-by-sa-4.0",
        "cc-by-nc-4.0",
        "cc-by-nc-sa-4.0",
        "cc-by-nc-nd-4.0",
        "bsd-3-clause",
        "odc-by",
        "pddl",
    }
)

_MODALITY_TEXT = {
    "rgb": "RGB render, JPEG",
    "depth": "depth, 16-bit greyscale PNG (value x depth_scale_mm = mm; 0 = background)",
    "normal": "camera-space surface normals, 8-bit RGB PNG ((n + 1) / 2 x 255)",
}


@dataclass
class HubCard:
    """What the card of a dataset published on the Hub adds to the build's card.

    ``counts`` maps a heading (``"split"``, ``"expression"``, ...) to samples per value;
    ``contact_sheet`` is the image's path in the repo; ``licence_name`` replaces the licence id
    derived from the licence text (Hub ``license: other`` datasets name their licence).
    """

    repo_id: str
    revision: str = "main"
    source_datasets: list[str] = field(default_factory=list)
    annotations_creators: list[str] = field(default_factory=list)
    licence_name: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    contact_sheet: str | None = None


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` samples."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def front_matter(
    meta: DatasetMetadata, sizes: SizesJson, hub: HubCard | None = None
) -> dict[str, Any]:
    """The card's YAML metadata as a dict (configs, licence, tags; with ``hub``, also
    ``annotations_creators`` and ``source_datasets``)."""
    splits = sorted({name.rsplit("/", 1)[-1].split("-", 1)[0] for name in sizes.shards}) or [
        meta.split
    ]
    licence = meta.licence.strip().lower()
    fm: dict[str, Any] = {"pretty_name": meta.name}
    if licence in HUB_LICENCES:
        fm["license"] = licence
    else:
        fm["license"] = "other"
        fm["license_name"] = (hub.licence_name if hub else None) or _slug(meta.licence)
    if hub is not None:
        fm["annotations_creators"] = list(hub.annotations_creators)
        fm["source_datasets"] = list(hub.source_datasets)
    fm.update(
        {
            "task_categories": [
                "zero-shot-image-classification",
                "image-classification",
                "image-feature-extraction",
            ],
            "tags": ["facial-expression", "3d", "multiview", "webdataset", meta.source],
            "size_categories": [size_category(meta.num_samples)],
            "configs": [
                {
                    "config_name": "default",
                    "data_files": [
                        {"split": split, "path": f"{DATA_DIR}/{split}-*.tar"} for split in splits
                    ],
                }
            ],
        }
    )
    return fm


def _slug(text: str) -> str:
    """A short licence id from the licence's first clause (up to ':' or '. '), cut at a word."""
    head = re.split(r":|\.\s", text, maxsplit=1)[0]
    out = re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-")
    if len(out) > 64:
        out = out[:64].rsplit("-", 1)[0]
    return out or "custom"


def _hub_overview(hub: HubCard | None) -> str:
    """The published card's counts and contact sheet ("" for the build's card)."""
    if hub is None:
        return ""
    out = ""
    if hub.counts:
        out += "## Counts\n\nWritten samples (failed inputs are not counted).\n\n"
        for heading, counts in hub.counts.items():
            rows = "\n".join(f"| {value} | {n} |" for value, n in counts.items())
            out += f"| {heading} | samples |\n|---|---|\n{rows}\n\n"
    if hub.contact_sheet:
        out += (
            "## Contact sheet\n\n"
            f"![contact sheet]({hub.contact_sheet})\n\n"
            "The first samples: one row a sample (first, middle and last frame of a clip), the "
            "views side by side for each modality (depth as grey levels, near = bright).\n\n"
        )
    return out


def _hub_loading(meta: DatasetMetadata, hub: HubCard | None) -> str:
    """The published card's section on loading from the Hub ("" for the build's card)."""
    if hub is None:
        return ""
    repo, rev = hub.repo_id, hub.revision
    local = repo.split("/")[-1]
    rev_arg = "" if rev == "main" else f", revision={rev!r}"
    rev_opt = "" if rev == "main" else f" --revision {rev}"
    braces = f"{DATA_DIR}/{meta.split}-{{000000..{max(meta.num_shards - 1, 0):06d}}}.tar"
    return f"""### From the Hub

The examples above read a local copy (`mvdata pull`, below). Without one, `datasets` reads the
`configs` declared above:

```python
from datasets import load_dataset
ds = load_dataset("{repo}", split="{meta.split}"{rev_arg})
```

`webdataset` streams the tars over HTTPS (a private repo needs an `Authorization: Bearer` header):

```python
import webdataset as wds
ds = wds.WebDataset("https://huggingface.co/datasets/{repo}/resolve/{rev}/{braces}")
```

This project's loaders stream the shards through fsspec (`hf://`, webdataset backend), or read a
verified local copy (DALI on a GPU):

```python
from mvdata.loaders import make_loader
loader = make_loader("hf://datasets/{repo}{"" if rev == "main" else "@" + rev}", batch_size=32)
```

```bash
mvdata pull {repo} ./{local}{rev_opt}   # download, verify, then make_loader("./{local}", ...)
```

"""


def dataset_card(
    meta: DatasetMetadata,
    sizes: SizesJson,
    *,
    licence_text: str | None = None,
    hub: HubCard | None = None,
) -> str:
    """The full ``README.md``: YAML front matter, then a description of the data and its use.

    ``licence_text`` (the source dataset's terms) is quoted in the card when given; a dataset
    whose licence is not a Hub id always gets a licence section. ``hub`` makes the card of a
    published copy (see :class:`HubCard`); without it the card is the one the build writes.
    """
    fm = yaml.safe_dump(front_matter(meta, sizes, hub), sort_keys=False, allow_unicode=True)
    n_frames, n_views = meta.clip_frames, len(meta.views)
    first = sorted(sizes.shards)[0] if sizes.shards else f"{DATA_DIR}/{meta.split}-000000.tar"
    pattern = f"{DATA_DIR}/{meta.split}-*.tar"
    views = "\n".join(
        f"| {v.index} | {v.yaw:g} | {v.pitch:g} | {v.fov_y:g} | {v.distance:g} |"
        for v in meta.views
    )
    modalities = "\n".join(
        f"- `{m}` (`.{MODALITY_EXT[m]}`): {_MODALITY_TEXT[m]}" for m in meta.modalities
    )
    example_exts = [e for e in meta.member_names if e.startswith("t00.v00.")]
    ext_list = ", ".join(f"`{e}`" for e in ["json", *example_exts])
    dali_exts = ", ".join(repr(e) for e in example_exts)
    dali_outs = ", ".join(e.split(".")[2] for e in example_exts)
    braces = pattern.replace("*", f"{{000000..{max(meta.num_shards - 1, 0):06d}}}")
    folds_origin = (
        f"read from `{meta.folds_from}`"
        if meta.folds_from
        else f"subjects dealt to folds by a shuffle seeded with {meta.seed}"
    )
    licence = (
        f"## Licence\n\n{meta.licence}\n\n"
        + (f"```text\n{licence_text.strip()}\n```\n\n" if licence_text else "")
        + (
            ""
            if meta.publishable
            else "This dataset is derived from a licensed source: do not redistribute it "
            "without the source's permission.\n\n"
        )
    )
    return f"""---
{fm}---

# {meta.name}

Multiview renders of 3D/4D facial-expression scans from **{meta.dataset}** (source reader
`{meta.source}`), made by `mvdata` {meta.generator_version}, schema version
`{meta.schema_version}`, format `{meta.format}`.

- Samples: {meta.num_samples} in {meta.num_shards} shards ({meta.samples_per_shard} per shard);
  {meta.num_failed} planned inputs failed and are listed in the per-shard parquet files.
- Each sample: {n_frames} frame(s) x {n_views} view(s) x {len(meta.modalities)} modalities,
  {meta.image_size} x {meta.image_size} px; clip sampling `{meta.clip_sampling}`.
- Subject-independent folds: {meta.num_folds} (`fold` in the json member and the parquet files),
  {folds_origin}; samples were shuffled globally with seed {meta.seed} before being cut into
  shards.

{_hub_overview(hub)}## Views

| view | yaw (deg) | pitch (deg) | fov_y (deg) | distance |
|---|---|---|---|---|
{views}

## Modalities

{modalities}

## Files

- `data/{{split}}-{{NNNNNN}}.tar`: WebDataset shards (USTAR). Sample key = member name up to the
  first dot; members per sample ({len(meta.member_names)}): {ext_list}, ... that is
  `json` plus `tTT.vVV.<modality ext>` for every frame `TT` and view `VV`.
- `data/*.idx`: DALI webdataset index (v1.2); `data/*.parquet`: one row per planned sample;
  `data/*.stats.json`: per-shard statistics and checksums.
- `manifest.parquet` (the build plan), `sizes.json` (samples per shard), `dataset.json`.

The `json` member holds the key, subject, sequence, fold, source frame indices, every camera
(world-to-camera and projection matrices), the normalisation, landmarks and the source labels.
Source labels (`labels`) are for evaluation only.

## Loading

With `webdataset`:

```python
import webdataset as wds
ds = wds.WebDataset("{braces}")
ds = ds.decode("pil")
```

With DALI (index files make random access and sharding exact):

```python
from nvidia.dali import fn, pipeline_def

@pipeline_def(batch_size=32, num_threads=4, device_id=0)
def pipe():
    # one output per ext, in this order (a single ext gives a single output, not a list)
    {dali_outs} = fn.readers.webdataset(
        paths=["{first}"], index_paths=["{first[:-4]}.idx"],
        ext=[{dali_exts}], missing_component_behavior="error",
    )
    return {dali_outs}
```

With `datasets`:

```python
from datasets import load_dataset
ds = load_dataset("webdataset", data_files={{"{meta.split}": "{pattern}"}}, split="{meta.split}")
```

{_hub_loading(meta, hub)}{licence}"""
