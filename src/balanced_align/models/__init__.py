"""Models: IR-ResNet backbones, LocNet, spatial transformer, recognizer, margin heads.

Plain ``nn.Module`` code: no Lightning, no Hydra. :func:`build_recognizer` builds a recognizer
from plain values so a config can call it directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from balanced_align.models.heads import (
    HEADS,
    AMSoftmax,
    ArcFace,
    CosFace,
    SoftmaxHead,
    build_head,
)
from balanced_align.models.iresnet import (
    BACKBONES,
    IRBlock,
    IResNet,
    build_backbone,
    count_parameters,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
)
from balanced_align.models.landmark_aligner import LANDMARK_METHODS, LandmarkAligner
from balanced_align.models.locnet import LocNet
from balanced_align.models.recognizer import LOCATIONS, AlignedRecognizer, RecognizerOutput
from balanced_align.models.stn import SpatialTransformer

#: STN families learned by LocNet, then the landmark-driven preprocessing baselines
ALIGN_METHODS = ("none", "affine", "projective", "tps", "affine2d", "fullalign")


def build_recognizer(
    backbone: str = "iresnet34",
    width: float = 1.0,
    input_size: int | Sequence[int] = 112,
    align_method: str = "none",
    tps_grid_size: int = 8,
    location: str = "fmap",
    locnet_input_size: int | Sequence[int] = 64,
    locnet_width: float = 1.0,
    embedding_dim: int = 512,
    dropout: float = 0.0,
    padding_mode: str = "zeros",
    template=None,
    schema: str = "lmk84",
) -> AlignedRecognizer:
    """Build an :class:`AlignedRecognizer` from plain values.

    Args:
        backbone: "iresnet18" | "iresnet34" | "iresnet50" | "iresnet100".
        width: backbone channel multiplier.
        input_size: input (and stage-0) size, int or (H, W).
        align_method: "none" | "affine" | "projective" | "tps" (STN transform family).
        tps_grid_size: n of the n×n TPS control grid (paper: 2 and 8; default 8 as in
            ``geometry.build_family``); tps only.
        location: "fmap" | "input" | "none"; ignored (plain recognizer) when align_method="none".
        locnet_input_size, locnet_width: LocNet's input size and channel multiplier.
        embedding_dim, dropout: backbone output layer.
        padding_mode: ``grid_sample`` padding of the warp.
        template, schema: (S, 2) normalised template and its landmark schema, for the
            landmark-driven baselines "affine2d" and "fullalign" (no LocNet).
    """
    if align_method not in ALIGN_METHODS:
        raise ValueError(f"align_method must be one of {ALIGN_METHODS}, got {align_method!r}")
    if location not in LOCATIONS:
        raise ValueError(f"location must be one of {LOCATIONS}, got {location!r}")
    net = build_backbone(
        backbone,
        width=width,
        input_size=input_size,
        embedding_dim=embedding_dim,
        dropout=dropout,
    )
    if align_method in LANDMARK_METHODS:
        if template is None:
            raise ValueError(f"align_method={align_method!r} needs a template (S, 2)")
        aligner = LandmarkAligner(align_method, template, schema, padding_mode=padding_mode)
        return AlignedRecognizer(net, None, location=location, aligner=aligner)
    family = None
    if align_method != "none" and location != "none":
        from balanced_align.geometry import build_family

        kwargs = {"grid_size": tps_grid_size} if align_method == "tps" else {}
        family = build_family(align_method, **kwargs)
    return AlignedRecognizer(
        net,
        family,
        location=location,
        locnet_input_size=locnet_input_size,
        locnet_width=locnet_width,
        padding_mode=padding_mode,
    )


__all__ = [
    "ALIGN_METHODS",
    "BACKBONES",
    "HEADS",
    "LANDMARK_METHODS",
    "LOCATIONS",
    "AMSoftmax",
    "AlignedRecognizer",
    "ArcFace",
    "CosFace",
    "IRBlock",
    "IResNet",
    "LandmarkAligner",
    "LocNet",
    "RecognizerOutput",
    "SoftmaxHead",
    "SpatialTransformer",
    "build_backbone",
    "build_head",
    "build_recognizer",
    "count_parameters",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
]
