"""A build's own state, ``OUT/.mvdata/build.json``: the settings, their digest, the schema version
and the fingerprint of the source files (:mod:`mvdata.build.sources`).

The digest covers the settings only (:meth:`BuildConfig.digest`), as it always did, so outputs
built before the fingerprint existed keep resuming; such a ``build.json`` gains its fingerprint
on the next run.
"""

from __future__ import annotations

import json
from typing import Any

from mvdata.build.config import STATE_DIR, BuildConfig
from mvdata.build.plan import Plan
from mvdata.build.sources import changed_files, describe_changes, fingerprint
from mvdata.io import atomic_write_json
from mvdata.shards.reader import filesystem, open_regular
from schemas import SCHEMA_VERSION


class SourcesChangedError(ValueError):
    """Source files changed since the build started: its shards would mix two datasets."""


def state_path(out: str) -> str:
    """Where ``build.json`` of ``out`` lives (a path or URL like ``out``)."""
    return f"{out.rstrip('/')}/{STATE_DIR}/build.json"


def read_state(out: str) -> dict[str, Any]:
    """``build.json`` of ``out`` (``FileNotFoundError`` when absent; a ``ValueError`` naming the
    file when it is not a regular file, not JSON, or lacks the settings)."""
    fs, root = filesystem(out)
    path = f"{root}/{STATE_DIR}/build.json"
    with open_regular(fs, path) as f:
        data = f.read()
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{state_path(out)}: not valid JSON ({exc}); the build's state is lost: "
            "rerun with --mode overwrite"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"{state_path(out)}: holds no build settings; rerun with --mode overwrite")
    return doc


def write_state(out: str, cfg: BuildConfig, plan: Plan) -> None:
    """Write ``build.json`` for a build of ``cfg`` whose plan is ``plan``."""
    atomic_write_json(
        state_path(out),
        {
            "config": cfg.model_dump(),
            "config_digest": cfg.digest(),
            "schema_version": SCHEMA_VERSION,
            "sources": fingerprint(plan.items.values()),
        },
    )


def check_sources(out: str, state: dict[str, Any], plan: Plan, *, doing: str) -> None:
    """Raise :class:`SourcesChangedError` naming the files when the source files of ``plan``
    differ from the fingerprint in ``state`` (``doing``: what is refused, for the message)."""
    recorded = state.get("sources")
    if not isinstance(recorded, dict):
        return  # a build.json from before fingerprints: nothing to compare with
    changed = changed_files(recorded, fingerprint(plan.items.values()))
    if changed:
        raise SourcesChangedError(
            f"{out}: refusing to {doing}: {describe_changes(changed)} (under "
            f"{plan.config.source_root}) since this build started ({state_path(out)}); its "
            "shards would mix two versions of the dataset. Rebuild with --mode overwrite"
        )
