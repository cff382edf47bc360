"""The camera rig: cameras on a sphere around the canonical origin, from (yaw, pitch) pairs.

Positive yaw moves the camera towards +x (it sees more of the subject's left cheek); positive
pitch moves it up. :func:`check_views` is the one rule for a valid view, used by the build's
settings and by the rig alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.models import ViewCamera

#: Frontal, then left and right at 20 degrees yaw, as in the paper.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-20.0, 0.0), (20.0, 0.0))

#: Default vertical field of view (degrees) and camera distance (canonical units): a frontal
#: camera sees about +-117 units around the centre: a cropped face (eye corners ~90 apart,
#: chin ~105 below the centre) with a small margin.
DEFAULT_FOV_Y = 22.0

DEFAULT_DISTANCE = 600.0


#: Views must satisfy |yaw| <= MAX_YAW_DEG (a profile view at 90 degrees is allowed; beyond it the
#: camera looks at the back of the head) and |pitch| < MAX_PITCH_DEG (from higher or lower the face
#: is seen from straight above/below, and the rig's up vector degenerates near 90 degrees).
MAX_YAW_DEG = 90.0
MAX_PITCH_DEG = 60.0


def check_views(views: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """``views`` as a tuple of float (yaw, pitch) pairs; ``ValueError`` naming the first bad one."""
    out = tuple((float(yaw), float(pitch)) for yaw, pitch in views)
    if not out:
        raise ValueError("at least one view is needed")
    for yaw, pitch in out:
        if not (abs(yaw) <= MAX_YAW_DEG and abs(pitch) < MAX_PITCH_DEG):
            raise ValueError(
                f"view ({yaw}, {pitch}) out of range: |yaw| <= {MAX_YAW_DEG:g}, "
                f"|pitch| < {MAX_PITCH_DEG:g}"
            )
    return out


# --------------------------------------------------------------------------- cameras
def look_at(eye: ArrayLike, target: ArrayLike = (0.0, 0.0, 0.0)) -> NDArray[np.float64]:
    """World-to-camera 4x4 (OpenGL: camera looks along -z, +y up) for a camera at ``eye``."""
    e = np.asarray(eye, dtype=np.float64)
    f = np.asarray(target, dtype=np.float64) - e
    f /= np.linalg.norm(f)
    right = np.cross(f, (0.0, 1.0, 0.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = right, up, -f
    m[:3, 3] = -m[:3, :3] @ e
    return m


def perspective(fov_y: float, aspect: float, near: float, far: float) -> NDArray[np.float64]:
    """OpenGL perspective projection 4x4 (row-major, clip space z in [-w, w])."""
    f = 1.0 / math.tan(math.radians(fov_y) / 2)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


@dataclass(frozen=True)
class CameraRig:
    """Cameras on a sphere of radius ``distance`` around the canonical origin, looking at it.

    ``views`` are (yaw, pitch) in degrees: the camera of (yaw, pitch) sits at
    ``distance * (sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``, +y up on screen.
    ``near``/``far`` clip planes are derived from ``distance`` (a face is far smaller).
    """

    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    fov_y: float = DEFAULT_FOV_Y
    distance: float = DEFAULT_DISTANCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", check_views(self.views))
        if not 0 < self.fov_y < 180 or self.distance <= 0:
            raise ValueError("fov_y must be in (0, 180) and distance positive")

    @property
    def near(self) -> float:
        return self.distance * 0.25

    @property
    def far(self) -> float:
        return self.distance * 4.0

    def eye(self, index: int) -> NDArray[np.float64]:
        """Camera position of view ``index`` in canonical units."""
        yaw, pitch = (math.radians(a) for a in self.views[index])
        return self.distance * np.array(
            [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)]
        )

    def world_to_camera(self, index: int) -> NDArray[np.float64]:
        return look_at(self.eye(index))

    def projection(self) -> NDArray[np.float64]:
        return perspective(self.fov_y, 1.0, self.near, self.far)

    def cameras(self) -> list[ViewCamera]:
        """One :class:`ViewCamera` per view, matrices row-major 4x4 lists."""
        proj = self.projection().tolist()
        return [
            ViewCamera(
                index=i,
                yaw=yaw,
                pitch=pitch,
                fov_y=self.fov_y,
                distance=self.distance,
                world_to_camera=self.world_to_camera(i).tolist(),
                projection=proj,
            )
            for i, (yaw, pitch) in enumerate(self.views)
        ]
