"""The dataset card (``README.md``) of a shard directory, in the Hugging Face Hub format.

The YAML front matter declares ``configs`` with explicit ``data_files`` (the Hub and
``datasets.load_dataset`` then never guess the layout), the licence (``other`` plus its name and
text for anything that is not a plain SPDX-style id), task categories, tags and size category.
"""

from __future__ import annotations

import re
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


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` samples."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def front_matter(meta: DatasetMetadata, sizes: SizesJson) -> dict[str, Any]:
    """The card's YAML metadata as a dict (configs, licence, tags)."""
    splits = sorted({name.rsplit("/", 1)[-1].split("-", 1)[0] for name in sizes.shards}) or [
        meta.split
    ]
    licence = meta.licence.strip().lower()
    fm: dict[str, Any] = {"pretty_name": meta.name}
    if licence in HUB_LICENCES:
        fm["license"] = licence
    else:
        fm["license"] = "other"
        fm["license_name"] = _slug(meta.licence)
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


def dataset_card(
    meta: DatasetMetadata, sizes: SizesJson, *, licence_text: str | None = None
) -> str:
    """The full ``README.md``: YAML front matter, then a description of the data and its use.

    ``licence_text`` (the source dataset's terms) is quoted in the card when given; a dataset
    whose licence is not a Hub id always gets a licence section.
    """
    fm = yaml.safe_dump(front_matter(meta, sizes), sort_keys=False, allow_unicode=True)
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
- Subject-independent folds: {meta.num_folds} (`fold` in the json member and the parquet files);
  samples were shuffled globally with seed {meta.seed} before being cut into shards.

## Views

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

{licence}"""
