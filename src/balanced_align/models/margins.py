"""The margins of the cosine heads, shared by :mod:`~balanced_align.models.heads` and
:mod:`~balanced_align.models.partial_fc`: cosines (B, C) in, margined cosines (B, C) out."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from balanced_align.geometry.precision import full_precision

#: margin kind -> default m: AM-Softmax as in the paper (cosine margin), CosFace (cosine
#: margin), ArcFace (angular margin). The heads and Partial FC take their defaults from here.
DEFAULT_MARGINS = {"am": 0.35, "cos": 0.4, "arc": 0.5}


@full_precision
def normalized_cosine(embeddings: Tensor, weight: Tensor) -> Tensor:
    """cosθ (B, C) between rows of ``embeddings`` (B, D) and class weights ``weight`` (C, D)."""
    cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(weight.to(embeddings), dim=1))
    return cos.clamp(-1.0, 1.0)


def cosine_margin(cos: Tensor, labels: Tensor, m: float) -> Tensor:
    """cosθ (B, C) with m subtracted at each row's target ``labels`` (B,): AM-Softmax/CosFace."""
    # scatter keeps the other logits bit-identical to cosθ
    return cos.scatter_add(1, labels[:, None], cos.new_full((cos.shape[0], 1), -m))


def angular_margin(cos: Tensor, labels: Tensor, m: float, easy_margin: bool = False) -> Tensor:
    """cosθ (B, C) with the target ``labels`` (B,) entries replaced by cos(θ_y + m) (ArcFace,
    with the fallbacks of :class:`ArcFace`)."""
    target = cos.gather(1, labels[:, None])
    # clamp: d sqrt/dx is infinite at 0 (|cosθ| = 1)
    sin = (1.0 - target * target).clamp_min(1e-12).sqrt()
    phi = target * math.cos(m) - sin * math.sin(m)
    if easy_margin:
        phi = torch.where(target > 0, phi, target)
    else:
        threshold = math.cos(math.pi - m)
        phi = torch.where(target > threshold, phi, target - m * math.sin(m))
    return cos.scatter(1, labels[:, None], phi)


__all__ = ["DEFAULT_MARGINS", "angular_margin", "cosine_margin", "normalized_cosine"]
