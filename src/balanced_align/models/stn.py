"""Spatial transformer: LocNet → transform family's grid → bilinear sampling.

The family maps aligned (output) → source (input) coordinates in the normalised frame of
``grid_sample(align_corners=False)`` (docs/design.md §2.2), so the grid for an output of (h, w)
holds, for each output pixel, where to read in the target. Because the frame is normalised, one
set of parameters warps tensors of any resolution consistently: the input image and its stage-0
feature map (same resolution) are warped by exactly the same grid.

Grid generation and sampling run in float32 even under autocast; the warped tensor is cast back
to the target's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from balanced_align.geometry.base import TransformFamily, sample
from balanced_align.geometry.precision import full_precision
from balanced_align.models.locnet import LocNet


@full_precision
def warp_tensor(
    family: TransformFamily, params: Tensor, target: Tensor, padding_mode: str = "zeros"
) -> Tensor:
    """Warp ``target`` (B, C, h, w) by ``params`` (B, *param_shape) → (B, C, h, w).

    Runs in float32 with autocast off (float64 stays float64); returns the computing dtype,
    callers cast back.
    """
    grid = family.grid(params, (int(target.shape[-2]), int(target.shape[-1])))
    return sample(target, grid.to(target.dtype), padding_mode=padding_mode)


class SpatialTransformer(nn.Module):
    """LocNet + transform family + sampler.

    Args:
        family: a :class:`~balanced_align.geometry.base.TransformFamily` (registered as a
            submodule, so its buffers follow ``.to(device)``).
        locnet_input_size: LocNet's input size (int or (H, W)); images are resized to it.
        locnet_width: LocNet channel multiplier.
        padding_mode: ``grid_sample`` padding for points falling outside the target.
        in_channels: channels of the images LocNet sees.

    ``forward(x_for_locnet (B, 3, H, W), target (B, C, h, w)) -> (warped (B, C, h, w),
    params (B, *param_shape) float32)``.
    """

    def __init__(
        self,
        family: TransformFamily,
        locnet_input_size: int | Sequence[int] = 64,
        locnet_width: float = 1.0,
        padding_mode: str = "zeros",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(family, TransformFamily):
            raise TypeError(f"family must be a TransformFamily, got {type(family).__name__}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(
                f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}"
            )
        self.family = family
        self.padding_mode = padding_mode
        self.locnet = LocNet(
            family.identity_params(), locnet_input_size, locnet_width, in_channels=in_channels
        )

    @property
    def param_shape(self) -> tuple[int, ...]:
        return tuple(self.family.param_shape)

    def predict_params(self, images: Tensor) -> Tensor:
        """LocNet on ``images`` (B, 3, H, W) → params (B, *param_shape), float32."""
        flat = self.locnet(images)
        return flat.reshape(flat.shape[0], *self.param_shape)

    def warp(self, target: Tensor, params: Tensor) -> Tensor:
        """Warp ``target`` (B, C, h, w) with ``params`` (B, *param_shape); keeps target's dtype."""
        if target.dim() != 4:
            raise ValueError(f"target must have shape (B, C, h, w), got {tuple(target.shape)}")
        if params.shape[0] != target.shape[0]:
            raise ValueError(
                f"params batch {params.shape[0]} does not match target batch {target.shape[0]}"
            )
        warped = warp_tensor(self.family, params, target, self.padding_mode)
        return warped.to(target.dtype)

    def forward(self, x_for_locnet: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        params = self.predict_params(x_for_locnet)
        return self.warp(target, params), params


__all__ = ["SpatialTransformer", "warp_tensor"]
