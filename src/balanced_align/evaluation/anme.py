"""ANME: average normalised mean error of the aligned landmarks (DESIGN §1).

    ANME = 1/(N|S|) Σ_s Σ_i ‖y_i^s − ȳ^s‖₂ / d

y_i^s is landmark s of face i *after* the deformation (in the aligned frame), ȳ^s its mean
over the faces, and d the mean inter-pupil distance of the deformed faces (pupil = mean of
an eye's contour, :meth:`LandmarkSchema.eye_centres`). Lower means stronger alignment:
0 when every face lands exactly on one template. It is invariant to a common
scale/rotation/translation of all faces, so any consistent frame (pixels or normalised) works.
For an STN, y = f⁻¹(x); faces whose inverse failed can be dropped with ``valid`` (the caller
reports how many).
"""

from __future__ import annotations

import torch
from torch import Tensor

from balanced_align.data.schema import LandmarkSchema, get_schema
from balanced_align.evaluation._inputs import as_tensor, vector


def _prepare(aligned_landmarks, schema, valid) -> tuple[Tensor, LandmarkSchema]:
    schema = get_schema(schema)
    y = as_tensor(aligned_landmarks, "aligned_landmarks")
    if y.ndim != 3:
        raise ValueError(f"aligned_landmarks: expected shape (N, S, 2), got {tuple(y.shape)}")
    if valid is not None:
        mask = vector(valid, "valid", y.shape[0], y.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"valid: expected a boolean mask, got {mask.dtype}")
        y = y[mask]
    if y.shape[0] == 0:
        raise ValueError("aligned_landmarks: no (valid) faces to measure")
    # float64 for the sums; MPS has no float64, fall back to float32 there
    y = y.to(torch.float32 if y.device.type == "mps" else torch.float64)
    schema.check(y, "aligned_landmarks")
    return y, schema


def anme_per_landmark(aligned_landmarks, schema, valid=None) -> Tensor:
    """Per-landmark ANME term (1/N) Σ_i ‖y_i^s − ȳ^s‖₂ / d.

    Args:
        aligned_landmarks: (N, S, 2) deformed landmarks (tensor or array), any consistent frame.
        schema: :class:`LandmarkSchema` or its name; S must match.
        valid: optional (N,) bool, False for faces to leave out (e.g. failed inverse warps).

    Returns:
        (S,) float64 tensor (float32 on MPS) on the input's device; its mean is the ANME.
    """
    y, schema = _prepare(aligned_landmarks, schema, valid)
    d = schema.interocular(y).mean()
    if not bool(d > 0):
        raise ValueError("aligned_landmarks: mean inter-pupil distance is 0, ANME is undefined")
    spread = (y - y.mean(0, keepdim=True)).norm(dim=-1)  # (N, S)
    return spread.mean(0) / d


def anme(aligned_landmarks, schema, valid=None) -> float:
    """ANME of (N, S, 2) deformed landmarks; see :func:`anme_per_landmark`."""
    return float(anme_per_landmark(aligned_landmarks, schema, valid).mean())
