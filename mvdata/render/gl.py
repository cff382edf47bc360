"""The headless multiview renderer (moderngl over EGL): uploads a normalised mesh once and
draws every view of a :class:`~mvdata.render.cameras.CameraRig` into one framebuffer.

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

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import moderngl
import numpy as np
from numpy.typing import NDArray

from mvdata.core import Mesh, vertex_normals
from mvdata.render.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_Y, DEFAULT_VIEWS, CameraRig
from mvdata.render.normalise import apply_normalisation, normalise
from schemas.models import MODALITIES, Modality, Normalisation, ViewCamera

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
        if not modalities or any(m not in MODALITIES for m in modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}")
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
            outputs: list[str] = [m for m in MODALITIES if m in self.modalities or m == "depth"]
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
        normals = vertex_normals(verts, mesh.faces)
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
