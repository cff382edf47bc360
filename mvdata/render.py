"""Headless multiview rendering of face meshes: normalisation, camera rig, renderer.

Pipeline for one mesh (one scan, or one frame of a sequence):

1. :func:`normalise` finds the similarity transform that brings the face into the *canonical
   frame*: ``x' = scale * R @ (x - centre)``. The canonical frame is right-handed, +y up, the face
   looking along +z (towards a frontal camera), +x towards the subject's left. One canonical unit
   is about one millimetre of an average adult face: the outer eye-corner distance maps to
   :data:`CANONICAL_EYE_DISTANCE` units, so views are comparable across datasets whatever the
   scan's size or pose.
2. :class:`CameraRig` places cameras on a sphere of radius ``distance`` around the canonical
   origin, looking at it, from (yaw, pitch) pairs in degrees. Positive yaw moves the camera
   towards +x (it sees more of the subject's left cheek); positive pitch moves it up.
3. :class:`Renderer` uploads the normalised mesh ONCE and draws every view of the rig from it,
   changing only uniforms; all views go into one tall framebuffer that is read back once.

Outputs (``V`` views, ``H = W = image_size``, row 0 at the top of each image):

* ``"rgb"``: uint8 ``[V, H, W, 3]``; the texture where the mesh has one and UVs, else vertex
  colours, else a neutral grey; Lambert + ambient lighting from a light fixed at the camera
  (directional, along the viewing axis); black background.
* ``"depth"``: uint16 ``[V, H, W]``; metric depth along the camera axis in millimetres *of the
  input mesh* (canonical depth divided by the normalisation scale), quantised so that
  ``value * depth_scale_mm = mm``; 0 is background; values beyond the uint16 range saturate.
* ``"normal"``: uint8 ``[V, H, W, 3]``; camera-space unit normals (x right, y up, z towards the
  camera) mapped from [-1, 1] to [0, 255]; background 0. Normals are turned to face the camera,
  because scans often carry inconsistent triangle winding.

GL and processes: the renderer owns a headless EGL context (Mesa llvmpipe on CPU machines,
the NVIDIA EGL driver on GPU machines; same code). A process must never fork after it has
opened a GL context: the child hangs in the driver. Build pools with the ``"spawn"`` start
method, or open no context in the parent, and let EACH worker create its own
:class:`Renderer` (a renderer cannot be pickled). A renderer created in a forked child of a
process that had opened a context raises :class:`RuntimeError` instead of hanging.

Determinism: anti-aliasing is off and all arithmetic is fixed, so the same mesh and rig give
byte-identical images on the same machine and driver.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import moderngl
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mvdata.mesh import Mesh
from schemas.models import Modality, Normalisation, ViewCamera

#: Frontal, then left and right at 20 degrees yaw, as in the paper.
DEFAULT_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-20.0, 0.0), (20.0, 0.0))
#: Every modality the renderer can produce, in the order of its outputs.
ALL_MODALITIES: tuple[Modality, ...] = ("rgb", "depth", "normal")
#: Outer eye-corner (ibug 37 to 46) distance in canonical units (~mm of an average adult face).
CANONICAL_EYE_DISTANCE = 90.0
#: Inner eye-corner (ibug 40 to 43) distance in canonical units, used when outer corners are missing.
CANONICAL_INNER_EYE_DISTANCE = 32.0
#: RMS distance of landmarks to their mean in canonical units; a rough fallback scale when no
#: pair of eye corners is present (a full ibug-68 set on an average face is about this spread).
CANONICAL_LANDMARK_SPREAD = 45.0
#: Largest bounding-box extent of a mesh without landmarks, in canonical units (a face crop).
CANONICAL_BBOX_EXTENT = 220.0
#: Default vertical field of view (degrees) and camera distance (canonical units): a frontal
#: camera sees about +-117 units around the centre: a cropped face (eye corners ~90 apart,
#: chin ~105 below the centre) with a small margin.
DEFAULT_FOV_Y = 22.0
DEFAULT_DISTANCE = 600.0
#: Default depth quantisation: 0.05 mm per uint16 step (0 .. ~3.3 m).
DEFAULT_DEPTH_SCALE_MM = 0.05
#: Albedo of meshes with neither texture nor vertex colours.
NEUTRAL_GREY = (180, 180, 180)
#: Lighting: ambient + diffuse * max(n . l, 0), light along the camera axis; sums to 1 so a
#: surface facing the camera shows its albedo unchanged.
AMBIENT = 0.3
DIFFUSE = 0.7

# pid of the process that opened a GL context in this interpreter; a forked child inherits it.
_GL_OPENED_IN_PID: int | None = None


# --------------------------------------------------------------------------- normalisation
def _landmark_lookup(mesh: Mesh) -> dict[int, NDArray[np.float64]]:
    """ibug index (1-based) -> position, for the mesh's landmarks named ``ibugNN``."""
    out: dict[int, NDArray[np.float64]] = {}
    if mesh.landmarks is None or not mesh.landmark_names:
        return out
    for name, pos in zip(mesh.landmark_names, mesh.landmarks, strict=True):
        if name.startswith("ibug") and name[4:].isdigit() and np.isfinite(pos).all():
            out[int(name[4:])] = pos.astype(np.float64)
    return out


def _mean_of(lm: dict[int, NDArray[np.float64]], ids: Iterable[int]) -> NDArray[np.float64] | None:
    pts = [lm[i] for i in ids if i in lm]
    return np.mean(pts, axis=0) if pts else None


#: Backward tilt (degrees) of the line from the nose reference up to the eye midpoint, in a
#: frontal face, per nose landmark: subnasale 34 is preferred (rigid, little protrusion), the nose
#: tip 31 is the fallback. Measured on the Surrey Face Model's synthetic identities (mean over 8
#: identities x 7 expressions; per-identity spread ~3.5 degrees): adding it back makes a frontal
#: face look along +z instead of up into the camera.
NOSE_TILT_DEG = {34: 21.7, 31: 47.3}


def _upright_rotation(lm: dict[int, NDArray[np.float64]]) -> NDArray[np.float64] | None:
    """Rotation whose rows are the face's right, up and forward axes, or None if undetermined.

    x: from the subject's right eye (ibug 37/40) to the left eye (43/46); y: from the nose
    (subnasale 34, else tip 31) to the eye midpoint, made orthogonal to x and tilted forward by
    :data:`NOSE_TILT_DEG`; z = x cross y (out of the face). Needs both eyes and a nose point.
    The mouth is NOT used, although it would fix "up" more directly: it moves with the
    expression (eye-to-mouth "up" varied 12.7 vs 5.2 degrees between a neutral and a happy
    scan of one identity), and the head pose must not depend on the expression.
    """
    right_eye = _mean_of(lm, (37, 40))
    left_eye = _mean_of(lm, (43, 46))
    nose_id = next((i for i in (34, 31) if i in lm), None)
    if right_eye is None or left_eye is None or nose_id is None:
        return None
    x = left_eye - right_eye
    y = (right_eye + left_eye) / 2 - lm[nose_id]
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        return None
    x = x / nx
    y = y - x * float(x @ y)
    ny = np.linalg.norm(y)
    if ny < 1e-9:
        return None
    y = y / ny
    z = np.cross(x, y)
    tilt = math.radians(NOSE_TILT_DEG[nose_id])
    y, z = math.cos(tilt) * y + math.sin(tilt) * z, math.cos(tilt) * z - math.sin(tilt) * y
    rot: NDArray[np.float64] = np.stack([x, y, z])
    return rot


def normalise(mesh: Mesh) -> Normalisation:
    """The similarity transform ``x' = scale * R @ (x - centre)`` into the canonical frame.

    With ibug landmarks (names ``"ibugNN"``, any subset): the centre is the mean of the eye
    corners (37, 40, 43, 46) and the nose tip (31) that are present (all landmarks if none of
    those are); the scale maps the outer eye-corner distance to
    :data:`CANONICAL_EYE_DISTANCE` (inner corners or the landmark spread as fallbacks); the
    rotation levels the eye line and turns the face to +z (see :func:`_upright_rotation`),
    identity when the eyes or the nose are missing. Without usable landmarks the mesh's
    bounding box gives centre and scale (largest extent -> :data:`CANONICAL_BBOX_EXTENT`) and the
    rotation is the identity (``method="bbox"``).
    """
    lm = _landmark_lookup(mesh)
    scale: float | None = None
    centre: NDArray[np.float64] | None = None
    if lm:
        centre = _mean_of(lm, (37, 40, 43, 46, 31))
        if centre is None:
            centre = np.mean(list(lm.values()), axis=0)
        if 37 in lm and 46 in lm and np.linalg.norm(lm[46] - lm[37]) > 1e-9:
            scale = CANONICAL_EYE_DISTANCE / float(np.linalg.norm(lm[46] - lm[37]))
        elif 40 in lm and 43 in lm and np.linalg.norm(lm[43] - lm[40]) > 1e-9:
            scale = CANONICAL_INNER_EYE_DISTANCE / float(np.linalg.norm(lm[43] - lm[40]))
        elif len(lm) >= 3:
            pts = np.stack(list(lm.values()))
            spread = float(np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean()))
            if spread > 1e-9:
                scale = CANONICAL_LANDMARK_SPREAD / spread
    if scale is not None and centre is not None:
        rot = _upright_rotation(lm)
        return Normalisation(
            method="landmarks",
            centre=[float(c) for c in centre],
            scale=scale,
            rotation=(np.eye(3) if rot is None else rot).tolist(),
        )
    verts = mesh.vertices.astype(np.float64)
    if len(verts) == 0:
        raise ValueError("cannot normalise an empty mesh")
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    extent = float((hi - lo).max())
    return Normalisation(
        method="bbox",
        centre=[float(c) for c in (lo + hi) / 2],
        scale=CANONICAL_BBOX_EXTENT / extent if extent > 1e-9 else 1.0,
        rotation=np.eye(3).tolist(),
    )


def apply_normalisation(points: NDArray[Any], norm: Normalisation) -> NDArray[np.float64]:
    """Map ``(N, 3)`` points (mesh frame, mm) into the canonical frame of ``norm``."""
    rot = np.asarray(norm.rotation, dtype=np.float64)
    centre = np.asarray(norm.centre, dtype=np.float64)
    out: NDArray[np.float64] = norm.scale * (np.asarray(points, np.float64) - centre) @ rot.T
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
        object.__setattr__(self, "views", tuple((float(y), float(p)) for y, p in self.views))
        if not self.views:
            raise ValueError("a camera rig needs at least one view")
        if any(abs(p) >= 89.0 for _, p in self.views):
            raise ValueError("pitch must lie within (-89, 89) degrees")
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


# --------------------------------------------------------------------------- renderer
_VERTEX_SHADER = """
#version 330
uniform mat4 u_mvp;
uniform mat4 u_view;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_pos_cam;
out vec3 v_normal_cam;
out vec3 v_color;
out vec2 v_uv;
void main() {
    gl_Position = u_mvp * vec4(in_pos, 1.0);
    v_pos_cam = (u_view * vec4(in_pos, 1.0)).xyz;
    v_normal_cam = mat3(u_view) * in_normal;  // the view matrix is a rotation + translation
    v_color = in_color;
    v_uv = in_uv;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_tex;
uniform bool u_use_tex;
uniform float u_inv_scale;
uniform float u_ambient;
uniform float u_diffuse;
in vec3 v_pos_cam;
in vec3 v_normal_cam;
in vec3 v_color;
in vec2 v_uv;
%(outputs)s
void main() {
    vec3 to_cam = -v_pos_cam;
    vec3 n = v_normal_cam;
    // degenerate normal (zero-area faces only): face the camera
    n = dot(n, n) > 1e-20 ? normalize(n) : normalize(to_cam);
    // scans often have inconsistent winding: a visible surface faces the camera
    if (dot(n, to_cam) < 0.0) n = -n;
    %(body)s
}
"""

_OUTPUT_DECL = {
    "rgb": "layout(location=%d) out vec4 out_rgb;",
    "depth": "layout(location=%d) out float out_depth;",
    "normal": "layout(location=%d) out vec4 out_normal;",
}
_OUTPUT_BODY = {
    "rgb": (
        "vec3 albedo = u_use_tex ? texture(u_tex, v_uv).rgb : v_color;\n"
        "    float shade = u_ambient + u_diffuse * max(n.z, 0.0);\n"
        "    out_rgb = vec4(albedo * shade, 1.0);"
    ),
    # metric depth along the camera axis, in mm of the input mesh
    "depth": "out_depth = -v_pos_cam.z * u_inv_scale;",
    "normal": "out_normal = vec4(n * 0.5 + 0.5, 1.0);",
}


def _vertex_normals(vertices: NDArray[np.float32], faces: NDArray[np.int32]) -> NDArray[np.float32]:
    """Per-vertex normals: the area-weighted sum of the adjacent faces' normals, unit length.

    Hand-written (a few numpy lines) rather than trimesh's ``vertex_normals``: trimesh's
    angle-weighted version took 22 ms for 10k and 74 ms for 35k vertices here, more than drawing
    all views; this takes ~1 ms. Vertices of degenerate faces only keep a zero normal (the shader
    then faces them to the camera).
    """
    v = vertices.astype(np.float64)
    tri = v[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    n = len(vertices)
    flat = faces.ravel()
    acc = np.stack(
        [np.bincount(flat, weights=np.repeat(face_n[:, k], 3), minlength=n) for k in range(3)],
        axis=1,
    )
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    out = np.divide(acc, length, out=np.zeros_like(acc), where=length > 1e-20)
    return np.ascontiguousarray(out, dtype=np.float32)


class MeshBuffers:
    """GL resources of one uploaded mesh: vertex buffer, index buffer, vertex array, texture.

    Made by :meth:`Renderer.upload`; a context manager that releases them.
    """

    def __init__(
        self,
        ctx: moderngl.Context,
        vbo: moderngl.Buffer,
        ibo: moderngl.Buffer,
        vao: moderngl.VertexArray,
        texture: moderngl.Texture | None,
        inv_scale: float,
    ) -> None:
        self.ctx = ctx
        self.vbo, self.ibo, self.vao, self.texture = vbo, ibo, vao, texture
        self.inv_scale = inv_scale
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        with self.ctx:  # another renderer's context may be current in this thread
            for res in (self.vao, self.ibo, self.vbo, self.texture):
                if res is not None:
                    res.release()
        self._released = True

    def __enter__(self) -> MeshBuffers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _open_context() -> moderngl.Context:
    global _GL_OPENED_IN_PID
    pid = os.getpid()
    if _GL_OPENED_IN_PID is not None and pid != _GL_OPENED_IN_PID:
        raise RuntimeError(
            "this process was forked from one that had opened a GL context, which hangs the "
            "driver: start workers with the 'spawn' method or open no context in the parent"
        )
    # moderngl's stub types the keyword wrongly; backend="egl" is its documented headless path
    ctx = moderngl.create_standalone_context(backend="egl")  # type: ignore[arg-type]
    _GL_OPENED_IN_PID = pid
    return ctx


class Renderer:
    """Headless multiview renderer: one EGL context, one framebuffer holding every view.

    Create one per process (workers create their own; see the module docstring) and reuse it
    for many meshes. ``render(mesh)`` = :meth:`upload` + :meth:`draw` + :meth:`read`; the three
    steps are public so benchmarks can time them apart.
    """

    def __init__(
        self,
        image_size: int = 224,
        views: Sequence[tuple[float, float]] = DEFAULT_VIEWS,
        modalities: Sequence[Modality] = ("rgb", "depth"),
        *,
        fov_y: float = DEFAULT_FOV_Y,
        distance: float = DEFAULT_DISTANCE,
        depth_scale_mm: float = DEFAULT_DEPTH_SCALE_MM,
    ) -> None:
        if image_size < 8:
            raise ValueError("image_size must be at least 8")
        if not modalities or any(m not in ALL_MODALITIES for m in modalities):
            raise ValueError(f"modalities must be a non-empty subset of {ALL_MODALITIES}")
        if len(set(modalities)) != len(modalities):
            raise ValueError("modalities repeat")
        if depth_scale_mm <= 0:
            raise ValueError("depth_scale_mm must be positive")
        self.image_size = image_size
        self.rig = CameraRig(tuple(views), fov_y=fov_y, distance=distance)
        self.modalities: tuple[Modality, ...] = tuple(modalities)
        self.depth_scale_mm = depth_scale_mm
        n_views = len(self.rig.views)
        self._ctx: moderngl.Context | None = _open_context()
        ctx = self._ctx
        try:
            max_size = int(ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
            if image_size * n_views > max_size:
                raise ValueError(
                    f"{n_views} views of {image_size} px exceed the GL framebuffer limit {max_size}"
                )
            # depth is always drawn (background mask); other outputs only when asked for
            outputs: list[str] = [m for m in ALL_MODALITIES if m in self.modalities or m == "depth"]
            self._attachment = {m: i for i, m in enumerate(outputs)}
            decl = "\n".join(_OUTPUT_DECL[m] % i for i, m in enumerate(outputs))
            body = "\n    ".join(_OUTPUT_BODY[m] for m in outputs)
            self._prog = ctx.program(
                vertex_shader=_VERTEX_SHADER,
                fragment_shader=_FRAGMENT_SHADER % {"outputs": decl, "body": body},
            )
            self._set_uniform("u_ambient", AMBIENT)
            self._set_uniform("u_diffuse", DIFFUSE)
            self._set_uniform("u_tex", 0)
            size = (image_size, image_size * n_views)  # views stacked vertically
            kinds = {"rgb": (4, "f1"), "depth": (1, "f4"), "normal": (4, "f1")}
            self._targets = [ctx.texture(size, kinds[m][0], dtype=kinds[m][1]) for m in outputs]
            self._depth_rb = ctx.depth_renderbuffer(size)
            self._fbo = ctx.framebuffer(
                color_attachments=self._targets, depth_attachment=self._depth_rb
            )
        except Exception:
            self.close()
            raise
        proj = self.rig.projection()
        self._view_mats = [self.rig.world_to_camera(i) for i in range(n_views)]
        # moderngl writes matrices column-major: send the transpose of the row-major matrix
        self._mvp_bytes = [(proj @ v).T.astype("f4").tobytes() for v in self._view_mats]
        self._view_bytes = [v.T.astype("f4").tobytes() for v in self._view_mats]

    # -- lifecycle
    @property
    def ctx(self) -> moderngl.Context:
        if self._ctx is None:
            raise RuntimeError("renderer is closed")
        return self._ctx

    def close(self) -> None:
        """Release every GL resource and the context; idempotent."""
        if self._ctx is None:
            return
        with self._ctx:
            for name in ("_fbo", "_depth_rb", "_prog"):
                res = getattr(self, name, None)
                if res is not None:
                    res.release()
            for tex in getattr(self, "_targets", []):
                tex.release()
        self._ctx.release()
        self._ctx = None

    def __enter__(self) -> Renderer:
        return self

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Renderer holds a GL context and cannot be sent to another process: create one "
            "inside each worker"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cameras(self) -> list[ViewCamera]:
        """The rig's cameras, as recorded in shard metadata."""
        return self.rig.cameras()

    def _set_uniform(self, name: str, value: Any) -> None:
        # the GLSL compiler drops uniforms an output set does not use
        if name in self._prog:
            self._prog[name].value = value  # type: ignore[union-attr]

    # -- the three steps
    # Every public step makes this renderer's context current first (and restores the previous
    # one after): a second renderer in the same thread would otherwise receive our GL calls.
    def upload(self, mesh: Mesh, norm: Normalisation | None = None) -> MeshBuffers:
        """Normalise ``mesh`` and upload it once: returns its GL buffers (release them after)."""
        with self.ctx:
            return self._upload(mesh, norm)

    def draw(self, buffers: MeshBuffers) -> None:
        """Draw every view of ``buffers`` into the framebuffer (only uniforms change per view)."""
        with self.ctx:
            self._draw(buffers)

    def read(self) -> dict[str, np.ndarray]:
        """Read the last :meth:`draw` back: ``{modality: array}`` as in the module docstring."""
        with self.ctx:
            return self._read()

    def render(self, mesh: Mesh, norm: Normalisation | None = None) -> dict[str, np.ndarray]:
        """Render every view of ``mesh`` (normalised by ``norm``, or :func:`normalise`)."""
        with self.ctx:
            buffers = self._upload(mesh, norm)
            try:
                self._draw(buffers)
                return self._read()
            finally:
                buffers.release()

    def _upload(self, mesh: Mesh, norm: Normalisation | None) -> MeshBuffers:
        mesh.validate()
        if norm is None:
            norm = normalise(mesh)
        ctx = self.ctx
        verts = apply_normalisation(mesh.vertices, norm).astype(np.float32)
        normals = _vertex_normals(verts, mesh.faces)
        textured = mesh.texture is not None and mesh.uvs is not None
        if textured:
            assert mesh.texture is not None
            tex_shape = np.shape(mesh.texture)
            if len(tex_shape) != 3 or tex_shape[2] not in (3, 4) or min(tex_shape[:2]) < 1:
                raise ValueError(f"texture must be (H, W, 3) uint8, got shape {tex_shape}")
            limit = int(ctx.info["GL_MAX_TEXTURE_SIZE"])
            if max(tex_shape[:2]) > limit:
                raise ValueError(
                    f"texture {tex_shape[1]}x{tex_shape[0]} exceeds the GL limit {limit}"
                )
        # one GL vertex per distinct (position, uv) corner: UVs are indexed per corner, so a
        # vertex on a texture seam becomes several GL vertices
        per_vertex_uv = (
            textured
            and mesh.uvs is not None
            and len(mesh.uvs) == mesh.num_vertices
            and mesh.uv_faces is not None
            and (mesh.uv_faces is mesh.faces or np.array_equal(mesh.uv_faces, mesh.faces))
        )
        if per_vertex_uv:  # one UV per vertex: no seams to split
            assert mesh.uvs is not None
            vidx = np.arange(mesh.num_vertices)
            uv = mesh.uvs
            indices = mesh.faces.ravel()
        elif textured:
            assert mesh.uvs is not None and mesh.uv_faces is not None
            key = mesh.faces.astype(np.int64) * len(mesh.uvs) + mesh.uv_faces
            uniq, inverse = np.unique(key.ravel(), return_inverse=True)
            vidx = (uniq // len(mesh.uvs)).astype(np.int64)
            uv = mesh.uvs[uniq % len(mesh.uvs)]
            indices = inverse.astype(np.int32)
        else:
            vidx = np.arange(mesh.num_vertices)
            uv = np.zeros((mesh.num_vertices, 2), np.float32)
            indices = mesh.faces.ravel()
        if mesh.vertex_colors is not None:
            colors = mesh.vertex_colors[vidx].astype(np.float32) / 255.0
        else:
            colors = np.broadcast_to(np.asarray(NEUTRAL_GREY, np.float32) / 255.0, (len(vidx), 3))
        data = np.concatenate([verts[vidx], normals[vidx], colors, uv], axis=1).astype(np.float32)
        vbo = ctx.buffer(np.ascontiguousarray(data).tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(indices, dtype=np.int32).tobytes())
        texture = None
        try:
            vao = ctx.vertex_array(
                self._prog,
                [(vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")],
                index_buffer=ibo,
                index_element_size=4,
                skip_errors=True,  # outputs not asked for leave some attributes unused
            )
            if textured:
                assert mesh.texture is not None
                img = np.asarray(mesh.texture, dtype=np.uint8)
                # GL's first texture row is v = 0 (bottom); the image's row 0 is the top
                flipped = np.ascontiguousarray(img[::-1, :, :3])
                texture = ctx.texture(
                    (img.shape[1], img.shape[0]), 3, flipped.tobytes(), alignment=1
                )
                # Bilinear without mipmaps: face textures are sampled near 1:1 at these image
                # sizes, and trilinear filtering made llvmpipe 1.5x slower (21.6 -> 14.5 ms a
                # 3-view mesh, measured on the 2-core CPU machine).
                texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
                texture.repeat_x = texture.repeat_y = False
        except Exception:
            vbo.release()
            ibo.release()
            raise
        return MeshBuffers(ctx, vbo, ibo, vao, texture, inv_scale=1.0 / norm.scale)

    def _draw(self, buffers: MeshBuffers) -> None:
        if buffers.ctx is not self.ctx:
            raise ValueError("these buffers belong to another renderer")
        ctx = self.ctx
        self._fbo.use()
        ctx.enable_only(moderngl.DEPTH_TEST)  # no culling, no blending
        ctx.scissor = None  # clear the whole stack
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._set_uniform("u_inv_scale", buffers.inv_scale)
        self._set_uniform("u_use_tex", buffers.texture is not None)
        if buffers.texture is not None:
            buffers.texture.use(0)
        size, n_views = self.image_size, len(self._view_mats)
        for i in range(n_views):
            # view 0 at the top of the stack: GL rows count from the bottom
            rect = (0, (n_views - 1 - i) * size, size, size)
            # the scissor keeps guard-band rasterisers from drawing past the view's own tile
            ctx.viewport = ctx.scissor = rect
            self._prog["u_mvp"].write(self._mvp_bytes[i])  # type: ignore[union-attr]
            if "u_view" in self._prog:
                self._prog["u_view"].write(self._view_bytes[i])  # type: ignore[union-attr]
            buffers.vao.render(moderngl.TRIANGLES)

    def _read(self) -> dict[str, np.ndarray]:
        size, n_views = self.image_size, len(self._view_mats)
        shape = (n_views, size, size)

        def grab(modality: str, components: int, dtype: str) -> NDArray[Any]:
            raw = self._fbo.read(
                attachment=self._attachment[modality],
                components=components,
                dtype=dtype,
                alignment=1,
            )
            arr = np.frombuffer(raw, dtype=np.uint8 if dtype == "f1" else np.float32)
            # GL rows run bottom-up: flip the whole stack once, views come out in order
            return arr.reshape(n_views * size, size, components)[::-1].reshape(*shape, components)

        depth_f = grab("depth", 1, "f4")[..., 0]
        mask = depth_f > 0
        out: dict[str, np.ndarray] = {}
        for m in self.modalities:
            if m == "rgb":
                out["rgb"] = np.ascontiguousarray(grab("rgb", 3, "f1"))
            elif m == "normal":
                out["normal"] = np.ascontiguousarray(grab("normal", 3, "f1"))
            else:
                q = np.rint(depth_f / self.depth_scale_mm)
                q = np.where(mask, np.clip(q, 1, 65535), 0)
                out["depth"] = q.astype(np.uint16)
        return out
