"""Alignment computed from each image's own landmarks: the preprocessing baselines (paper §3).

* ``affine2d``: the similarity that best maps the template's five points (eye centres, nose
  tip, mouth corners) onto the image's five points, by least squares;
* ``fullalign``: the thin-plate spline with kernels at the template's points that maps every
  template point exactly onto the image's landmark (so every face lands on the template).

Like the STN, each warp maps aligned → source in normalised coordinates, so the same module
aligns the input image (``location="input"``) or the stage-0 feature map (``"fmap"``). Nothing
is learned; the template is fixed (T_fix, e.g. the mean landmarks of frontal training faces).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from balanced_align.core.schema import LandmarkSchema, get_schema
from balanced_align.geometry import Affine, ThinPlateSpline, estimate_similarity
from balanced_align.geometry.base import TransformFamily
from balanced_align.models.stn import warp_tensor

LANDMARK_METHODS = ("affine2d", "fullalign")


class LandmarkAligner(nn.Module):
    """Landmark-driven warp (no LocNet).

    Args:
        method: "affine2d" | "fullalign".
        template: (S, 2) template in normalised aligned-frame coordinates.
        schema: landmark schema of the template and the landmarks (for the five points).
        padding_mode: ``grid_sample`` padding.

    ``predict_params(landmarks (B, S, 2) normalised source frame) -> params`` of ``family``:
    (B, 2, 3) for affine2d, (B, S, 2) for fullalign (the landmarks themselves: the TPS sends
    template point s to landmark s).
    """

    def __init__(
        self,
        method: str,
        template: Tensor,
        schema: str | LandmarkSchema = "lmk84",
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if method not in LANDMARK_METHODS:
            raise ValueError(f"method must be one of {LANDMARK_METHODS}, got {method!r}")
        self.method = method
        self.schema = get_schema(schema)
        self.padding_mode = padding_mode
        template = torch.as_tensor(template, dtype=torch.float32)
        self.schema.check(template, "template")
        self.register_buffer("template", template.clone())
        self.family: TransformFamily = self._make_family(template)

    def _make_family(self, template: Tensor) -> TransformFamily:
        if self.method == "affine2d":
            return Affine()
        return ThinPlateSpline(control_points=template)

    @torch.no_grad()
    def set_template(self, template: Tensor) -> None:
        """Replace the template (S, 2) (FullAlign rebuilds its spline around it)."""
        template = torch.as_tensor(template, dtype=torch.float32).to(self.template.device)
        self.schema.check(template, "template")
        self.template.copy_(template)
        self.family = self._make_family(template.cpu()).to(self.template.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # the spline's control points are derived (non-persistent): rebuild them around the
        # loaded template, or a restored FullAlign would keep the constructor's template
        if prefix + "template" in state_dict:
            template = self.template.detach()
            self.family = self._make_family(template.cpu()).to(template.device)

    def predict_params(self, landmarks: Tensor) -> Tensor:
        """Warp parameters from the ground-truth landmarks (B, S, 2) of each image."""
        self.schema.check(landmarks, "landmarks")
        landmarks = landmarks.float()
        if self.method == "affine2d":
            five_template = self.schema.five_points(self.template)
            five = self.schema.five_points(landmarks)
            return estimate_similarity(five_template, five)
        return landmarks

    def warp(self, target: Tensor, params: Tensor) -> Tensor:
        """Warp ``target`` (B, C, h, w) with ``params``; keeps the target's dtype."""
        return warp_tensor(self.family, params, target, self.padding_mode).to(target.dtype)
