"""The alignment loss: pull each image's warp towards a (learnable) landmark template.

For image i with landmarks x_i^s (source = input-image frame), warp f_i (aligned → source,
normalised coordinates) and template T^s (aligned frame, normalised coordinates):

    L_lmk   = 1/(B|S|) Σ_i Σ_s α_s ‖f_i(T_s) − x_i^s‖₂         (reduction="mean", the paper)
    L_reg   = Σ_s (1 − α_s)²
    L_align = L_lmk + L_reg,        α_s = sigmoid(a_s)

Units (``units``): "pixels" (default) measures ‖·‖ in pixels of the input image of
``image_size`` = (H, W): Δx is multiplied by W/2 and Δy by H/2 before the norm;
"normalized" measures it in the normalised frame directly.

Reduction (``reduction``): "mean" divides by the number of (image, landmark) terms, as in the
paper; "sum" sums over landmarks and averages over images (= |S| × the "mean" value).
With a ``valid`` mask only valid terms count and the divisor is their number (for "sum":
number / |S|), so a full mask gives exactly the formulas above.

With everything else fixed, α_s minimises α_s ē_s / |S| + (1 − α_s)², so
α_s* = 1 − ē_s / (2|S|) for "mean" (1 − ē_s / 2 for "sum"), ē_s the mean error of landmark s
in the loss's units. For pixel errors of a few pixels and |S| = 84, α* is about 0.97–0.99.
The default ``alpha_init`` = 0.9 starts close to that region while keeping sigmoid's slope
(α(1 − α) = 0.09) large enough for α to move.

The template and the α logits are flagged ``_no_weight_decay`` (see ``param_groups``): decay
would drag the template towards the origin.

Computed in float32 with autocast off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from balanced_align.geometry.base import TransformFamily
from balanced_align.geometry.precision import full_precision
from balanced_align.models.safe_load import load_weights_only

UNITS = ("pixels", "normalized")
REDUCTIONS = ("mean", "sum")

#: default initial α (see the module docstring)
DEFAULT_ALPHA_INIT = 0.9


@dataclass
class AlignmentLossOutput:
    """Result of :class:`AlignmentLoss`.

    total: scalar L_lmk + L_reg.
    lmk: scalar L_lmk.
    reg: scalar L_reg.
    per_landmark_error: (S,) mean unweighted error of each landmark over the valid images, in
        the loss's units (detached; 0 where no image is valid).
    alpha: (S,) current α (detached).
    """

    total: Tensor
    lmk: Tensor
    reg: Tensor
    per_landmark_error: Tensor
    alpha: Tensor


def _as_float_tensor(value, name: str) -> Tensor:
    try:
        tensor = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from err
    return tensor.detach().clone()


def _no_decay(param: nn.Parameter) -> nn.Parameter:
    param._no_weight_decay = True  # read by balanced_align.losses.param_groups
    return param


@full_precision
def _landmark_errors(
    family: TransformFamily,
    params: Tensor,
    template: Tensor,
    landmarks: Tensor,
    mask: Tensor | None,
    scale: Tensor | None,
) -> Tensor:
    """Error ‖f_i(T_s) − x_i^s‖ (B, S) in loss units; invalid entries are exactly 0."""
    predicted = family.warp_points(params, template)
    if mask is not None:
        # Replace invalid landmarks (possibly NaN) by the prediction so that neither the value
        # nor the gradient sees them.
        landmarks = torch.where(mask[..., None], landmarks, predicted.detach())
    delta = predicted - landmarks.to(predicted.dtype)
    if scale is not None:
        delta = delta * scale.to(delta.dtype)
    return torch.linalg.vector_norm(delta, dim=-1)


class AlignmentLoss(nn.Module):
    """L_align = L_lmk + L_reg with a learnable or fixed template and α.

    Args:
        template_init: (S, 2) template in normalised aligned-frame coordinates.
        learn_template: T is an ``nn.Parameter`` if True, a buffer otherwise.
        learn_alpha: the α logits are an ``nn.Parameter`` if True, a buffer otherwise.
        alpha_init: initial α in (0, 1), a float or (S,) values (default 0.9).
        image_size: (H, W) of the input image, for ``units="pixels"``.
        units: "pixels" | "normalized".
        reduction: "mean" | "sum".

    ``forward(family, params (B, *param_shape), landmarks (B, S, 2) normalised source frame,
    valid (B,) or (B, S) bool or None) -> AlignmentLossOutput``.
    """

    template: Tensor
    alpha_logit: Tensor

    def __init__(
        self,
        template_init,
        learn_template: bool = True,
        learn_alpha: bool = True,
        alpha_init: float | Sequence[float] | Tensor = DEFAULT_ALPHA_INIT,
        image_size: Sequence[int] = (112, 112),
        units: str = "pixels",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        template = _as_float_tensor(template_init, "template_init")
        if template.dim() != 2 or template.shape[1] != 2 or template.shape[0] < 1:
            raise ValueError(f"template_init must have shape (S, 2), got {tuple(template.shape)}")
        if not torch.isfinite(template).all():
            raise ValueError("template_init contains non-finite values")
        num_points = template.shape[0]
        alpha = _as_float_tensor(alpha_init, "alpha_init")
        if alpha.dim() == 0:
            alpha = alpha.expand(num_points).clone()
        if alpha.shape != (num_points,):
            raise ValueError(
                f"alpha_init must be a float or have shape ({num_points},), "
                f"got {tuple(alpha.shape)}"
            )
        if not ((alpha > 0) & (alpha < 1)).all():
            raise ValueError("alpha_init must lie strictly between 0 and 1")
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, got {units!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if (
            not isinstance(image_size, Sequence)
            or len(image_size) != 2
            or not all(isinstance(v, (int, float)) and v > 0 for v in image_size)
        ):
            raise ValueError(f"image_size must be a positive (H, W) pair, got {image_size!r}")
        self.units = units
        self.reduction = reduction
        self.image_size = (int(image_size[0]), int(image_size[1]))
        height, width = self.image_size
        self.register_buffer(
            "pixel_scale", torch.tensor([width / 2.0, height / 2.0]), persistent=False
        )
        self._set_template(template, learn_template)
        logit = torch.log(alpha) - torch.log1p(-alpha)
        if learn_alpha:
            self.alpha_logit = _no_decay(nn.Parameter(logit))
        else:
            self.register_buffer("alpha_logit", logit)

    # -- template -------------------------------------------------------------------------
    def _set_template(self, template: Tensor, learn: bool) -> None:
        if "template" in self._parameters:
            del self._parameters["template"]
        if "template" in self._buffers:
            del self._buffers["template"]
        if learn:
            self.template = _no_decay(nn.Parameter(template))
        else:
            self.register_buffer("template", template)

    @property
    def learn_template(self) -> bool:
        return isinstance(self.template, nn.Parameter)

    @property
    def learn_alpha(self) -> bool:
        return isinstance(self.alpha_logit, nn.Parameter)

    @property
    def num_points(self) -> int:
        return int(self.template.shape[0])

    @property
    def alpha(self) -> Tensor:
        """α = sigmoid(a), (S,)."""
        return torch.sigmoid(self.alpha_logit.float())

    @torch.no_grad()
    def load_template_from_state_dict(
        self, state_dict: Mapping[str, Tensor], key: str = "template"
    ) -> None:
        """Replace T by a learned template from ``state_dict`` and freeze it (T_fix†).

        ``key`` is an exact key or the unique suffix after a "." (e.g. "template" finds
        "align_loss.template"). After this call T is a buffer: build optimisers afterwards.
        """
        template = _find_key(state_dict, key).detach().to("cpu", torch.float32).clone()
        if template.shape != (self.num_points, 2):
            raise ValueError(
                f"template {key!r} has shape {tuple(template.shape)}, expected "
                f"({self.num_points}, 2)"
            )
        self._set_template(template.to(self.pixel_scale.device), learn=False)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, key: str = "template", **kwargs
    ) -> AlignmentLoss:
        """Loss with the frozen learned template (T_fix†) of a checkpoint file.

        ``path``: a ``torch.save``'d state dict or a Lightning checkpoint (its "state_dict"
        entry is used), read by the one safe loader
        (:func:`~balanced_align.models.safe_load.load_weights_only`). ``kwargs`` go to the
        constructor (``learn_template`` is forced False).
        """
        loaded = load_weights_only(path, "cpu", what="loss.template_checkpoint")
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path} holds no state dict (got {type(loaded).__name__})")
        try:
            template = _find_key(loaded, key)
        except KeyError as err:
            raise KeyError(f"{path}: {err.args[0]}") from err
        kwargs["learn_template"] = False
        return cls(template.detach().float(), **kwargs)

    # -- loss -----------------------------------------------------------------------------
    def forward(
        self,
        family: TransformFamily,
        params: Tensor,
        landmarks: Tensor,
        valid: Tensor | None = None,
    ) -> AlignmentLossOutput:
        num_points = self.num_points
        if landmarks.dim() != 3 or landmarks.shape[1:] != (num_points, 2):
            raise ValueError(
                f"landmarks must have shape (B, {num_points}, 2), got {tuple(landmarks.shape)}"
            )
        batch = landmarks.shape[0]
        if params.shape[0] != batch:
            raise ValueError(f"params batch {params.shape[0]} does not match landmarks {batch}")
        mask = None
        if valid is not None:
            if valid.shape == (batch,):
                valid = valid[:, None].expand(batch, num_points)
            if valid.shape != (batch, num_points):
                raise ValueError(
                    f"valid must have shape ({batch},) or ({batch}, {num_points}), "
                    f"got {tuple(valid.shape)}"
                )
            mask = valid.to(device=landmarks.device, dtype=torch.bool)
        scale = self.pixel_scale if self.units == "pixels" else None
        errors = _landmark_errors(family, params, self.template, landmarks, mask, scale)
        return self._reduce(errors, mask)

    @full_precision
    def _reduce(self, errors: Tensor, mask: Tensor | None) -> AlignmentLossOutput:
        alpha = self.alpha
        num_points = self.num_points
        if mask is None:
            count = errors.new_tensor(float(errors.numel()))
            per_landmark = errors.detach().mean(0)
        else:
            count = mask.sum().to(errors.dtype)
            per_count = mask.sum(0).to(errors.dtype)
            per_landmark = errors.detach().sum(0) / per_count.clamp_min(1.0)
        divisor = count.clamp_min(1.0)
        if self.reduction == "sum":
            divisor = divisor / num_points
        lmk = (errors * alpha.to(errors.dtype)).sum() / divisor
        reg = ((1.0 - alpha) ** 2).sum()
        return AlignmentLossOutput(
            total=lmk + reg.to(lmk.dtype),
            lmk=lmk,
            reg=reg,
            per_landmark_error=per_landmark,
            alpha=alpha.detach(),
        )

    def closed_form_alpha(self, mean_errors: Tensor) -> Tensor:
        """α_s* = 1 − ē_s/(2|S|) ("mean") or 1 − ē_s/2 ("sum"), clipped to [0, 1]."""
        denom = 2.0 * self.num_points if self.reduction == "mean" else 2.0
        return (1.0 - mean_errors / denom).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return (
            f"num_points={self.num_points}, learn_template={self.learn_template}, "
            f"learn_alpha={self.learn_alpha}, units={self.units!r}, "
            f"image_size={self.image_size}, reduction={self.reduction!r}"
        )


def _find_key(state_dict: Mapping[str, Tensor], key: str) -> Tensor:
    if key in state_dict:
        value = state_dict[key]
    else:
        matches = [k for k in state_dict if k.endswith("." + key)]
        if len(matches) != 1:
            found = "no key" if not matches else f"several keys {matches}"
            raise KeyError(f"{found} matching {key!r} in the state dict")
        value = state_dict[matches[0]]
    if not isinstance(value, Tensor):
        raise ValueError(f"state dict entry {key!r} is not a tensor")
    return value


__all__ = [
    "DEFAULT_ALPHA_INIT",
    "REDUCTIONS",
    "UNITS",
    "AlignmentLoss",
    "AlignmentLossOutput",
]
