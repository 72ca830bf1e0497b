"""Pure tensor geometry: coordinate frames, warp families (TPS, projective, affine), estimation.

Every family maps aligned -> source in normalised coordinates (docs/design.md §2) and runs in
float32 (or float64 when given float64) even under autocast.
"""

from .base import InversePoints, TransformFamily, expand_points, sample
from .coords import normalized_meshgrid, normalized_to_pixel, pixel_to_normalized
from .estimate import apply_affine, estimate_affine, estimate_similarity
from .precision import full_precision
from .projective import Affine, Projective
from .tps import ThinPlateSpline, regular_grid, tps_kernel

FAMILIES = ("affine", "projective", "tps")


def build_family(name: str, grid_size: int = 8) -> TransformFamily:
    """Make a warp family by name: ``affine``, ``projective`` or ``tps`` (with ``grid_size``)."""
    if name == "affine":
        return Affine()
    if name == "projective":
        return Projective()
    if name == "tps":
        return ThinPlateSpline(grid_size)
    raise ValueError(f"unknown transform family '{name}'; choose one of {FAMILIES}")


__all__ = [
    "FAMILIES",
    "Affine",
    "InversePoints",
    "Projective",
    "ThinPlateSpline",
    "TransformFamily",
    "apply_affine",
    "build_family",
    "estimate_affine",
    "estimate_similarity",
    "expand_points",
    "full_precision",
    "normalized_meshgrid",
    "normalized_to_pixel",
    "pixel_to_normalized",
    "regular_grid",
    "sample",
    "tps_kernel",
]
