"""Finalize a build: once every shard is committed, write the root files ``manifest.parquet``,
``sizes.json``, ``dataset.json`` and the dataset card ``README.md`` (each atomically).

Refused when a source file changed since the build started (the shards would then come from two
versions of the dataset; :mod:`mvdata.build.state`)."""

from __future__ import annotations

import io

from pydantic import ValidationError

from mvdata import __version__
from mvdata.build.config import STATE_DIR, BuildConfig
from mvdata.build.plan import Plan, make_plan
from mvdata.build.state import check_sources, read_state
from mvdata.io import atomic_write, atomic_write_json
from mvdata.render.cameras import CameraRig
from mvdata.render.gl import DEFAULT_DEPTH_SCALE_MM
from mvdata.shards.card import dataset_card
from mvdata.shards.names import member_names
from mvdata.shards.reader import is_committed, read_stats
from schemas.models import DatasetMetadata, ManifestRow, SizesJson
from schemas.tables import check_frame


def finalize(out: str, plan: Plan | None = None) -> DatasetMetadata:
    """Write the root files once every shard is committed (``mvdata finalize``)."""

    def root_file(name: str) -> str:
        return f"{out.rstrip('/')}/{name}"

    try:
        state = read_state(out)
    except FileNotFoundError:
        raise FileNotFoundError(f"{out}: no {STATE_DIR}/build.json: not an mvdata build") from None
    if plan is None:
        try:
            cfg = BuildConfig.model_validate(state["config"])
        except ValidationError as exc:
            raise ValueError(
                f"{root_file(STATE_DIR + '/build.json')}: its settings do not validate "
                f"({exc.error_count()} errors, first: {exc.errors()[0]['msg']})"
            ) from None
        plan = make_plan(cfg)
    check_sources(out, state, plan, doing="finalize")
    cfg = plan.config
    missing = [n for n in plan.shard_names if not is_committed(out, n)]
    if missing:
        raise ValueError(f"{out}: {len(missing)} shard(s) not built yet: {', '.join(missing[:5])}")
    stats = {n: read_stats(out, n) for n in plan.shard_names}
    check_frame(ManifestRow, plan.manifest, where="manifest")
    buf = plan.manifest.sort("order")
    bio = io.BytesIO()
    buf.write_parquet(bio, statistics=False)
    atomic_write(root_file("manifest.parquet"), bio.getvalue())
    sizes = SizesJson(shards={f"data/{n}.tar": s.num_written for n, s in stats.items()})
    atomic_write_json(root_file("sizes.json"), sizes.model_dump())
    sample_views = CameraRig(cfg.views).cameras()  # the rig the workers rendered with
    meta = DatasetMetadata(
        name=cfg.name or f"{plan.dataset}-multiview",
        source=cfg.source,
        dataset=plan.dataset,
        source_root=cfg.source_root,
        licence=plan.licence,
        publishable=_publishable(plan),
        seed=cfg.seed,
        num_folds=cfg.num_folds,
        folds_from=cfg.folds_provenance(),
        split=cfg.split,
        views=sample_views,
        modalities=list(cfg.modalities),
        image_size=cfg.image_size,
        clip_frames=cfg.frames_per_sample,
        clip_sampling=cfg.clip_sampling,
        jpeg_quality=cfg.jpeg_quality,
        depth_scale_mm=DEFAULT_DEPTH_SCALE_MM,
        member_names=member_names(cfg.frames_per_sample, len(cfg.views), cfg.modalities),
        num_samples=sum(s.num_written for s in stats.values()),
        num_failed=sum(s.num_failed for s in stats.values()),
        num_shards=len(stats),
        samples_per_shard=cfg.samples_per_shard,
        generator_version=__version__,
    )
    atomic_write_json(root_file("dataset.json"), meta.model_dump())
    card = dataset_card(meta, sizes)
    atomic_write(root_file("README.md"), card.encode())
    return meta


def _publishable(plan: Plan) -> bool:
    """Only data free of third-party terms may be published without the user's word: synthetic
    faces from the procedural model. Licensed datasets and SFM-derived faces (non-commercial
    terms) need the user's explicit consent at publish time."""
    return plan.config.source == "synthetic" and all(
        it.meta.extra.get("face_model") == "procedural" for it in plan.items.values()
    )
