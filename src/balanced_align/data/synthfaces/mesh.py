"""The fixed, mirror-symmetric triangulation of the SynthFaces head surface.

The surface is triangulated once in the texture layout (the cylindrical unwrap of
:func:`~.shape.layout_vertices`): a Delaunay triangulation of the left half and the midline,
mirrored to the right half, so the mesh is exactly symmetric under ``VERTEX_FLIP``. Every
triangle is ordered counter-clockwise in the (u, v) layout with u to the right and v down
(positive cross product), so a triangle faces the camera iff its projected image triangle
(x right, y down) has a positive cross product too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

from .shape import (
    LEFT_EYE,
    MOUTH_INNER,
    MOUTH_OUTER,
    NUM_VERTICES,
    RIGHT_EYE,
    VERTEX_FLIP,
    layout_vertices,
    unwrap,
)


def signed_area2(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle: (..., V, 2), (T, 3) -> (..., T)."""
    a, b, c = (points[..., triangles[:, k], :] for k in range(3))
    ab, ac = b - a, c - a
    return ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0]


def _closed_loop_edges(indices) -> list[tuple[int, int]]:
    return [(indices[i], indices[(i + 1) % len(indices)]) for i in range(len(indices))]


#: Edges the triangulation must contain so that eye and lip outlines follow the landmarks.
REQUIRED_EDGES = tuple(
    _closed_loop_edges(LEFT_EYE)
    + _closed_loop_edges(RIGHT_EYE)
    + _closed_loop_edges(MOUTH_OUTER)
    + _closed_loop_edges(MOUTH_INNER)
)


@dataclass(frozen=True)
class Mesh:
    """triangles: (T, 3) vertex indices, CCW in the layout.
    incidence: (V, T) 0/1 matrix, vertex v belongs to triangle t (for vertex normals).
    """

    triangles: np.ndarray
    incidence: np.ndarray

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    def edges(self) -> set[tuple[int, int]]:
        """Undirected edges as sorted index pairs."""
        out = set()
        for t in self.triangles:
            for k in range(3):
                a, b = int(t[k]), int(t[(k + 1) % 3])
                out.add((min(a, b), max(a, b)))
        return out


@functools.cache
def face_mesh() -> Mesh:
    """The head mesh (cached)."""
    vertices = layout_vertices()
    uv = unwrap(vertices)
    half = np.flatnonzero(vertices[:, 0] <= 1e-9)
    local = Delaunay(uv[half]).simplices
    tri = half[local]
    area = signed_area2(uv, tri)
    keep = np.abs(area) > 1e-6
    tri, area = tri[keep], area[keep]
    tri[area < 0] = tri[area < 0][:, [0, 2, 1]]
    mirrored = VERTEX_FLIP[tri][:, [0, 2, 1]]  # mirroring reverses orientation
    triangles = np.concatenate([tri, mirrored], 0).astype(np.int64)
    triangles.setflags(write=False)
    incidence = np.zeros((NUM_VERTICES, len(triangles)), np.float32)
    for k in range(3):
        incidence[triangles[:, k], np.arange(len(triangles))] = 1.0
    incidence.setflags(write=False)
    return Mesh(triangles=triangles, incidence=incidence)


def missing_required_edges(mesh: Mesh) -> list[tuple[int, int]]:
    """Required outline edges absent from the mesh (should be empty)."""
    edges = mesh.edges()
    return [e for e in REQUIRED_EDGES if (min(e), max(e)) not in edges]
