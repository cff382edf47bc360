"""Face models behind the synthetic source: the Surrey Face Model (SFM) or a built-in procedural face.

The SFM files are free for non-commercial use only and are never part of this repository: they
are looked up in a directory given by an option, then ``$MVDATA_FACE_MODEL_DIR``, then the user
cache (filled by :func:`download_sfm` after printing the terms). Without them, the synthetic
source falls back to :func:`procedural_face`, a crude analytic face with the same expressions,
so that the quickstart and the tests still run; the output records which model made it.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mvdata.io import atomic_write
from schemas.models import EXPRESSIONS

SFM_TERMS = (
    "The Surrey Face Model (sfm_shape_3448.bin) is free for use for NON-COMMERCIAL purposes only "
    "(commercial use and other resolutions: cvssp.org/facemodel). The expression blendshapes are "
    "treated under the same terms. Source: github.com/patrikhuber/eos, folder share/ (eos code: "
    "Apache-2.0). The files are downloaded to your cache and are never redistributed by mvdata."
)

#: Files of the SFM release the synthetic source needs, with their sha256 (from eos, 2025-02-02).
SFM_FILES: dict[str, str | None] = {
    "sfm_shape_3448.bin": "43750338ae533e7fb981e924b6f67ebde3d292f15ec4fc886ae5af14308ad980",
    "expression_blendshapes_3448.bin": (
        "a77c81712fc5e8b08a1be4cd2824d51514e5bde6578109ae5240dfb3489efd43"
    ),
    "ibug_to_sfm.txt": None,  # a text file: checked by parsing instead
}
SFM_UPSTREAM = "https://raw.githubusercontent.com/patrikhuber/eos/master/share"
ENV_DIR = "MVDATA_FACE_MODEL_DIR"
ENV_URL = "MVDATA_FACE_MODEL_URL"


class FaceModelError(ValueError):
    """Model files that exist but cannot be used (corrupt, wrong size, unreadable)."""


@dataclass(frozen=True)
class FaceModel:
    """A linear face model: ``mean + basis @ alpha + sum_e w_e * blendshapes[e]``.

    ``uvs`` are per-vertex texture coordinates with the OpenGL origin (bottom-left).
    ``landmarks`` maps ibug 68-point ids (1-based) to vertex indices.
    """

    name: str
    mean: NDArray[np.float32]  # (N, 3) mm
    basis: NDArray[np.float32]  # (N*3, K), rescaled so alpha ~ N(0, 1)
    faces: NDArray[np.int32]  # (F, 3)
    uvs: NDArray[np.float32]  # (N, 2)
    blendshapes: NDArray[np.float32]  # (6, N, 3), order EXPRESSIONS
    landmarks: dict[int, int]
    sha256: str | None

    @property
    def num_components(self) -> int:
        return int(self.basis.shape[1])

    def shape(self, alpha: NDArray[np.float64]) -> NDArray[np.float32]:
        """Identity shape for coefficients ``alpha`` (length <= K), as (N, 3)."""
        k = len(alpha)
        offs = self.basis[:, :k] @ alpha.astype(np.float32)
        return (self.mean.reshape(-1) + offs).reshape(-1, 3).astype(np.float32)


def cache_dir() -> Path:
    """The user cache directory the downloader fills."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mvdata" / "facemodels" / "sfm"


def candidate_dirs(explicit: Path | None) -> list[Path]:
    """Where SFM files are looked for, in order."""
    dirs: list[Path] = []
    if explicit is not None:
        dirs.append(Path(explicit))
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.environ[ENV_DIR]))
    dirs.append(cache_dir())
    return dirs


def find_sfm_dir(explicit: Path | None = None) -> Path | None:
    """The first candidate directory holding the SFM shape file, or None."""
    for d in candidate_dirs(explicit):
        if (d / "sfm_shape_3448.bin").is_file():
            return d
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_ibug_mapping(text: str, *, where: str) -> dict[int, int]:
    """Parse eos's ``ibug_to_sfm.txt`` (TOML ``[landmark_mappings]`` lines ``ibug = vertex``)."""
    mapping: dict[int, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\d+)\s*=\s*(\d+)", line)
        if m:
            mapping[int(m.group(1))] = int(m.group(2))
    if not mapping:
        raise FaceModelError(f"{where}: no landmark mappings found")
    return mapping


def load_sfm(directory: Path) -> FaceModel:
    """Load the SFM shape model and blendshapes with eos-py, checking sizes and checksums."""
    import eos  # eos-py: the upstream loader of these binary files

    shape_path = directory / "sfm_shape_3448.bin"
    bs_path = directory / "expression_blendshapes_3448.bin"
    map_path = directory / "ibug_to_sfm.txt"
    for path in (shape_path, bs_path, map_path):
        if not path.is_file():
            raise FaceModelError(f"{path}: missing (run `mvdata face-model download`)")
    for path in (shape_path, bs_path):
        want = SFM_FILES[path.name]
        got = _sha256(path)
        if want is not None and got != want:
            raise FaceModelError(
                f"{path}: checksum {got[:12]}... differs from the release ({want[:12]}...): "
                "corrupt or a different file; delete it and run `mvdata face-model download`"
            )
    try:
        model = eos.morphablemodel.load_model(str(shape_path))
        blendshapes = eos.morphablemodel.load_blendshapes(str(bs_path))
    except RuntimeError as exc:  # eos raises RuntimeError on unreadable files
        raise FaceModelError(f"{directory}: eos could not load the model: {exc}") from exc
    sm = model.get_shape_model()
    mean = np.asarray(sm.get_mean(), dtype=np.float32).reshape(-1, 3)
    basis = np.asarray(sm.get_rescaled_pca_basis(), dtype=np.float32)
    faces = np.asarray(sm.get_triangle_list(), dtype=np.int32)
    uv = np.asarray(model.get_texture_coordinates(), dtype=np.float32)
    uv_gl = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)  # SFM origin is top-left
    by_name = {
        b.name: np.asarray(b.deformation, dtype=np.float32).reshape(-1, 3) for b in blendshapes
    }
    missing = [e for e in EXPRESSIONS if e not in by_name]
    if missing:
        raise FaceModelError(f"{bs_path}: blendshapes missing: {missing}")
    bs = np.stack([by_name[e] for e in EXPRESSIONS])
    mapping = parse_ibug_mapping(map_path.read_text(encoding="utf-8"), where=str(map_path))
    n = len(mean)
    mapping = {k: v for k, v in mapping.items() if v < n}
    return FaceModel(
        name="sfm_shape_3448",
        mean=mean,
        basis=basis,
        faces=faces,
        uvs=uv_gl,
        blendshapes=bs,
        landmarks=dict(sorted(mapping.items())),
        sha256=SFM_FILES["sfm_shape_3448.bin"],
    )


def download_sfm(
    target: Path | None = None,
    *,
    base_url: str | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Download the SFM files from the upstream eos repository into ``target`` (the cache).

    Prints the terms first. Each file is verified (sha256 where known) and moved into place
    atomically, so an interrupted download never leaves a file that looks complete.
    """
    target = Path(target) if target is not None else cache_dir()
    url = (base_url or os.environ.get(ENV_URL) or SFM_UPSTREAM).rstrip("/")
    echo(SFM_TERMS)
    target.mkdir(parents=True, exist_ok=True)
    for name, sha in SFM_FILES.items():
        dest = target / name
        if dest.is_file() and (sha is None or _sha256(dest) == sha):
            continue
        with urllib.request.urlopen(f"{url}/{name}", timeout=60) as resp:  # noqa: S310
            data = resp.read()
        if sha is not None and hashlib.sha256(data).hexdigest() != sha:
            raise FaceModelError(f"{url}/{name}: downloaded file fails its checksum")
        atomic_write(dest, data)
        echo(f"downloaded {name} ({len(data)} bytes) -> {dest}")
    return target


# --------------------------------------------------------------------------- procedural face
# Landmark positions (x, y) in mm on the procedural face for the ibug ids the SFM also defines.
def _procedural_landmark_xy() -> dict[int, tuple[float, float]]:
    pts: dict[int, tuple[float, float]] = {9: (0.0, -88.0)}
    for i, x in enumerate(np.linspace(-52, -14, 5)):  # right brow 18-22 (subject's right = -x)
        pts[18 + i] = (float(x), 38.0 + 6.0 * np.sin(np.pi * i / 4))
    for i, x in enumerate(np.linspace(14, 52, 5)):  # left brow 23-27
        pts[23 + i] = (float(x), 38.0 + 6.0 * np.sin(np.pi * i / 4))
    for i, y in enumerate(np.linspace(28, -2, 4)):  # nose bridge 28-31
        pts[28 + i] = (0.0, float(y))
    for i, x in enumerate(np.linspace(-14, 14, 5)):  # nostrils 32-36
        pts[32 + i] = (float(x), -14.0 + abs(float(x)) * 0.2)
    for side, cx in ((37, -32.0), (43, 32.0)):  # eyes 37-42, 43-48: a ring of six points
        for j in range(6):
            a = np.pi - j * np.pi / 3
            pts[side + j] = (cx + 13.0 * np.cos(a), 22.0 + 5.0 * np.sin(a))
    for j in range(12):  # outer lips 49-60
        a = np.pi - j * 2 * np.pi / 12
        pts[49 + j] = (26.0 * np.cos(a), -46.0 + 9.0 * np.sin(a))
    for j, x in zip((62, 63, 64), (-10.0, 0.0, 10.0), strict=True):  # inner upper lip
        pts[j] = (x, -44.0)
    for j, x in zip((66, 67, 68), (10.0, 0.0, -10.0), strict=True):  # inner lower lip
        pts[j] = (x, -49.0)
    return pts


def _bump(
    x: NDArray[np.float64], y: NDArray[np.float64], cx: float, cy: float, r: float
) -> NDArray[np.float64]:
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))


#: Outline of the procedural face (mm): half-width at the temples, how much narrower the jaw
#: is (fraction of the width lost at the chin), top of the forehead and bottom of the chin.
PROCEDURAL_HALF_WIDTH = 72.0
PROCEDURAL_JAW_TAPER = 0.22
PROCEDURAL_TOP = 92.0
PROCEDURAL_BOTTOM = -98.0

#: Depth of the head's curvature (mm): the sides lie about this far behind the face's front;
#: the forehead and chin curve back less (the profile factor shrinks the vertical radius term).
PROCEDURAL_DEPTH = 80.0
PROCEDURAL_PROFILE = 0.7


def _disc_grid(rows: int, cols: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A ``rows x cols`` grid mapped from the square [-1, 1]^2 onto the unit disc, row-major.

    Fong's elliptical grid mapping (``x sqrt(1 - y^2/2)``, ``y sqrt(1 - x^2/2)``): smooth inside,
    orientation-preserving, and the square's whole border lands on the circle, so the mesh
    boundary is a smooth oval with no corners sticking out (the old square patch's corners
    showed above the forehead like ears).
    """
    gs, gt = np.meshgrid(np.linspace(-1.0, 1.0, cols), np.linspace(-1.0, 1.0, rows))
    s, t = gs.ravel(), gt.ravel()
    return s * np.sqrt(1.0 - t * t / 2.0), t * np.sqrt(1.0 - s * s / 2.0)


def procedural_face(rows: int = 64, cols: int = 52) -> FaceModel:
    """A crude analytic face: an egg-shaped surface (oval outline, rounded forehead and cheeks)
    with brows, eyes, nose, cheekbones, mouth and chin, plus analytic identity components and
    six expression displacement fields with the same landmark ids as the SFM mapping. Written
    here because no library ships a freely redistributable face.

    The mesh is a ``rows x cols`` grid mapped onto a disc (:func:`_disc_grid`) and then onto the
    outline (:data:`PROCEDURAL_HALF_WIDTH` ...): forehead at the top, a narrower jaw at the
    bottom. Depth falls off like an ellipsoid towards the outline (:data:`PROCEDURAL_DEPTH`).
    """
    dx, dy = _disc_grid(rows, cols)
    below = np.clip(-dy, 0.0, 1.0)
    x = PROCEDURAL_HALF_WIDTH * dx * (1.0 - PROCEDURAL_JAW_TAPER * below**2)
    y = np.where(dy > 0, PROCEDURAL_TOP * dy, -PROCEDURAL_BOTTOM * dy)
    # ellipsoidal fall-off: flat-ish in the middle, rounded forehead and cheeks, steep (not
    # vertical) at the outline; gentler from top to bottom than across, as a face's profile
    vy = PROCEDURAL_PROFILE * dy
    z = PROCEDURAL_DEPTH * (np.sqrt(1.0 - 0.93 * (dx * dx + vy * vy)) - 1.0)
    bridge = np.exp(-(x**2) / (2 * 6.0**2)) * np.clip((32.0 - y) / 34.0, 0, 1)
    bridge *= np.clip((y + 8.0) / 6.0, 0, 1)
    # nose: a broad body (alae to bridge), a rounder tip on it, and the bridge up to the brows
    body = np.exp(-(x**2) / (2 * 10.0**2) - (y - 4.0) ** 2 / (2 * 12.0**2))
    z += 13.0 * _bump(x, y, 0.0, -2.0, 8.0) + 10.0 * body + 7.0 * bridge
    z -= 6.0 * (_bump(x, y, -32.0, 22.0, 9.0) + _bump(x, y, 32.0, 22.0, 9.0))  # eye sockets
    z += 4.0 * (_bump(x, y, -32.0, 38.0, 10.0) + _bump(x, y, 32.0, 38.0, 10.0))  # brow ridge
    z += 5.0 * (_bump(x, y, -42.0, -4.0, 15.0) + _bump(x, y, 42.0, -4.0, 15.0))  # cheekbones
    z += 4.0 * _bump(x, y, 0.0, -46.0, 10.0)  # lips
    z += 5.0 * _bump(x, y, 0.0, -82.0, 12.0)  # chin
    mean = np.stack([x, y, z], axis=1).astype(np.float32)

    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b = r * cols + c, r * cols + c + 1
            d, e = (r + 1) * cols + c, (r + 1) * cols + c + 1
            faces += [(a, b, e), (a, e, d)]  # counter-clockwise seen from +z
    uvs = np.stack([(x + 75.0) / 150.0, (y + 100.0) / 194.0], axis=1).astype(np.float32)

    # Identity components: width, height, nose size, jaw width, face depth, eye spacing.
    jaw_w = np.clip((-40.0 - y) / 20.0, 0.0, 1.0)  # smooth: a step made a crease at y = -40
    comps = [
        np.stack([x * 0.08, 0 * y, 0 * z], 1),
        np.stack([0 * x, y * 0.06, 0 * z], 1),
        np.stack([0 * x, 0 * y, 6.0 * _bump(x, y, 0.0, -2.0, 9.0)], 1),
        np.stack([x * 0.1 * jaw_w, 0 * y, 0 * z], 1),
        np.stack([0 * x, 0 * y, z * 0.08], 1),
        np.stack([np.sign(x) * 3.0 * _bump(np.abs(x), y, 32.0, 22.0, 14.0), 0 * y, 0 * z], 1),
    ]
    basis = np.stack([c.ravel() for c in comps], axis=1).astype(np.float32)

    lm_xy = _procedural_landmark_xy()
    landmarks = {k: int(np.argmin((x - px) ** 2 + (y - py) ** 2)) for k, (px, py) in lm_xy.items()}

    def field(
        dx: NDArray[np.float64], dy: NDArray[np.float64], dz: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        return np.stack([dx, dy, dz], 1).astype(np.float32)

    zero = np.zeros_like(x)
    mouth_l, mouth_r = _bump(x, y, -26.0, -46.0, 9.0), _bump(x, y, 26.0, -46.0, 9.0)
    brows = _bump(x, y, -32.0, 40.0, 12.0) + _bump(x, y, 32.0, 40.0, 12.0)
    inner_brows = _bump(x, y, -14.0, 38.0, 8.0) + _bump(x, y, 14.0, 38.0, 8.0)
    jaw = np.clip((-47.0 - y) / 10.0, 0.0, 1.0) * np.exp(-((x / 45.0) ** 2))
    upper_lip = _bump(x, y, 0.0, -40.0, 9.0)
    blend = {
        "anger": field(-np.sign(x) * 2.5 * inner_brows, -4.0 * brows, zero),
        "disgust": field(zero, 4.0 * upper_lip + 3.0 * _bump(x, y, 0.0, -10.0, 12.0), zero),
        "fear": field(-8.0 * mouth_l + 8.0 * mouth_r, 3.0 * inner_brows, zero),
        "happiness": field(-12.0 * mouth_l + 12.0 * mouth_r, 8.0 * (mouth_l + mouth_r), zero),
        "sadness": field(zero, 2.5 * inner_brows - 4.0 * (mouth_l + mouth_r), zero),
        "surprise": field(zero, -22.0 * jaw + 5.0 * brows, -4.0 * jaw),
    }
    bs = np.stack([blend[e] for e in EXPRESSIONS])
    return FaceModel(
        name="procedural",
        mean=mean,
        basis=basis,
        faces=np.asarray(faces, dtype=np.int32),
        uvs=uvs,
        blendshapes=bs,
        landmarks=dict(sorted(landmarks.items())),
        sha256=None,
    )


def resolve_face_model(
    choice: str, directory: Path | None, *, echo: Callable[[str], None]
) -> FaceModel:
    """The face model for ``choice`` in ``auto|sfm|procedural``.

    ``auto`` uses the SFM when its files are found and falls back, with one message saying how to
    get them, to the procedural face. Files that are found but corrupt are an error in every mode.
    """
    if choice not in ("auto", "sfm", "procedural"):
        raise ValueError(f"unknown face model {choice!r}: use auto, sfm or procedural")
    if choice == "procedural":
        return procedural_face()
    found = find_sfm_dir(directory)
    if found is None:
        where = ", ".join(str(d) for d in candidate_dirs(directory))
        msg = (
            f"Surrey Face Model files not found (looked in: {where}). Get them with "
            f"`mvdata face-model download` (non-commercial terms) or set {ENV_DIR}."
        )
        if choice == "sfm":
            raise FileNotFoundError(msg)
        echo(msg + " Using the built-in procedural face instead.")
        return procedural_face()
    return load_sfm(found)
