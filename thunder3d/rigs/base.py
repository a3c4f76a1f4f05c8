"""The common face-rig interface: per-frame coefficients in, vertices out, differentiably.

Every rig is a ``torch.nn.Module`` whose fixed tables (neutral mesh, blendshape deltas, faces,
region indices) are buffers, so ``rig.to(device)`` moves everything and autograd flows from the
vertices back to the coefficients. Coordinates: +y up, +z out of the face (towards a viewer),
+x towards the subject's left. ``units`` states the length unit of the vertices.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from thunder3d.errors import RigError

REQUIRED_REGIONS = ("lips", "mouth", "face", "upper_face", "eyes")
"""Regions every rig names. ``mouth`` is the lips plus the skin around them (the ``mouth2s`` input)."""

LIP_LANDMARKS = ("upper_inner", "lower_inner", "left_corner", "right_corner")
"""Single vertices on the inner lip contour: upper/lower midpoints and the two mouth corners."""

MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "m": 1000.0}

SKIN_COLOR = (0.86, 0.66, 0.55)


class Rig(nn.Module):
    """Base class: coefficients ``[..., T, C]`` -> vertices ``[..., T, V, 3]``.

    Subclasses implement :meth:`forward`. The constructor registers the shared tables.

    Args:
        name: short rig family name (``builtin``, ``ict``, ``flame``, ``blendshapes``).
        spec: the ``load_rig`` spec that rebuilds this rig (stored in checkpoints).
        coeff_names: names of the C coefficients, in layout order.
        neutral: ``[V, 3]`` rest-pose vertices.
        faces: ``[F, 3]`` triangle vertex indices.
        regions: name -> vertex indices; must contain :data:`REQUIRED_REGIONS`.
        lip_landmarks: name -> one vertex index; must contain :data:`LIP_LANDMARKS`.
        units: ``"cm"``, ``"m"`` or ``"mm"``.
        vertex_colors: optional ``[V, 3]`` RGB in 0..1 for rendering (skin, lips, teeth, eyes).
        num_shape: number of identity coefficients accepted by ``forward(shape=...)`` (0 if none).
    """

    def __init__(
        self,
        *,
        name: str,
        spec: str,
        coeff_names: Sequence[str],
        neutral: Tensor,
        faces: Tensor,
        regions: Mapping[str, Sequence[int] | Tensor],
        lip_landmarks: Mapping[str, int],
        units: str,
        vertex_colors: Tensor | None = None,
        num_shape: int = 0,
    ) -> None:
        super().__init__()
        if units not in MM_PER_UNIT:
            raise RigError(f"unknown units {units!r}; valid: {sorted(MM_PER_UNIT)}")
        missing = [r for r in REQUIRED_REGIONS if r not in regions]
        if missing:
            raise RigError(f"rig {name!r} lacks required regions {missing}")
        missing = [k for k in LIP_LANDMARKS if k not in lip_landmarks]
        if missing:
            raise RigError(f"rig {name!r} lacks lip landmarks {missing}")
        neutral = torch.as_tensor(neutral, dtype=torch.float32)
        if neutral.ndim != 2 or neutral.shape[1] != 3:
            raise RigError(f"neutral must be [V, 3], got {tuple(neutral.shape)}")
        faces = torch.as_tensor(faces, dtype=torch.long)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise RigError(f"faces must be [F, 3] triangles, got {tuple(faces.shape)}")
        num_vertices = neutral.shape[0]
        if faces.numel() and (faces.min() < 0 or faces.max() >= num_vertices):
            raise RigError("faces index vertices out of range")

        self.name = name
        self.spec = spec
        self.options: dict = {}  # loader keyword arguments, set by load_rig (see config())
        self.units = units
        self.coeff_names: tuple[str, ...] = tuple(coeff_names)
        self.num_shape = int(num_shape)
        self._coeff_index = {n: i for i, n in enumerate(self.coeff_names)}
        if len(self._coeff_index) != len(self.coeff_names):
            raise RigError(f"rig {name!r} has duplicate coefficient names")

        self.register_buffer("neutral", neutral, persistent=False)
        self.register_buffer("faces", faces, persistent=False)
        if vertex_colors is None:
            vertex_colors = torch.tensor(SKIN_COLOR).expand(num_vertices, 3).clone()
        self.register_buffer("vertex_colors", torch.as_tensor(vertex_colors, dtype=torch.float32),
                             persistent=False)
        self._region_names: tuple[str, ...] = tuple(regions)
        for region, idx in regions.items():
            idx = torch.as_tensor(idx, dtype=torch.long).flatten()
            if idx.numel() == 0 or idx.min() < 0 or idx.max() >= num_vertices:
                raise RigError(f"region {region!r} is empty or out of range")
            self.register_buffer(f"region_{region}", idx, persistent=False)
        self.lip_landmarks: dict[str, int] = {k: int(v) for k, v in lip_landmarks.items()}
        for k, v in self.lip_landmarks.items():
            if not 0 <= v < num_vertices:
                raise RigError(f"lip landmark {k!r} out of range")

    # ----------------------------------------------------------------- sizes and names
    @property
    def num_coeffs(self) -> int:
        return len(self.coeff_names)

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def mm_per_unit(self) -> float:
        """Multiply vertex coordinates by this to get millimetres."""
        return MM_PER_UNIT[self.units]

    @property
    def region_names(self) -> tuple[str, ...]:
        return self._region_names

    def region(self, name: str) -> Tensor:
        """Vertex indices ``[R]`` of a named region (``lips``, ``mouth``, ``face``, ...)."""
        if name not in self._region_names:
            raise RigError(f"rig {self.name!r} has no region {name!r}; valid: {list(self._region_names)}")
        return getattr(self, f"region_{name}")

    def coeff_index(self, name: str) -> int:
        if name not in self._coeff_index:
            raise RigError(f"rig {self.name!r} has no coefficient {name!r}; valid: {list(self.coeff_names)}")
        return self._coeff_index[name]

    def coeffs(self, values: Mapping[str, float] | str | Sequence[str] | None = None, frames: int = 1) -> Tensor:
        """A coefficient tensor ``[frames, C]`` with the named values set and the rest zero.

        ``values``: ``{name: value}``, or text such as ``"jawOpen=1,mouthSmileLeft=0.5"`` (a bare name
        means 1; a list of such strings too).
        """
        if isinstance(values, str) or (isinstance(values, Sequence) and not isinstance(values, Mapping)):
            values = parse_values([values] if isinstance(values, str) else list(values))
        out = torch.zeros(frames, self.num_coeffs, device=self.neutral.device)
        for key, value in (values or {}).items():
            out[:, self.coeff_index(key)] = float(value)
        return out

    # ----------------------------------------------------------------- evaluation
    def forward(self, coeffs: Tensor, shape: Tensor | None = None) -> Tensor:
        """Vertices ``[..., T, V, 3]`` for coefficients ``[..., T, C]``.

        ``shape`` (identity coefficients ``[..., S]``, one per sequence) is accepted by rigs with
        ``num_shape > 0``.
        """
        raise NotImplementedError

    def check_coeffs(self, coeffs: Tensor) -> None:
        """Raise a clear error if ``coeffs`` does not end in this rig's coefficient dimension."""
        if coeffs.ndim < 1 or coeffs.shape[-1] != self.num_coeffs:
            raise RigError(
                f"rig {self.name!r} takes {self.num_coeffs} coefficients per frame, "
                f"got tensor of shape {tuple(coeffs.shape)}"
            )

    def check_shape(self, shape: Tensor | None) -> None:
        if shape is None:
            return
        if self.num_shape == 0:
            raise RigError(f"rig {self.name!r} has no identity shape space")
        if shape.shape[-1] > self.num_shape:
            raise RigError(f"rig {self.name!r} takes at most {self.num_shape} shape coefficients, "
                           f"got {shape.shape[-1]}")

    # ----------------------------------------------------------------- lip measurements
    def lip_aperture(self, vertices: Tensor) -> Tensor:
        """Inner-lip opening ``[...]`` (distance of the inner lip midpoints, rig units) of ``[..., V, 3]``."""
        up = vertices[..., self.lip_landmarks["upper_inner"], :]
        lo = vertices[..., self.lip_landmarks["lower_inner"], :]
        return (up - lo).norm(dim=-1)

    def lip_width(self, vertices: Tensor) -> Tensor:
        """Mouth-corner distance ``[...]`` (rig units) of ``[..., V, 3]``."""
        le = vertices[..., self.lip_landmarks["left_corner"], :]
        ri = vertices[..., self.lip_landmarks["right_corner"], :]
        return (le - ri).norm(dim=-1)

    def config(self) -> dict:
        """What rebuilds this rig: ``load_rig(rig.config())`` (stored in checkpoints)."""
        return {"spec": self.spec, "options": dict(self.options)}

    def describe(self) -> dict:
        """A JSON-able summary (``thunder3d rig info``)."""
        return {
            "name": self.name,
            "spec": self.spec,
            "units": self.units,
            "vertices": self.num_vertices,
            "triangles": int(self.faces.shape[0]),
            "coefficients": self.num_coeffs,
            "coeff_names": list(self.coeff_names),
            "shape_coefficients": self.num_shape,
            "regions": {r: int(self.region(r).numel()) for r in self.region_names},
            "lip_landmarks": dict(self.lip_landmarks),
        }

    def summary(self) -> str:
        """:meth:`describe` as text, for people (``thunder3d rig info``)."""
        info = self.describe()
        lines = [f"rig          {info['name']}  ({info['spec']})", f"units        {info['units']}",
                 f"vertices     {info['vertices']}", f"triangles    {info['triangles']}",
                 f"shape coeffs {info['shape_coefficients']}", f"coefficients {info['coefficients']}:"]
        names = info["coeff_names"]
        lines += ["  " + "".join(f"{n:<22}" for n in names[i:i + 4]) for i in range(0, len(names), 4)]
        lines += ["regions:"] + [f"  {name:<12} {size} vertices" for name, size in info["regions"].items()]
        lines.append("lip landmarks: " + ", ".join(f"{k}={v}" for k, v in info["lip_landmarks"].items()))
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, vertices={self.num_vertices}, coeffs={self.num_coeffs}, "
                f"units={self.units!r}")


def parse_values(items: Sequence[str]) -> dict[str, float]:
    """``["a=1", "b=0.5,c"]`` -> ``{"a": 1.0, "b": 0.5, "c": 1.0}`` (bare names mean 1)."""
    values: dict[str, float] = {}
    for part in (part.strip() for item in items for part in str(item).split(",")):
        name, sep, value = part.partition("=")
        try:
            if name.strip():
                values[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise RigError(f"coefficient value {part!r}: expected NAME=NUMBER") from None
    return values


def blend_shapes(coeffs: Tensor, deltas: Tensor) -> Tensor:
    """Linear blendshape offsets.

    Args:
        coeffs: ``[..., C]`` weights.
        deltas: ``[C, V, 3]`` per-shape vertex offsets.
    Returns:
        ``[..., V, 3]`` summed offsets.
    """
    C, V, _ = deltas.shape
    flat = coeffs.reshape(-1, C) @ deltas.reshape(C, V * 3)  # [N, V*3], one matmul for all frames
    return flat.reshape(*coeffs.shape[:-1], V, 3)


def affine_blend(base: Tensor, coeffs: Tensor, deltas: Tensor) -> Tensor:
    """``base + coeffs · deltas`` as one fused multiply-add (a single pass over the output).

    Args:
        base: ``[V, 3]`` rest vertices, shared by every frame.
        coeffs: ``[..., C]`` weights.
        deltas: ``[C, V, 3]`` per-shape offsets.
    Returns:
        ``[..., V, 3]`` vertices.
    """
    C, V, _ = deltas.shape
    flat = torch.addmm(base.reshape(V * 3), coeffs.reshape(-1, C), deltas.reshape(C, V * 3))
    return flat.reshape(*coeffs.shape[:-1], V, 3)  # [N, V*3] -> [..., V, 3]


class LinearBlendshapeRig(Rig):
    """A rig that is a neutral mesh plus a weighted sum of blendshape deltas.

    Used by the built-in head, ICT-FaceKit and users' blendshape sets.

    Args:
        deltas: ``[C, V, 3]`` offsets from neutral, one per coefficient.
        identity: optional ``[S, V, 3]`` identity basis (``forward(shape=[..., S])``).
        **kwargs: see :class:`Rig`.
    """

    def __init__(self, *, deltas: Tensor, identity: Tensor | None = None, **kwargs) -> None:
        num_shape = 0 if identity is None else int(identity.shape[0])
        super().__init__(num_shape=num_shape, **kwargs)
        deltas = torch.as_tensor(deltas, dtype=torch.float32)
        if deltas.shape != (self.num_coeffs, self.num_vertices, 3):
            raise RigError(f"deltas must be [{self.num_coeffs}, {self.num_vertices}, 3], "
                           f"got {tuple(deltas.shape)}")
        self.register_buffer("deltas", deltas, persistent=False)
        if identity is not None:
            identity = torch.as_tensor(identity, dtype=torch.float32)
            if identity.shape[1:] != (self.num_vertices, 3):
                raise RigError(f"identity basis must be [S, {self.num_vertices}, 3]")
            self.register_buffer("identity", identity, persistent=False)
        else:
            self.identity = None

    def forward(self, coeffs: Tensor, shape: Tensor | None = None) -> Tensor:
        """Vertices ``[..., T, V, 3]`` = neutral + coeffs · deltas (+ shape · identity)."""
        self.check_coeffs(coeffs)
        self.check_shape(shape)
        if shape is None or shape.ndim == 1:  # one identity for every sequence: fold it into the base
            base = self.neutral
            if shape is not None:
                base = base + blend_shapes(shape, self.identity[: shape.shape[-1]])
            # the output is large (250 frames of ICT: 74 MB); one fused pass instead of two
            return affine_blend(base, coeffs, self.deltas)
        verts = self.neutral + blend_shapes(coeffs, self.deltas)  # [..., T, V, 3]
        basis = self.identity[: shape.shape[-1]]
        return verts + blend_shapes(shape, basis).unsqueeze(-3)  # [..., 1, V, 3] broadcast over T
