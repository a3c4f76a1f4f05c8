"""Surfaces that close the skin's slits: lips rolled into a mouth bag, lids rolled into the sockets.

Each is a tube of rings hanging from a slit's boundary loop and closed by a fan, so the skin stays
one closed surface. Ring vertices are tagged with the ring number (1 = first ring behind the loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thunder3d.rigs._head import layout as L

TEETH_FRONT_BEHIND_LIPS = 1.0  # upper incisors' front face, cm behind the lips' meeting line
ARCH_CURVE = 0.5  # dental arch depth z = front - ARCH_CURVE * x^2


@dataclass
class Pocket:
    """Rings hanging from a slit loop of N vertices, closed by a cap vertex.

    Attributes:
        verts: ``[K * N + 1, 3]`` ring vertices (ring-major) then the cap vertex.
        ring: ``[K * N + 1]`` ring number of each vertex (1..K; the cap gets K + 1).
        side: ``[K * N + 1]`` +1 upper half, -1 lower half, 0 at the ends of the loop and the cap.
    """

    verts: np.ndarray
    ring: np.ndarray
    side: np.ndarray

    @property
    def num_rings(self) -> int:
        return int(self.ring.max()) - 1


def _pocket(rings: list[np.ndarray], cap: np.ndarray, side: np.ndarray) -> Pocket:
    k, n = len(rings), side.size
    return Pocket(np.concatenate(rings + [cap[None]]),
                  np.concatenate([np.repeat(np.arange(1.0, k + 1), n), [k + 1.0]]),
                  np.concatenate([np.tile(side, k), [0.0]]))


def tube_faces(loop: np.ndarray, num_rings: int, first: int) -> np.ndarray:
    """Triangles ``[F, 3]`` joining ``loop`` to ``num_rings`` new rings and a cap vertex.

    New vertices are numbered from ``first`` (ring-major, cap last). ``loop`` is traversed in the
    direction the surrounding skin already uses, so the tube takes its edges the other way round.
    """
    n = loop.size
    rings = [loop] + [first + k * n + np.arange(n) for k in range(num_rings)]
    faces = []
    for a, b in zip(rings[:-1], rings[1:]):
        a1, b1 = np.roll(a, -1), np.roll(b, -1)
        faces += [np.stack([a, b, a1], 1), np.stack([b, b1, a1], 1)]
    cap = first + num_rings * n
    last = rings[-1]
    faces.append(np.stack([np.roll(last, -1), last, np.full(n, cap)], 1))
    return np.concatenate(faces)


def _loop_sides(n_upper: int) -> np.ndarray:
    """Side ``[2 n_upper - 2]`` of each loop vertex: corners 0, upper run +1, lower run -1."""
    side = np.concatenate([np.ones(n_upper), -np.ones(n_upper - 2)])
    side[0] = side[n_upper - 1] = 0.0
    return side


def mouth_bag(loop_pos: np.ndarray, n_upper: int) -> Pocket:
    """The inner lips and the mouth cavity behind the mouth slit.

    Rings 1-2 are the inner lip surfaces (touching at rest, then parting), ring 3 the vestibule in
    front of the teeth, 4 runs over the gums, 5 is palate / floor of the mouth inside the dental
    arch, 6 the throat; a cap closes it.

    Args:
        loop_pos: ``[N, 3]`` positions of the slit loop (upper run first, see ``Slit.loop``).
        n_upper: length of the upper run (corners included).
    """
    side = _loop_sides(n_upper)
    x = loop_pos[:, 0]
    z_lips = loop_pos[n_upper // 2, 2]  # the meeting line in the middle
    t = np.clip(x / np.abs(x).max(), -1.0, 1.0)
    arc = side * np.sqrt(1.0 - t**2)  # +-sin of the angle round the loop; 0 at the corners
    rings = [
        loop_pos * [0.97, 1, 1] + [0, 0, -0.35],
        loop_pos * [0.95, 1, 1] + np.stack([0 * x, 0.45 * arc, np.full_like(x, -0.75)], 1),
    ]
    z_front = z_lips - TEETH_FRONT_BEHIND_LIPS
    for half_width, height, power, z0, curve in (
        (L.MOUTH_HALF_WIDTH + 0.35, 1.9, 0.4, z_front + 0.12, ARCH_CURVE),
        (3.1, 2.2, 0.3, z_front - 0.6, ARCH_CURVE),
        (2.0, 1.9, 0.5, z_front - 2.2, ARCH_CURVE),
        (1.5, 1.3, 1.0, z_front - 4.5, 0.0),
    ):
        rx = half_width * t
        ry = L.MOUTH_Y + height * np.sign(arc) * np.abs(arc) ** power
        rings.append(np.stack([rx, ry, z0 - curve * rx**2], 1))
    return _pocket(rings, np.array([0.0, L.MOUTH_Y, z_front - 5.0]), side)


def lid_pocket(loop_pos: np.ndarray, n_upper: int, center: np.ndarray) -> Pocket:
    """Rings rolling the lid margins onto the eyeball and into the socket.

    Ring 1 lies just off the eyeball under the lid margin; ring 2 folds back behind the visible
    ball (hidden inside it); the cap is the eyeball centre ``[3]``.
    """
    side = _loop_sides(n_upper)
    rel = loop_pos - center
    unit = rel / np.linalg.norm(rel, axis=1, keepdims=True)
    ring1 = center + unit * (L.EYE_RADIUS + 0.02)
    # fold away from the fissure: rotate about the eye's x axis by 25 degrees, up or down
    ang = np.radians(25.0) * side
    cy, sy = np.cos(ang), np.sin(ang)
    u2 = np.stack([unit[:, 0], cy * unit[:, 1] + sy * unit[:, 2], -sy * unit[:, 1] + cy * unit[:, 2]], 1)
    ring2 = center + u2 * (L.EYE_RADIUS - 0.1)
    return _pocket([ring1, ring2], center, side)
