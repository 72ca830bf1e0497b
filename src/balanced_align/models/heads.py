"""Classification heads for face recognition training (logits for cross-entropy).

Each head maps ``embeddings (B, D)`` and ``labels (B,)`` (int64 class indices) to
``logits (B, C)``; with ``labels=None`` the margin heads return the plain scaled cosines
s·cosθ (inference, validation). With cosθ_j = ⟨e/‖e‖, w_j/‖w_j‖⟩:

- :class:`AMSoftmax` / :class:`CosFace`: s·(cosθ_j − m·[j = y])
- :class:`ArcFace`: s·cos(θ_y + m) for the target class, s·cosθ_j otherwise; where θ_y + m > π
  (cos(θ_y + m) would no longer decrease with θ) the usual fallback cosθ_y − m·sin(m) is used
  (``easy_margin``: the margin only where cosθ_y > 0).
- :class:`SoftmaxHead`: a plain linear layer with bias.

Class weights are L2-normalised per class; everything is computed in float32 (autocast off).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from balanced_align.geometry.precision import full_precision
from balanced_align.models.margins import (
    DEFAULT_MARGINS,
    angular_margin,
    cosine_margin,
    normalized_cosine,
)
from balanced_align.models.partial_fc import PartialFC


def _check(embeddings: Tensor, labels: Tensor | None, in_features: int) -> None:
    if embeddings.dim() != 2 or embeddings.shape[1] != in_features:
        raise ValueError(
            f"embeddings must have shape (B, {in_features}), got {tuple(embeddings.shape)}"
        )
    if labels is not None:
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}"
            )
        if labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be int64 class indices, got {labels.dtype}")


class _CosineHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, s: float) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be positive, got {in_features}, {num_classes}"
            )
        if not s > 0:
            raise ValueError(f"scale s must be positive, got {s}")
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.s = float(s)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    def _margin(self, cos: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        _check(embeddings, labels, self.in_features)
        cos = normalized_cosine(embeddings, self.weight)
        if labels is None:
            return self.s * cos
        return self.s * self._margin(cos, labels.long())

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self._hyper().items())
        return f"in_features={self.in_features}, num_classes={self.num_classes}, {params}"

    def _hyper(self) -> dict:
        return {"s": self.s}


class AMSoftmax(_CosineHead):
    """Additive-margin softmax: logits = s·(cosθ − m·onehot(y)). Paper: s = 64, m = 0.35."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        s: float = 64.0,
        m: float = DEFAULT_MARGINS["am"],
    ) -> None:
        super().__init__(in_features, num_classes, s)
        if not 0.0 <= m < 2.0:
            raise ValueError(f"margin m must be in [0, 2), got {m}")
        self.m = float(m)

    def _margin(self, cos: Tensor, labels: Tensor) -> Tensor:
        return cosine_margin(cos, labels, self.m)

    def _hyper(self) -> dict:
        return {"s": self.s, "m": self.m}


class CosFace(AMSoftmax):
    """CosFace (large-margin cosine loss): same formula as AM-Softmax, default m = 0.4."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        s: float = 64.0,
        m: float = DEFAULT_MARGINS["cos"],
    ) -> None:
        super().__init__(in_features, num_classes, s, m)


class ArcFace(_CosineHead):
    """Additive angular margin: target logit s·cos(θ_y + m), others s·cosθ.

    Where θ_y + m > π (i.e. cosθ_y < cos(π − m)) the target logit is s·(cosθ_y − m·sin m)
    instead (insightface's fallback, keeping the logit decreasing in θ). With
    ``easy_margin=True`` the margin applies only where cosθ_y > 0.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        s: float = 64.0,
        m: float = DEFAULT_MARGINS["arc"],
        easy_margin: bool = False,
    ) -> None:
        super().__init__(in_features, num_classes, s)
        if not 0.0 <= m < math.pi / 2:
            raise ValueError(f"margin m must be in [0, π/2), got {m}")
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def _margin(self, cos: Tensor, labels: Tensor) -> Tensor:
        return angular_margin(cos, labels, self.m, self.easy_margin)

    def _hyper(self) -> dict:
        return {"s": self.s, "m": self.m, "easy_margin": self.easy_margin}


class SoftmaxHead(nn.Module):
    """Plain softmax classifier: logits = W e + b (labels are ignored)."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be positive, got {in_features}, {num_classes}"
            )
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)
        self.fc = nn.Linear(in_features, num_classes, bias=bias)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        _check(embeddings, labels, self.in_features)
        return _linear32(embeddings, self.fc.weight, self.fc.bias)


@full_precision
def _linear32(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.linear(x, weight.to(x), None if bias is None else bias.to(x))


HEADS: dict[str, type[nn.Module]] = {
    "amsoftmax": AMSoftmax,
    "cosface": CosFace,
    "arcface": ArcFace,
    "softmax": SoftmaxHead,
    "partialfc": PartialFC,
}


def build_head(name: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a head by name: "amsoftmax" | "cosface" | "arcface" | "softmax", or a Partial
    FC head "partial_fc_am" | "partial_fc_cos" | "partial_fc_arc" (kwargs: s, m,
    sample_rate)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key.startswith("partialfc") and key.removeprefix("partialfc") in DEFAULT_MARGINS:
        return PartialFC(in_features, num_classes, margin=key.removeprefix("partialfc"), **kwargs)
    if key not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {name!r}")
    return HEADS[key](in_features, num_classes, **kwargs)


__all__ = [
    "HEADS",
    "AMSoftmax",
    "ArcFace",
    "CosFace",
    "PartialFC",
    "SoftmaxHead",
    "angular_margin",
    "build_head",
    "cosine_margin",
    "normalized_cosine",
]
