"""Shared fixtures: where the face model lives, small synthetic sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MVDATA_FACE_MODEL_DIR", str(REPO.parent / "shared" / "facemodels" / "sfm"))
# Tests never touch the network or a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def sfm_dir() -> Path | None:
    """The SFM directory when its files are present (CI points at ../shared), else None."""
    d = Path(os.environ["MVDATA_FACE_MODEL_DIR"])
    return d if (d / "sfm_shape_3448.bin").is_file() else None


@pytest.fixture(scope="session")
def sfm_model():
    from mvdata.synth.facemodel import load_sfm

    d = sfm_dir()
    if d is None:
        pytest.skip("Surrey Face Model files not available (set MVDATA_FACE_MODEL_DIR)")
    return load_sfm(d)


@pytest.fixture(scope="session")
def procedural_model():
    from mvdata.synth.facemodel import procedural_face

    return procedural_face()


@pytest.fixture(params=["sfm", "procedural"])
def any_model(request):
    """Each face model in turn (the SFM case skips where its files are absent)."""
    return request.getfixturevalue(f"{request.param}_model")
