"""ANME: average normalised mean error of the aligned landmarks (docs/design.md §1).

    ANME = 1/(N|S|) Σ_s Σ_i ‖y_i^s − ȳ^s‖₂ / d

y_i^s is landmark s of face i *after* the deformation (in the aligned frame), ȳ^s its mean
over the faces, and d the mean inter-pupil distance of the deformed faces (pupil = mean of
an eye's contour, :meth:`LandmarkSchema.eye_centres`). Lower means stronger alignment:
0 when every face lands exactly on one template. It is invariant to a common
scale/rotation/translation of all faces, so any consistent frame (pixels or normalised) works.
For an STN, y = f⁻¹(x); points (or whole faces) whose inverse failed are left out with
``valid`` (the caller reports how many): each landmark's mean and spread then use the faces
where that landmark is valid, and d the faces whose eye contours are valid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from balanced_align.core.schema import LandmarkSchema, get_schema
from balanced_align.evaluation._inputs import as_tensor


class UndefinedANMEError(ValueError):
    """ANME has no value for these inputs: no valid face, no face with valid eye landmarks,
    or a mean inter-pupil distance of 0 (every face collapsed to a point)."""


def _prepare(aligned_landmarks, schema, valid) -> tuple[Tensor, Tensor, LandmarkSchema]:
    """(N, S, 2) float64 landmarks, an (N, S) bool mask and the schema."""
    schema = get_schema(schema)
    y = as_tensor(aligned_landmarks, "aligned_landmarks")
    if y.ndim != 3:
        raise ValueError(f"aligned_landmarks: expected shape (N, S, 2), got {tuple(y.shape)}")
    # float64 for the sums; MPS has no float64, fall back to float32 there
    y = y.to(torch.float32 if y.device.type == "mps" else torch.float64)
    if valid is None:
        mask = torch.ones(y.shape[:2], dtype=torch.bool, device=y.device)
    else:
        mask = as_tensor(valid, "valid").to(y.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"valid: expected a boolean mask, got {mask.dtype}")
        if mask.shape == y.shape[:1]:
            mask = mask[:, None].expand(y.shape[:2])
        if mask.shape != y.shape[:2]:
            raise ValueError(
                f"valid: expected shape ({y.shape[0]},) or {tuple(y.shape[:2])}, "
                f"got {tuple(mask.shape)}"
            )
    keep = mask.any(dim=1)
    y, mask = y[keep], mask[keep]
    if y.shape[0] == 0:
        raise UndefinedANMEError("aligned_landmarks: no (valid) faces to measure")
    schema.check(torch.where(mask[..., None], y, torch.zeros_like(y)), "aligned_landmarks")
    return y, mask, schema


def anme_per_landmark(aligned_landmarks, schema, valid=None) -> Tensor:
    """Per-landmark ANME term (1/N_s) Σ_i ‖y_i^s − ȳ^s‖₂ / d.

    Args:
        aligned_landmarks: (N, S, 2) deformed landmarks (tensor or array), any consistent frame.
        schema: :class:`LandmarkSchema` or its name; S must match.
        valid: optional (N,) or (N, S) bool, False for faces or points to leave out (e.g.
            failed inverse warps). N_s counts the faces where landmark s is valid.

    Returns:
        (S,) float64 tensor (float32 on MPS) on the input's device; its mean is the ANME
        (NaN for a landmark that is valid nowhere).
    """
    y, mask, schema = _prepare(aligned_landmarks, schema, valid)
    eyes = list(schema.left_eye) + list(schema.right_eye)
    eyes_ok = mask[:, eyes].all(dim=1)
    if not bool(eyes_ok.any()):
        raise UndefinedANMEError(
            "aligned_landmarks: no face has valid eye landmarks, ANME is undefined"
        )
    d = schema.interocular(y[eyes_ok]).mean()
    if not bool(d > 0):
        raise UndefinedANMEError(
            "aligned_landmarks: mean inter-pupil distance is 0, ANME is undefined"
        )
    weight = mask.to(y.dtype)
    count = weight.sum(0)  # (S,)
    y = torch.where(mask[..., None], y, torch.zeros_like(y))
    mean = y.sum(0) / count.clamp_min(1)[:, None]  # (S, 2)
    spread = (y - mean).norm(dim=-1) * weight  # (N, S)
    per_landmark = spread.sum(0) / count / d
    return torch.where(count > 0, per_landmark, torch.full_like(per_landmark, float("nan")))


def anme(aligned_landmarks, schema, valid=None) -> float:
    """ANME of (N, S, 2) deformed landmarks; see :func:`anme_per_landmark`."""
    return float(anme_per_landmark(aligned_landmarks, schema, valid).nanmean())
