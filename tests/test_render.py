"""Headless renderer: camera math, real renders of a known sphere, colours, determinism, PNG output."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import needs_gl
from PIL import Image

from thunder3d.errors import ThunderError
from thunder3d.render import (VIEWS, Renderer, RenderError, framing, look_at, parse_views, perspective,
                              render_still, rig_camera, save_png, vertex_normals)
from thunder3d.rigs import LinearBlendshapeRig

from thunder3d.render.gl import create_context

GREY, RED = (0.7, 0.7, 0.7), (0.9, 0.1, 0.1)


def uv_sphere(n_lat: int = 24, n_lon: int = 48, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed UV sphere: vertices ``[V, 3]`` and counter-clockwise (outward) triangles ``[F, 3]``."""
    theta = np.linspace(0.0, np.pi, n_lat + 1)[1:-1]  # polar angle of the rings, poles excluded
    phi = np.linspace(0.0, 2.0 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")  # [n_lat - 1, n_lon]
    rings = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 1.0, 0.0]], rings, [[0.0, -1.0, 0.0]]]) * radius
    top, bottom = 0, len(verts) - 1
    ring = lambda i, j: 1 + i * n_lon + j % n_lon  # noqa: E731  vertex j of ring i
    faces = [(top, ring(0, j), ring(0, j + 1)) for j in range(n_lon)]
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1)
            faces += [(a, b, c), (a, c, d)]
    faces += [(bottom, ring(n_lat - 2, j + 1), ring(n_lat - 2, j)) for j in range(n_lon)]
    return verts, np.asarray(faces)


def split_colors(verts: np.ndarray) -> np.ndarray:
    """``[V, 3]`` colours: red on the subject's left (x > 0), grey elsewhere."""
    return np.where(verts[:, :1] > 0, RED, GREY)


def sphere_rig() -> LinearBlendshapeRig:
    """A sphere as a rig: ``bulge`` pushes the front (+z) cap outwards; ``face`` is the front half."""
    verts, faces = uv_sphere()
    front = np.flatnonzero(verts[:, 2] > 0)
    deltas = np.zeros((1, len(verts), 3))
    deltas[0, verts[:, 2] > 0.8, 2] = 0.5
    return LinearBlendshapeRig(
        name="sphere", spec="sphere", coeff_names=["bulge"], neutral=torch.tensor(verts),
        deltas=torch.tensor(deltas), faces=torch.tensor(faces),
        regions={r: front for r in ("lips", "mouth", "face", "upper_face", "eyes")},
        lip_landmarks={"upper_inner": 0, "lower_inner": 1, "left_corner": 2, "right_corner": 3},
        units="cm", vertex_colors=torch.tensor(split_colors(verts)),
    )


def foreground(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels that differ from the plain background gradient of a render."""
    background = image[:, :1].astype(int)  # the first column is background in every test render
    return np.abs(image.astype(int) - background).sum(axis=-1) > 12


@pytest.fixture(scope="module")
def sphere():
    verts, faces = uv_sphere()
    with Renderer(faces, split_colors(verts), size=128) as renderer:
        yield renderer, verts


# ----------------------------------------------------------------------------- camera math
def test_look_at_and_perspective_map_target_to_centre():
    view = look_at((0, 0, 10), (0, 0, 0))
    assert np.allclose(view @ [0, 0, 0, 1], [0, 0, -10, 1])  # the target lies straight ahead (-z)
    assert np.allclose(view @ [1, 0, 0, 1], [1, 0, -10, 1])  # +x stays to the right from the front
    clip = perspective(20.0, 1.0, 1.0, 100.0) @ (view @ [0, 0, 0, 1])
    assert np.allclose(clip[:2], 0) and -1 < clip[2] / clip[3] < 1


def test_framing_views_and_stability():
    points = np.random.default_rng(0).normal(size=(500, 3)) * [8, 10, 5]
    front, side = framing(points, "front"), framing(points, "side")
    assert front.target == side.target
    assert front.eye[2] > front.target[2] and abs(front.eye[0] - front.target[0]) < 1e-9
    assert side.eye[0] > side.target[0] and abs(side.eye[2] - side.target[2]) < 1e-9  # subject's left
    three = framing(points, "three_quarter")
    assert 30 < np.degrees(np.arctan2(three.eye[0] - three.target[0], three.eye[2] - three.target[2])) < 40
    # the same bbox frames the same way, whatever the points inside it (stable over an animation)
    lo, hi = points.min(0), points.max(0)
    assert framing(np.stack([lo, hi]), "front") == front
    # every point projects inside the image
    clip = front.projection_matrix(1.0) @ front.view_matrix() @ np.c_[points, np.ones(len(points))].T
    assert (np.abs(clip[:2] / clip[3]) < 1).all()


def test_view_names_are_validated():
    assert parse_views("front, side") == ("front", "side")
    assert parse_views(["three_quarter"]) == ("three_quarter",)
    for bad in ("front,profile", ""):
        with pytest.raises(RenderError, match="valid: \\['front', 'three_quarter', 'side'\\]"):
            parse_views(bad)
    with pytest.raises(ThunderError, match="unknown view 'top'"):
        framing(np.zeros((3, 3)), "top")
    assert set(VIEWS) == {"front", "three_quarter", "side"}


def test_vertex_normals_of_a_sphere_point_outwards():
    verts, faces = uv_sphere()
    normals = vertex_normals(verts, faces)
    assert normals.shape == verts.shape and normals.dtype == np.float32
    assert ((normals * verts).sum(axis=1) > 0.99).all()  # unit sphere: normal ~ position


# ----------------------------------------------------------------------------- rendering
@needs_gl
def test_sphere_silhouette_coverage_and_place(sphere):
    renderer, verts = sphere
    image = renderer.render(verts, framing(verts, "front"))
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    mask = foreground(image)
    # bbox framing with a 12% margin and a 20° lens: the sphere spans ~77% of the half-height
    assert 0.40 < mask.mean() < 0.52
    rows, cols = np.nonzero(mask)
    assert abs(rows.mean() - 63.5) < 2 and abs(cols.mean() - 63.5) < 2
    assert not mask[:8].any() and not mask[:, :8].any()  # margins stay background
    assert image[mask].mean() > 60  # lit, not black


@needs_gl
def test_colours_come_through_and_views_differ(sphere):
    renderer, verts = sphere
    front = renderer.render(verts, framing(verts, "front")).astype(int)
    left, right = front[40:88, 30:60], front[40:88, 68:98]  # image right = subject's left = +x = red
    assert (right[..., 0] - right[..., 1]).mean() > 60
    assert abs((left[..., 0] - left[..., 1]).mean()) < 10
    side = renderer.render(verts, framing(verts, "side")).astype(int)  # looks at the red half
    assert (side[40:88, 40:88, 0] - side[40:88, 40:88, 1]).mean() > 60
    assert np.abs(front - side).mean() > 10


@needs_gl
def test_deterministic_and_moved_vertex_changes_image(sphere):
    renderer, verts = sphere
    camera = framing(verts, "three_quarter")
    first = renderer.render(verts, camera)
    assert renderer.render(torch.tensor(verts), camera).tobytes() == first.tobytes()
    moved = verts.copy()
    moved[np.argmax(verts[:, 2])] += [0.0, 0.0, 0.6]  # pull the front pole towards the camera
    assert (renderer.render(moved, camera) != first).any()


@needs_gl
def test_winding_does_not_matter_and_bad_input_is_refused():
    verts, faces = uv_sphere(12, 24)
    camera = framing(verts, "front")
    with Renderer(faces, split_colors(verts), size=64) as ccw, \
            Renderer(faces[:, ::-1], split_colors(verts), size=64) as cw:
        a, b = ccw.render(verts, camera).astype(int), cw.render(verts, camera).astype(int)
        assert np.abs(a - b).mean() < 1.0
        with pytest.raises(RenderError, match="vertices must be"):
            ccw.render(verts[:-1], camera)
        with pytest.raises(RenderError, match="NaN"):
            ccw.render(np.full_like(verts, np.nan), camera)
    with pytest.raises(RenderError, match="closed"):
        ccw.render(verts, camera)
    with pytest.raises(RenderError, match="beyond vertex_colors"):
        Renderer(faces, split_colors(verts)[:5])


@needs_gl
def test_supersampling_fallback_matches_msaa():
    verts, faces = uv_sphere(12, 24)
    camera = framing(verts, "front")
    with Renderer(faces, split_colors(verts), size=(80, 64), samples=4) as msaa, \
            Renderer(faces, split_colors(verts), size=(80, 64), samples=1024) as supersampled:
        a, b = msaa.render(verts, camera), supersampled.render(verts, camera)
    assert a.shape == b.shape == (64, 80, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_missing_egl_is_a_clear_error(monkeypatch):
    moderngl = pytest.importorskip("moderngl")

    def no_egl(**kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_context", no_egl)
    with pytest.raises(RenderError, match="libegl1 and libgl1-mesa-dri"):
        create_context()


def test_importing_render_needs_no_gl():
    """In a fresh interpreter, importing thunder3d.render loads the package but not moderngl."""
    code = "import sys, thunder3d.render; print('thunder3d.render' in sys.modules, 'moderngl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


# ----------------------------------------------------------------------------- render_still / PNG
@needs_gl
def test_render_still_side_by_side_from_the_neutral_framing():
    rig = sphere_rig()
    with torch.no_grad():
        bulged = rig(rig.coeffs({"bulge": 1.0}))[0]
    image = render_still(rig, bulged, views="front,side", size=(96, 80))
    assert image.shape == (80, 192, 3) and image.dtype == np.uint8
    front, side = image[:, :96], image[:, 96:]
    assert foreground(front).any() and foreground(side).any() and (front != side).any()
    assert render_still(rig, bulged, views=["side"], size=(96, 80)).tobytes() == side.tobytes()
    # the camera comes from the neutral face region, not from the animated vertices
    assert rig_camera(rig, "front") == framing(rig.neutral.numpy()[rig.region("face").numpy()], "front")
    with pytest.raises(RenderError, match="unknown view 'back'"):
        render_still(rig, bulged, views="front,back")


@needs_gl
def test_save_png_roundtrip(tmp_path):
    rig = sphere_rig()
    image = render_still(rig, rig.neutral, views="three_quarter", size=64)
    path = tmp_path / "out" / "still.png"
    save_png(path, image)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (64, 64)
        assert np.array_equal(np.asarray(png.convert("RGB")), image)
    assert [p.name for p in path.parent.iterdir()] == ["still.png"]  # no temp file left


def test_save_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "still.png"
    path.write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(path, np.zeros((4, 4, 3), np.uint8))
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["still.png"]
    with pytest.raises(RenderError, match="uint8"):
        save_png(path, np.zeros((4, 4, 3), np.float32))
