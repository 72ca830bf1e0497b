"""The recognizer that places the STN at the input image or at the stage-0 feature map.

- ``location="input"`` (align@input): warp the image, then run the whole backbone.
- ``location="fmap"`` (align@fmap, the paper's choice): run stage 0, warp its feature map
  (same resolution as the input), then run stages 1–4.
- ``location="none"`` or ``family=None``: a plain recognizer.

Instead of an STN, a :class:`~balanced_align.models.landmark_aligner.LandmarkAligner` (the
Affine2D / FullAlign baselines) can compute the warp from each image's landmarks, passed to
``forward(images, landmarks)``; it is placed at the input or the feature map the same way.

The LocNet always sees the input image. Warp parameters are returned so the alignment loss can
evaluate f_i(T) for the template T (aligned frame) against the landmarks (source frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from balanced_align.geometry.base import TransformFamily
from balanced_align.models.stn import SpatialTransformer

LOCATIONS = ("input", "fmap", "none")


@dataclass
class RecognizerOutput:
    """Output of :class:`AlignedRecognizer`.

    embedding: (B, D) face embedding (not normalised).
    params: (B, *param_shape) float32 warp parameters (aligned → source), or None without STN.
    family: the transform family that interprets ``params``, or None.
    """

    embedding: Tensor
    params: Tensor | None
    family: TransformFamily | None


class AlignedRecognizer(nn.Module):
    """Backbone with an optional spatial transformer.

    Args:
        backbone: a module with ``stem(images) -> fmap``, ``body(fmap) -> embedding`` and
            ``input_size`` (H, W), e.g. :class:`~balanced_align.models.iresnet.IResNet`.
        family: transform family of the STN, or None for a plain recognizer.
        location: "fmap" | "input" | "none".
        locnet_input_size, locnet_width, padding_mode: see :class:`SpatialTransformer`.

    ``forward(images (B, 3, H, W)) -> RecognizerOutput``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        family: TransformFamily | None = None,
        location: str = "fmap",
        locnet_input_size: int | Sequence[int] = 64,
        locnet_width: float = 1.0,
        padding_mode: str = "zeros",
        aligner: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if location not in LOCATIONS:
            raise ValueError(f"location must be one of {LOCATIONS}, got {location!r}")
        for attr in ("stem", "body", "input_size"):
            if not hasattr(backbone, attr):
                raise TypeError(
                    f"backbone {type(backbone).__name__} lacks `{attr}`; AlignedRecognizer "
                    "needs stem(images), body(fmap) and input_size"
                )
        self.backbone = backbone
        self.aligner = aligner
        if aligner is not None:
            if family is not None:
                raise ValueError("give either an STN family or a landmark aligner, not both")
            if location == "none":
                raise ValueError("a landmark aligner needs location 'input' or 'fmap'")
            self.location = location
            self.stn = None
        elif family is None or location == "none":
            self.location = "none"
            self.stn: SpatialTransformer | None = None
        else:
            self.location = location
            self.stn = SpatialTransformer(
                family, locnet_input_size, locnet_width, padding_mode=padding_mode
            )

    @property
    def family(self) -> TransformFamily | None:
        if self.aligner is not None:
            return self.aligner.family
        return None if self.stn is None else self.stn.family

    @property
    def warper(self) -> nn.Module | None:
        """The STN or the landmark aligner (both have ``warp(target, params)``), or None."""
        return self.aligner if self.aligner is not None else self.stn

    def predict_params(self, images: Tensor, landmarks: Tensor | None = None) -> Tensor | None:
        """Warp parameters: from LocNet (STN), from ``landmarks`` (aligner), or None."""
        if self.aligner is not None:
            if landmarks is None:
                raise ValueError(
                    f"the {self.aligner.method} alignment needs each image's landmarks"
                )
            return self.aligner.predict_params(landmarks)
        return None if self.stn is None else self.stn.predict_params(images)

    @property
    def stage0_size(self) -> tuple[int, int]:
        """(H, W) of the stage-0 feature map (= the input size)."""
        return tuple(self.backbone.input_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.embedding_dim)

    def forward(self, images: Tensor, landmarks: Tensor | None = None) -> RecognizerOutput:
        """Embed images (B, 3, H, W); ``landmarks`` (B, S, 2) only for a landmark aligner."""
        warper = self.warper
        if warper is None:
            return RecognizerOutput(self.backbone(images), None, None)
        params = self.predict_params(images, landmarks)
        if self.location == "input":
            embedding = self.backbone(warper.warp(images, params))
        else:
            fmap = self.backbone.stem(images)
            embedding = self.backbone.body(warper.warp(fmap, params))
        return RecognizerOutput(embedding, params, self.family)

    def aligned_image(
        self, images: Tensor, params: Tensor | None = None, landmarks: Tensor | None = None
    ) -> Tensor:
        """The input image warped by the alignment (B, 3, H, W), for visualisation.

        At fmap this is the image warped with the grid used on the feature map. Without an
        alignment the images are returned unchanged. ``params`` (B, *param_shape) overrides
        LocNet / the landmarks.
        """
        warper = self.warper
        if warper is None:
            return images
        if params is None:
            params = self.predict_params(images, landmarks)
        return warper.warp(images, params)

    def extra_repr(self) -> str:
        return f"location={self.location!r}"


__all__ = ["LOCATIONS", "AlignedRecognizer", "RecognizerOutput"]
