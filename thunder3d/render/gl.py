"""Headless OpenGL rendering of a triangle mesh with per-vertex colours (moderngl, EGL).

``moderngl`` is imported only when a :class:`Renderer` is created, so importing this module needs
no GL. One renderer holds one standalone EGL context, an offscreen framebuffer with depth (MSAA
when the driver has it, else supersampling), the shader program and the mesh buffers; each
:meth:`Renderer.render` call only uploads new vertex positions and normals, so it is cheap enough
for video.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from thunder3d.errors import RenderError

if TYPE_CHECKING:
    from thunder3d.render.camera import Camera

EGL_HELP = ("install the system packages libegl1 and libgl1-mesa-dri "
            "(Debian/Ubuntu: apt-get install libegl1 libgl1-mesa-dri)")

BACKGROUND_TOP = (0.93, 0.93, 0.94)
BACKGROUND_BOTTOM = (0.78, 0.79, 0.81)

# Lighting is per vertex (Gouraud): on llvmpipe, per-fragment shading costs about as much as the
# rest of the frame, and face meshes are dense enough that the two look the same at video sizes.
# Lights live in camera space, so every view is lit alike: a neutral key from the upper left, a
# cool fill from the right, a sky/ground hemisphere ambient and a Fresnel rim that lifts the
# silhouette off the background; wrapped ("soft") Lambert for skin and a little Blinn-Phong
# specular on the key. Both sides are shaded: the fragment shader picks the side facing the
# camera, and inner sides (seen through open lips) are darkened like a cavity. Colours arrive
# linear (gamma 2 decoded once on upload) and leave gamma-encoded (sqrt: close to sRGB, cheap).
_VERTEX_SHADER = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_front;
out vec3 v_back;

const vec3 KEY_DIR = normalize(vec3(-0.65, 0.55, 0.55));
const vec3 KEY_COLOR = vec3(1.00, 0.97, 0.93);
const vec3 FILL_DIR = normalize(vec3(0.80, 0.05, 0.55));
const vec3 FILL_COLOR = vec3(0.80, 0.88, 1.00) * 0.25;
const vec3 SKY = vec3(0.95, 0.97, 1.00) * 0.16;
const vec3 GROUND = vec3(0.60, 0.52, 0.48) * 0.10;
const vec3 RIM_COLOR = vec3(1.00, 0.98, 0.95) * 0.30;
const float WRAP = 0.25;
const float SPECULAR = 0.12;
const float SHININESS = 24.0;
const float CAVITY = 0.35;

float soft_lambert(vec3 n, vec3 l) {
    return max((dot(n, l) + WRAP) / (1.0 + WRAP), 0.0);
}

vec3 shade(vec3 n, vec3 v, vec3 albedo) {
    vec3 light = mix(GROUND, SKY, 0.5 + 0.5 * n.y);
    light += KEY_COLOR * soft_lambert(n, KEY_DIR);
    light += FILL_COLOR * soft_lambert(n, FILL_DIR);
    float edge = 1.0 - max(dot(n, v), 0.0);
    light += RIM_COLOR * (edge * edge * edge);
    vec3 h = normalize(KEY_DIR + v);
    float spec = SPECULAR * pow(max(dot(n, h), 0.0), SHININESS) * step(0.0, dot(n, KEY_DIR));
    return sqrt(clamp(albedo * light + KEY_COLOR * spec, 0.0, 1.0));
}

void main() {
    vec4 p = u_view * vec4(in_position, 1.0);
    vec3 n = normalize(mat3(u_view) * in_normal);
    vec3 v = normalize(-p.xyz);
    v_front = shade(n, v, in_color);
    v_back = shade(-n, v, in_color * CAVITY);
    gl_Position = u_proj * p;
}
"""

_FRAGMENT_SHADER = """
#version 330
in vec3 v_front;
in vec3 v_back;
out vec4 f_color;
void main() {
    f_color = vec4(gl_FrontFacing ? v_front : v_back, 1.0);
}
"""

_BACKGROUND_VERTEX_SHADER = """
#version 330
out float v_height;
void main() {
    vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_height = 0.5 * p.y + 0.5;  // 0 at the bottom edge, 1 at the top edge
    gl_Position = vec4(p, 0.0, 1.0);  // one triangle covering the screen
}
"""

_BACKGROUND_FRAGMENT_SHADER = """
#version 330
uniform vec3 u_top;
uniform vec3 u_bottom;
in float v_height;
out vec4 f_color;
void main() {
    f_color = vec4(mix(u_bottom, u_top, clamp(v_height, 0.0, 1.0)), 1.0);
}
"""




def create_context():
    """A standalone headless moderngl context through EGL; :class:`RenderError` with help if none."""
    try:
        import moderngl
    except ImportError as exc:
        raise RenderError(f"rendering needs the 'moderngl' package (pip install moderngl): {exc}") from exc
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl")
    except Exception as exc:  # moderngl/glcontext raise plain Exceptions for a missing libEGL or driver
        raise RenderError(f"headless OpenGL through EGL is unavailable ({exc}); {EGL_HELP}") from exc
    if ctx.version_code < 330:
        version = ctx.info.get("GL_VERSION", ctx.version_code)
        ctx.release()
        raise RenderError(f"OpenGL 3.3 is required, the EGL driver offers {version}; {EGL_HELP}")
    return ctx


def face_incidence(faces: np.ndarray, num_vertices: int):
    """Sparse ``[V, F]`` matrix with a 1 where vertex v is a corner of triangle f (scipy CSR)."""
    import scipy.sparse

    faces = np.asarray(faces).reshape(-1, 3)
    rows = faces.reshape(-1)  # corner k of triangle f sits at row 3f + k
    cols = np.repeat(np.arange(len(faces)), 3)
    return scipy.sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                   shape=(num_vertices, len(faces)))


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised triangle normals ``[F, 3]`` (length = twice the area) of ``[V, 3]`` / ``[F, 3]``."""
    v = np.asarray(vertices, dtype=np.float32)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return np.cross(b - a, c - a)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence=None) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: ``[V, 3]`` float positions.
        faces: ``[F, 3]`` int triangle indices.
        incidence: optional precomputed :func:`face_incidence` (faster for repeated calls).
    Returns:
        ``[V, 3]`` float32 normals; vertices on no (or only degenerate) triangles get zero.
    """
    if incidence is None:
        incidence = face_incidence(faces, len(vertices))
    normals = np.asarray(incidence @ face_normals(vertices, faces), dtype=np.float32)  # sum over corners
    length = np.sqrt(np.einsum("ij,ij->i", normals, normals))[:, None]
    return normals / np.maximum(length, 1e-12)


def is_outward(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether counter-clockwise triangles face outwards (positive volume about the centroid).

    Args:
        vertices: ``[V, 3]``; faces: ``[F, 3]``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    v = v - v.mean(axis=0)
    volume6 = np.einsum("ij,ij->", v[faces[:, 0]], face_normals(v, faces))  # 6 x signed volume
    return float(volume6) >= 0.0


def _as_numpy(array) -> np.ndarray:
    """numpy view of a numpy array or a (possibly autograd, GPU) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    width, height = (size, size) if np.isscalar(size) else size
    width, height = int(width), int(height)
    if width < 1 or height < 1 or width > 8192 or height > 8192:
        raise RenderError(f"image size must be 1..8192 pixels a side, got {size!r}")
    return width, height


class Renderer:
    """Offscreen renderer for one mesh topology.

    Args:
        faces: ``[F, 3]`` int triangle indices.
        vertex_colors: ``[V, 3]`` sRGB colours in 0..1.
        size: image size, an int (square) or ``(width, height)``.
        samples: MSAA samples (0 for none). If the driver cannot do that many, the image is
            rendered at twice the size and averaged down instead. On CPU (llvmpipe) 4x MSAA costs
            about 2-3x the frame time; pass 0 where speed matters more than smooth edges.

    Use as a context manager (or call :meth:`close`) to release the GL resources.
    """

    def __init__(self, faces, vertex_colors, size: int | tuple[int, int] = 512, samples: int = 4) -> None:
        self.faces = _as_numpy(faces).astype(np.int32).reshape(-1, 3)
        colors = _as_numpy(vertex_colors).astype(np.float32)
        if colors.ndim != 2 or colors.shape[1] != 3:
            raise RenderError(f"vertex_colors must be [V, 3], got {colors.shape}")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(colors)):
            raise RenderError("faces index vertices beyond vertex_colors")
        self.num_vertices = len(colors)
        self._incidence = face_incidence(self.faces, self.num_vertices)
        self._outward_sign = 0  # +1: counter-clockwise triangles face outwards, -1: clockwise; 0: unknown yet
        self.width, self.height = _parse_size(size)
        self._ctx = create_context()
        try:
            self._scale = 1 if samples <= self._ctx.max_samples else 2
            self._build(np.clip(colors, 0.0, 1.0), samples if self._scale == 1 else 0)
        except BaseException:
            self.close()
            raise

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def _build(self, colors: np.ndarray, samples: int) -> None:
        """Create the framebuffers, programs, buffers and vertex arrays."""
        ctx = self._ctx
        w, h = self.width * self._scale, self.height * self._scale
        color = ctx.renderbuffer((w, h))
        if samples:  # draw into a multisampled target, resolve into ``_output``
            self._output = ctx.framebuffer(color_attachments=[color])
            self._target = ctx.framebuffer(color_attachments=[ctx.renderbuffer((w, h), samples=samples)],
                                           depth_attachment=ctx.depth_renderbuffer((w, h), samples=samples))
        else:
            self._output = self._target = ctx.framebuffer(color_attachments=[color],
                                                          depth_attachment=ctx.depth_renderbuffer((w, h)))

        self._program = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._background = ctx.program(vertex_shader=_BACKGROUND_VERTEX_SHADER,
                                       fragment_shader=_BACKGROUND_FRAGMENT_SHADER)
        self._background["u_top"].value = BACKGROUND_TOP
        self._background["u_bottom"].value = BACKGROUND_BOTTOM
        self._background_vao = ctx.vertex_array(self._background, [])

        self._positions = ctx.buffer(reserve=self.num_vertices * 3 * 4, dynamic=True)  # [V, 3] f4
        self._normals = ctx.buffer(reserve=self.num_vertices * 3 * 4, dynamic=True)  # [V, 3] f4
        self._colors = ctx.buffer((colors ** 2.0).astype("f4").tobytes())  # sRGB -> linear (gamma 2)
        self._indices = ctx.buffer(self.faces.tobytes())
        self._vao = ctx.vertex_array(
            self._program,
            [(self._positions, "3f", "in_position"), (self._normals, "3f", "in_normal"),
             (self._colors, "3f", "in_color")],
            index_buffer=self._indices, index_element_size=4,
        )

    def render(self, vertices, camera: Camera) -> np.ndarray:
        """Render one frame.

        Args:
            vertices: ``[V, 3]`` positions (numpy or torch).
            camera: a :class:`thunder3d.render.camera.Camera`, e.g. from ``framing``.
        Returns:
            ``[H, W, 3]`` uint8 RGB image, row 0 at the top.
        """
        if self._ctx is None:
            raise RenderError("this Renderer is closed")
        verts = _as_numpy(vertices).astype(np.float32)
        if verts.shape != (self.num_vertices, 3):
            raise RenderError(f"vertices must be [{self.num_vertices}, 3], got {verts.shape}")
        if not np.isfinite(verts).all():
            raise RenderError("vertices contain NaN or infinity")
        with self._ctx:  # make this renderer's context current: several may exist at once
            self._upload(verts)
            self._draw(camera)
            return self._read()

    def _upload(self, verts: np.ndarray) -> None:
        """Write positions and outward normals ``[V, 3]``.

        The winding that faces outwards is found on the first frame (it is a property of the
        topology, fixed for the renderer's lifetime); for clockwise meshes the normals are flipped
        and GL is told that clockwise triangles are the front.
        """
        if self._outward_sign == 0:
            self._outward_sign = 1 if is_outward(verts, self.faces) else -1
            self._ctx.front_face = "ccw" if self._outward_sign > 0 else "cw"
        self._positions.write(verts)
        normals = vertex_normals(verts, self.faces, self._incidence)
        self._normals.write(normals if self._outward_sign > 0 else -normals)

    def _draw(self, camera: Camera) -> None:
        """Background gradient, then the mesh with depth test; resolve MSAA into ``_output``."""
        import moderngl

        ctx, fbo = self._ctx, self._target
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        ctx.disable(moderngl.DEPTH_TEST)
        self._background_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.enable(moderngl.DEPTH_TEST)
        self._program["u_view"].write(camera.view_matrix().T.astype("f4").tobytes())  # GL is column-major
        self._program["u_proj"].write(camera.projection_matrix(self.aspect).T.astype("f4").tobytes())
        self._vao.render(moderngl.TRIANGLES)
        if fbo is not self._output:
            ctx.copy_framebuffer(self._output, fbo)

    def _read(self) -> np.ndarray:
        """``_output`` as ``[H, W, 3]`` uint8, top row first (GL's rows start at the bottom)."""
        s = self._scale
        raw = self._output.read(components=3, alignment=1)
        image = np.frombuffer(raw, dtype=np.uint8).reshape(self.height * s, self.width * s, 3)[::-1]
        if s > 1:  # supersampled: box-filter s x s blocks
            blocks = image.reshape(self.height, s, self.width, s, 3).astype(np.float32)
            return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)
        return np.ascontiguousarray(image)

    def close(self) -> None:
        """Release every GL resource and the context (idempotent)."""
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.release()  # releases all objects created in this context
        self._ctx = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
