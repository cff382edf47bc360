"""The card of a published dataset: the build's card (:func:`mvdata.shards.card.dataset_card`)
with a :class:`~mvdata.shards.card.HubCard` — counts per split / expression / intensity from
the per-shard parquet files, the contact sheet, the source datasets, who made the labels, the
face model's terms for SFM-made synthetic data, and how to load the data from the Hub.
"""

from __future__ import annotations

from collections import Counter

from mvdata.shards.card import HubCard, dataset_card
from mvdata.shards.names import parse_shard_name
from mvdata.shards.reader import list_shards, read_shard_rows, sizes_json
from mvdata.synth.facemodel import SFM_TERMS
from schemas.models import DatasetMetadata

#: Where the contact sheet goes in the repo (outside ``data/``, so no loader ever reads it).
CONTACT_SHEET = "assets/contact_sheet.png"

#: Display names of the licensed datasets the readers know, for ``source_datasets``.
SOURCE_NAMES = {
    "bu3dfe": "BU-3DFE",
    "bu4dfe": "BU-4DFE",
    "bosphorus": "Bosphorus",
    "bp4d": "BP4D-Spontaneous",
    "coma": "CoMA",
    "facescape": "FaceScape",
}

#: What the card of procedural-face synthetic data says about the face model.
PROCEDURAL_NOTE = (
    "Every face in this dataset comes from mvdata's built-in procedural face model: it holds "
    "no Surrey Face Model data."
)

#: ``license_name`` of synthetic data made with the Surrey Face Model.
SFM_LICENCE_NAME = "surrey-face-model-non-commercial"


def licence_terms(meta: DatasetMetadata) -> tuple[str | None, str | None]:
    """``(license_name, terms text)`` the card adds to the dataset's own licence (Nones where
    it adds nothing).

    A synthetic dataset that is not publishable was made (at least partly) with the Surrey Face
    Model: ``mvdata.build.finalize`` marks synthetic data publishable only when every item came
    from the procedural face, and the SFM is the only other face model. Its non-commercial terms
    then go into the card.
    """
    if meta.source == "synthetic" and not meta.publishable:
        return SFM_LICENCE_NAME, SFM_TERMS
    if meta.source == "synthetic":
        return None, PROCEDURAL_NOTE
    return None, None


def sample_counts(out_dir: str) -> dict[str, dict[str, int]]:
    """Written samples per split, expression and intensity, from the per-shard parquet files."""
    splits: Counter[str] = Counter()
    expressions: Counter[str] = Counter()
    intensities: Counter[str] = Counter()
    for name in list_shards(out_dir):
        split = parse_shard_name(name)[0]
        for row in read_shard_rows(out_dir, name):
            if row.status != "ok":
                continue
            splits[split] += 1
            expressions[row.expression or "-"] += 1
            intensities["-" if row.intensity is None else str(row.intensity)] += 1
    return {
        "split": dict(sorted(splits.items())),
        "expression": dict(sorted(expressions.items())),
        "intensity": dict(sorted(intensities.items())),
    }


def hub_card(
    out_dir: str,
    meta: DatasetMetadata,
    repo_id: str,
    *,
    revision: str = "main",
    contact_sheet: bool = True,
) -> str:
    """The ``README.md`` that ``mvdata publish`` uploads for the dataset in ``out_dir``."""
    licence_name, terms = licence_terms(meta)
    synthetic = meta.source == "synthetic"
    hub = HubCard(
        repo_id=repo_id,
        revision=revision,
        source_datasets=(
            ["original"]
            if synthetic
            else [f"extended|{SOURCE_NAMES.get(meta.dataset, meta.dataset)}"]
        ),
        # Synthetic labels are the generator's parameters; a real dataset's labels are its own
        # (file names, folders). The model's pseudo-labels are made at training time, not here.
        annotations_creators=["machine-generated"] if synthetic else ["found"],
        licence_name=licence_name,
        counts=sample_counts(out_dir),
        contact_sheet=CONTACT_SHEET if contact_sheet else None,
    )
    return dataset_card(meta, sizes_json(out_dir), licence_text=terms, hub=hub)
