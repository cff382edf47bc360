"""Tests of the headless multiview renderer, its normalisation and camera rig, the contact sheet.

Everything renders with the real moderngl EGL context (Mesa llvmpipe on CI) at small sizes.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
import trimesh

from mvdata.core import Mesh
from mvdata.render.cameras import DEFAULT_DISTANCE, DEFAULT_FOV_Y, DEFAULT_VIEWS, CameraRig
from mvdata.render.gl import NEUTRAL_GREY, Renderer
from mvdata.render.normalise import (
    CANONICAL_BBOX_EXTENT,
    CANONICAL_EYE_DISTANCE,
    CANONICAL_LANDMARK_SPREAD,
    NOSE_TILT_DEG,
    apply_normalisation,
    normalise,
)
from mvdata.shards.contact_sheet import contact_sheet, depth_to_grey
from schemas.models import Normalisation

SIZE = 96
SCALE_MM = 0.05


def identity_norm(scale: float = 1.0) -> Normalisation:
    return Normalisation(
        method="bbox", centre=[0.0, 0.0, 0.0], scale=scale, rotation=np.eye(3).tolist()
    )


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    with Renderer(SIZE, DEFAULT_VIEWS, ("rgb", "depth", "normal"), depth_scale_mm=SCALE_MM) as r:
        yield r


def sphere(
    radius: float = 60.0, subdivisions: int = 4, centre: tuple[float, ...] = (0, 0, 0)
) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions, radius=radius)
    return Mesh(s.vertices + np.asarray(centre), s.faces)


def textured_quad(half: float = 100.0) -> tuple[Mesh, np.ndarray]:
    """A quad in z=0 whose texture has four coloured quadrants; UVs indexed per corner."""
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32, :32] = (220, 40, 40)  # image top-left: red
    tex[:32, 32:] = (40, 200, 40)  # top-right: green
    tex[32:, :32] = (40, 40, 220)  # bottom-left: blue
    tex[32:, 32:] = (230, 230, 230)  # bottom-right: white
    v = np.array(
        [[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], np.float32
    )
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    # UVs in a different order than the vertices, indexed separately (as VRML/OBJ do)
    uvs = np.array([[1, 1], [0, 0], [0, 1], [1, 0]], np.float32)  # corners 2, 0, 3, 1
    uv_faces = np.array([[1, 3, 0], [1, 0, 2]], np.int32)
    return Mesh(v, f, uvs=uvs, uv_faces=uv_faces, texture=tex), tex


def pixel_radius(radius: float, distance: float = DEFAULT_DISTANCE, size: int = SIZE) -> float:
    """Image radius (pixels) of a sphere's silhouette seen from ``distance``."""
    alpha = math.asin(radius / distance)
    return math.tan(alpha) / math.tan(math.radians(DEFAULT_FOV_Y) / 2) * size / 2


# --------------------------------------------------------------------------- geometry
def test_output_shapes_dtypes_and_background(renderer: Renderer) -> None:
    out = renderer.render(sphere(), identity_norm())
    assert out["rgb"].shape == (3, SIZE, SIZE, 3) and out["rgb"].dtype == np.uint8
    assert out["depth"].shape == (3, SIZE, SIZE) and out["depth"].dtype == np.uint16
    assert out["normal"].shape == (3, SIZE, SIZE, 3) and out["normal"].dtype == np.uint8
    bg = out["depth"] == 0
    assert bg[:, 0, 0].all() and (out["rgb"][bg] == 0).all() and (out["normal"][bg] == 0).all()
    # an untextured, uncoloured mesh is neutral grey; facing the light it shows its albedo
    c = SIZE // 2
    assert np.abs(out["rgb"][0, c, c].astype(int) - NEUTRAL_GREY).max() <= 2


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_depth_of_box_face_is_metric(renderer: Renderer, scale: float) -> None:
    box = trimesh.creation.box(extents=(100.0, 100.0, 100.0))
    out = renderer.render(Mesh(box.vertices, box.faces), identity_norm(scale))
    # front face at canonical z = 50 * scale; depth in mm of the input mesh = canonical / scale
    expected_mm = (DEFAULT_DISTANCE - 50.0 * scale) / scale
    c = SIZE // 2
    centre = out["depth"][0, c - 1 : c + 1, c - 1 : c + 1].astype(np.float64) * SCALE_MM
    assert np.abs(centre - expected_mm).max() <= SCALE_MM


def test_sphere_silhouette_area_matches_projection(renderer: Renderer) -> None:
    out = renderer.render(sphere(60.0), identity_norm())
    expected = math.pi * pixel_radius(60.0) ** 2
    for v in range(3):  # a centred sphere looks the same from every camera
        area = int((out["depth"][v] > 0).sum())
        assert abs(area - expected) / expected < 0.03, (v, area, expected)


def test_normals_at_centre_point_at_camera(renderer: Renderer) -> None:
    out = renderer.render(sphere(60.0), identity_norm())
    c = SIZE // 2
    for v in range(3):
        n = out["normal"][v, c - 1 : c + 1, c - 1 : c + 1].reshape(-1, 3).astype(np.float64)
        unit = n / 255.0 * 2 - 1
        assert (unit[:, 2] > 0.995).all(), unit
    # right of centre the sphere's normal turns right (+x in camera space)
    assert out["normal"][0, c, c + 20, 0] > 160 and out["normal"][0, c, c - 20, 0] < 95
    # inverted winding (normals pointing inwards, common in scans): the same image
    inside_out = sphere(60.0)
    inside_out.faces = np.ascontiguousarray(inside_out.faces[:, ::-1])
    flipped = renderer.render(inside_out, identity_norm())
    for m in ("normal", "rgb"):
        assert np.abs(flipped[m].astype(int) - out[m].astype(int)).max() <= 1


@pytest.mark.parametrize("views", [DEFAULT_VIEWS, ((15.0, 25.0), (-40.0, -10.0))])
def test_camera_matrices_match_rendered_positions(
    renderer: Renderer, views: tuple[tuple[float, float], ...]
) -> None:
    centre = np.array([40.0, 30.0, 20.0])
    with contextlib.ExitStack() as stack:
        r = renderer
        if views != DEFAULT_VIEWS:  # another rig, with pitch
            r = stack.enter_context(Renderer(SIZE, views, ("depth",), depth_scale_mm=SCALE_MM))
        out = r.render(sphere(8.0, 3, tuple(centre)), identity_norm())
        cams = r.cameras()
    for cam in cams:
        view = np.asarray(cam.world_to_camera)
        proj = np.asarray(cam.projection)
        clip = proj @ view @ np.append(centre, 1.0)
        ndc = clip[:3] / clip[3]
        col, row = (ndc[0] + 1) / 2 * SIZE, (1 - ndc[1]) / 2 * SIZE  # row 0 at the top
        rows, cols = np.nonzero(out["depth"][cam.index])
        assert abs(cols.mean() + 0.5 - col) < 0.5 and abs(rows.mean() + 0.5 - row) < 0.5
        # the depth of the nearest point is the camera-space distance minus the radius
        near_mm = out["depth"][cam.index][rows, cols].min() * SCALE_MM
        assert abs(near_mm - (-(view @ np.append(centre, 1.0))[2] - 8.0)) < 0.2


# --------------------------------------------------------------------------- colour
@pytest.mark.parametrize("per_corner", [True, False])
def test_texture_lands_where_uv_says(renderer: Renderer, per_corner: bool) -> None:
    mesh, tex = textured_quad()
    if not per_corner:  # the same UVs, one per vertex (uv_faces is faces)
        uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
        mesh = Mesh(mesh.vertices, mesh.faces, uvs=uvs, texture=tex)
    out = renderer.render(mesh, identity_norm())
    img = out["rgb"][0].astype(int)
    q = SIZE // 4
    # image quadrant == texture quadrant (top-left of the image shows the texture's top-left)
    for (r, c), (tr, tc) in {
        (q, q): (8, 8),
        (q, 3 * q): (8, 56),
        (3 * q, q): (56, 8),
        (3 * q, 3 * q): (56, 56),
    }.items():
        assert np.abs(img[r, c] - tex[tr, tc]).max() <= 2, ((r, c), img[r, c], tex[tr, tc])


def test_vertex_colours(renderer: Renderer) -> None:
    s = trimesh.creation.icosphere(4, radius=60.0)
    colours = np.where(s.vertices[:, :1] > 0, [[250, 20, 20]], [[20, 20, 250]]).astype(np.uint8)
    out = renderer.render(Mesh(s.vertices, s.faces, vertex_colors=colours), identity_norm())
    c = SIZE // 2
    right, left = out["rgb"][0, c, c + 10].astype(int), out["rgb"][0, c, c - 10].astype(int)
    assert right[0] > 200 and right[2] < 40 and left[2] > 200 and left[0] < 40


# --------------------------------------------------------------------------- views
def bumpy_head() -> Mesh:
    """Mirror-symmetric in x, not in y or z, and off the rotation centre: a nose on a sphere."""
    s = trimesh.creation.icosphere(4, radius=50.0)
    v = s.vertices.copy()
    front = v[:, 2] > 0
    v[front, 2] += 25.0 * np.exp(-(v[front, 0] ** 2 + (v[front, 1] + 10) ** 2) / 150.0)
    v[:, 1] *= 1.3
    v[:, 2] += 30.0
    return Mesh(v, s.faces)


def test_yaw_views_mirror_each_other(renderer: Renderer) -> None:
    out = renderer.render(bumpy_head(), identity_norm())
    left, right = 1, 2  # DEFAULT_VIEWS: (-20, 0), (20, 0)
    assert DEFAULT_VIEWS[left] == (-20, 0) and DEFAULT_VIEWS[right] == (20, 0)
    mask_l = out["depth"][left] > 0
    mask_r = out["depth"][right][:, ::-1] > 0
    assert (mask_l & mask_r).sum() / (mask_l | mask_r).sum() > 0.99
    both = mask_l & mask_r
    d_l = out["depth"][left][both].astype(np.float64) * SCALE_MM
    d_r = out["depth"][right][:, ::-1][both].astype(np.float64) * SCALE_MM
    assert np.median(np.abs(d_l - d_r)) < 0.1
    # mirrored normals: x flips sign, y and z stay
    n_l = out["normal"][left][both].astype(np.float64)
    n_r = out["normal"][right][:, ::-1][both].astype(np.float64)
    assert np.median(np.abs(n_l[:, 0] - (255 - n_r[:, 0]))) <= 2
    assert np.median(np.abs(n_l[:, 1:] - n_r[:, 1:])) <= 2
    # and the two views are not trivially the same image
    assert not np.array_equal(out["depth"][left], out["depth"][right])


def test_views_do_not_bleed_into_each_other() -> None:
    # a quad far larger than the view, seen face-on (fills view 0) and edge-on (nothing)
    v = np.array([[-1e4, -1e4, 0], [1e4, -1e4, 0], [1e4, 1e4, 0], [-1e4, 1e4, 0]], np.float32)
    quad = Mesh(v, np.array([[0, 1, 2], [0, 2, 3]], np.int32))
    with Renderer(32, ((0.0, 0.0), (90.0, 0.0), (0.0, 0.0)), ("depth",)) as r:
        depth = r.render(quad, identity_norm())["depth"]
    assert (depth[0] > 0).all() and (depth[2] > 0).all()
    assert (depth[1] > 0).sum() <= 32  # at most the one-pixel line of the edge-on quad


def test_rig_cameras_and_validation() -> None:
    rig = CameraRig(((0, 0), (30, 10)), fov_y=30.0, distance=500.0)
    cams = rig.cameras()
    assert [c.index for c in cams] == [0, 1] and cams[1].yaw == 30 and cams[1].pitch == 10
    # the camera sits at distance 500, yawed to +x and pitched up, looking at the origin
    view = np.asarray(cams[1].world_to_camera)
    eye = -view[:3, :3].T @ view[:3, 3]
    assert np.allclose(np.linalg.norm(eye), 500.0) and eye[0] > 0 and eye[1] > 0
    assert np.allclose(view @ np.array([0, 0, 0, 1.0]), [0, 0, -500.0, 1])
    with pytest.raises(ValueError):
        CameraRig(((0, 90),))
    with pytest.raises(ValueError):
        Renderer(32, modalities=("rgb", "infrared"))  # type: ignore[arg-type]


def test_renderer_refuses_pickling_and_bad_textures(renderer: Renderer) -> None:
    with pytest.raises(TypeError, match="inside each worker"):
        pickle.dumps(renderer)
    mesh, tex = textured_quad()
    mesh.texture = tex[:, :, 0]  # a grey image without its channel axis
    with pytest.raises(ValueError, match="texture"):
        renderer.render(mesh, identity_norm())


# --------------------------------------------------------------------------- determinism, processes
def test_render_is_deterministic(renderer: Renderer) -> None:
    mesh, _ = textured_quad()
    head = bumpy_head()
    a = renderer.render(head, identity_norm())
    renderer.render(mesh, identity_norm())  # something else in between
    b = renderer.render(head, identity_norm())
    with Renderer(
        SIZE, DEFAULT_VIEWS, ("rgb", "depth", "normal"), depth_scale_mm=SCALE_MM
    ) as other:
        c = other.render(head, identity_norm())
        d = renderer.render(head, identity_norm())  # two live renderers, interleaved
    e = renderer.render(head, identity_norm())  # after the other one released its context
    for m in ("rgb", "depth", "normal"):
        assert (
            a[m].tobytes() == b[m].tobytes() == c[m].tobytes() == d[m].tobytes() == e[m].tobytes()
        )


def _render_in_worker(mesh: Mesh) -> dict[str, np.ndarray]:
    with Renderer(SIZE, DEFAULT_VIEWS, ("rgb", "depth"), depth_scale_mm=SCALE_MM) as r:
        return r.render(mesh, identity_norm())


def test_spawned_worker_renders_the_same_bytes(renderer: Renderer) -> None:
    head = bumpy_head()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_render_in_worker, (head,))
    want = renderer.render(head, identity_norm())
    assert got["rgb"].tobytes() == want["rgb"].tobytes()
    assert got["depth"].tobytes() == want["depth"].tobytes()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_refuses_instead_of_hanging(renderer: Renderer) -> None:
    pid = os.fork()
    if pid == 0:  # child: must raise at once, never reach the driver
        code = 3
        try:
            Renderer(16)
        except RuntimeError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------- normalisation
def face_landmarks() -> dict[int, np.ndarray]:
    """A frontal face in the canonical frame: eyes level, looking along +z, IOD 90."""
    tilt = math.tan(math.radians(NOSE_TILT_DEG["subnasale"]))
    return {
        37: np.array([-45.0, 0, 0]),
        40: np.array([-15.0, 0, 5]),
        43: np.array([15.0, 0, 5]),
        46: np.array([45.0, 0, 0]),
        31: np.array([0.0, -35, 35]),
        34: np.array([0.0, -45, 2.5 + 45 * tilt]),
        49: np.array([-25.0, -70, 12]),
        52: np.array([0.0, -62, 20]),
        55: np.array([25.0, -70, 12]),
        58: np.array([0.0, -78, 18]),
    }


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def posed_mesh(lm: dict[int, np.ndarray], rot: np.ndarray, size: float, shift: np.ndarray) -> Mesh:
    ids = sorted(lm)
    pts = np.stack([lm[i] for i in ids]) * size @ rot.T + shift
    s = trimesh.creation.icosphere(2, radius=80.0)
    return Mesh(
        s.vertices * size @ rot.T + shift,
        s.faces,
        landmarks=pts.astype(np.float32),
        landmark_names=tuple(f"ibug{i}" for i in ids),
    )


def test_normalise_from_landmarks_undoes_a_known_pose() -> None:
    lm = face_landmarks()
    rot = rotation(30.0, -15.0, 10.0)
    mesh = posed_mesh(lm, rot, 1.3, np.array([12.0, -40.0, 700.0]))
    norm = normalise(mesh)
    assert norm.method == "landmarks"
    assert np.allclose(np.asarray(norm.rotation) @ rot, np.eye(3), atol=1e-4)
    assert math.isclose(norm.scale, 1 / 1.3, rel_tol=1e-5)
    assert mesh.landmarks is not None
    out = apply_normalisation(mesh.landmarks, norm)
    idx = {int(n[4:]): k for k, n in enumerate(mesh.landmark_names)}
    # the landmark centre (eye corners + nose tip) is at the origin
    assert np.allclose(out[[idx[i] for i in (37, 40, 43, 46, 31)]].mean(axis=0), 0, atol=1e-3)
    # the eye line is horizontal and across the view, eyes CANONICAL_EYE_DISTANCE apart
    eye_line = out[idx[46]] - out[idx[37]]
    assert np.allclose(eye_line, [CANONICAL_EYE_DISTANCE, 0, 0], atol=1e-3)
    assert out[idx[31], 2] > 0 and out[idx[58], 1] < out[idx[31], 1]  # nose out, mouth down


def test_normalise_ignores_the_mouth() -> None:
    lm = face_landmarks()
    smile = {**lm, 49: lm[49] + [-5, 12, -6], 55: lm[55] + [5, 12, -6], 58: lm[58] + [0, -15, 0]}
    a = normalise(posed_mesh(lm, np.eye(3), 1.0, np.zeros(3)))
    b = normalise(posed_mesh(smile, np.eye(3), 1.0, np.zeros(3)))
    assert np.allclose(a.rotation, np.eye(3), atol=1e-6) and a == b


def test_normalise_fallbacks() -> None:
    lm = face_landmarks()
    no_nose = {k: v for k, v in lm.items() if k not in (31, 34)}
    norm = normalise(posed_mesh(no_nose, rotation(20, 0, 0), 1.0, np.zeros(3)))
    assert norm.method == "landmarks" and np.array_equal(norm.rotation, np.eye(3).tolist())
    box = trimesh.creation.box(extents=(40.0, 110.0, 20.0))
    bare = Mesh(box.vertices + [5.0, 6.0, 7.0], box.faces)
    norm = normalise(bare)
    assert norm.method == "bbox" and np.allclose(norm.centre, [5, 6, 7])
    assert math.isclose(norm.scale, CANONICAL_BBOX_EXTENT / 110.0)


#: ibug id -> the Bosphorus label of the same point (subject's right = Bosphorus "left").
BOSPHORUS_OF_IBUG = {
    37: "Outer left eye corner",
    40: "Inner left eye corner",
    43: "Inner right eye corner",
    46: "Outer right eye corner",
    31: "Nose tip",
    49: "Left mouth corner",
    52: "Upper lip outer middle",
    55: "Right mouth corner",
    58: "Lower lip outer middle",
}


def test_normalise_reads_bosphorus_labels() -> None:
    """Real Bosphorus scans name their points in words: they normalise by landmarks (not by
    bounding box), with the nose-tip tilt since Bosphorus marks no subnasale."""
    lm = face_landmarks()
    del lm[34]
    tip = math.tan(math.radians(NOSE_TILT_DEG["nose_tip"]))
    lm[31] = np.array([0.0, -35.0, 2.5 + 35.0 * tip])  # a frontal face at the nose-tip tilt
    rot = rotation(-25.0, 10.0, -5.0)
    ibug = posed_mesh(lm, rot, 0.8, np.array([-3.0, 20.0, 300.0]))
    names = tuple(BOSPHORUS_OF_IBUG[int(n[4:])] for n in ibug.landmark_names)
    bos = Mesh(ibug.vertices, ibug.faces, landmarks=ibug.landmarks, landmark_names=names)
    norm = normalise(bos)
    assert norm.method == "landmarks"
    assert np.allclose(np.asarray(norm.rotation) @ rot, np.eye(3), atol=1e-4)
    assert math.isclose(norm.scale, 1 / 0.8, rel_tol=1e-5)
    assert norm == normalise(ibug)  # the same points by meaning give the same transform


def test_normalise_uses_bnd_rows_only_as_a_set() -> None:
    """BU .bnd rows (order unverified) give centre and spread, never eye corners by row: any
    row order gives the same transform, with no rotation."""
    lm = face_landmarks()
    mesh = posed_mesh(lm, np.eye(3), 1.0, np.array([1.0, 2.0, 3.0]))
    assert mesh.landmarks is not None
    pts = mesh.landmarks.astype(np.float64)
    names = tuple(f"bnd{i:02d}" for i in range(len(pts)))
    a = normalise(Mesh(mesh.vertices, mesh.faces, landmarks=pts, landmark_names=names))
    perm = np.random.default_rng(0).permutation(len(pts))
    b = normalise(Mesh(mesh.vertices, mesh.faces, landmarks=pts[perm], landmark_names=names))
    assert a.method == "landmarks" and np.array_equal(a.rotation, np.eye(3).tolist())
    assert np.allclose(a.centre, pts.mean(axis=0))
    spread = np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert math.isclose(a.scale, CANONICAL_LANDMARK_SPREAD / spread, rel_tol=1e-9)
    assert np.allclose(b.centre, a.centre) and math.isclose(b.scale, a.scale, rel_tol=1e-9)


# --------------------------------------------------------------------------- contact sheet
def test_contact_sheet_layout(renderer: Renderer) -> None:
    rows = [
        renderer.render(sphere(), identity_norm()),
        renderer.render(textured_quad()[0], identity_norm()),
    ]
    sheet = contact_sheet(rows, ["sphere", "quad"])
    from mvdata.shards.contact_sheet import GAP, LABEL_HEIGHT

    assert sheet.size == (3 * 3 * SIZE + 2 * GAP, 2 * (SIZE + LABEL_HEIGHT))
    px = np.asarray(sheet)
    # second row, first view of rgb: the quad's red top-left quadrant
    assert (
        np.abs(px[SIZE + 2 * LABEL_HEIGHT + SIZE // 4, SIZE // 4].astype(int) - (220, 40, 40)).max()
        <= 2
    )
    with pytest.raises(ValueError):
        contact_sheet(rows, ["one label"])


def test_depth_to_grey_near_is_bright() -> None:
    depth = np.array([[[0, 100, 200]]], np.uint16)
    grey = depth_to_grey(depth)
    assert grey.shape == (1, 1, 3, 3)
    assert (
        grey[0, 0, 0].tolist() == [0, 0, 0] and grey[0, 0, 1, 0] == 255 and grey[0, 0, 2, 0] == 40
    )
