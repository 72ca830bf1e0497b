"""LocNet: the localisation network of the STN, a slim ResNet18 regressing warp parameters.

Layout at width 1 for the default 64 × 64 input:

- resize the input image to ``input_size`` (bilinear, ``antialias=False``; skipped when the
  size already matches);
- stage 0: 3×3 conv, stride 1 → BN → ReLU; 64 × 64, 8 channels;
- stages 1–4: 2 basic residual blocks each (3×3 conv → BN → ReLU → 3×3 conv → BN, shortcut
  1×1 conv → BN when the shape changes, ReLU after the sum), the first block of each stage
  with stride 2; 32, 16, 8, 4 pixels; 16, 32, 64, 64 channels;
- global average pool → FC → ``num_params``.

The last FC starts with weight 0 and bias = the identity parameters, so a fresh LocNet predicts
the identity warp for every image. That FC runs in float32 even under autocast, so the
identity (and small offsets from it) are represented exactly rather than rounded to bf16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from balanced_align.geometry.precision import full_precision
from balanced_align.models.iresnet import as_size, scaled_channels

#: channels of stage 0 .. stage 4 at width 1
LOCNET_CHANNELS: tuple[int, int, int, int, int] = (8, 16, 32, 64, 64)
#: basic blocks per stage (ResNet18)
LOCNET_LAYERS: tuple[int, int, int, int] = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """ResNet basic block. (B, in_ch, H, W) → (B, out_ch, ceil(H/s), ceil(W/s))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


@full_precision
def _regress(fc: nn.Linear, features: Tensor) -> Tensor:
    # float32 (float64 stays float64) even when the module itself was cast to half precision
    dtype = features.dtype
    return F.linear(features, fc.weight.to(dtype), fc.bias.to(dtype))


class LocNet(nn.Module):
    """Regress warp parameters from an image.

    Args:
        identity: the identity parameters, any shape (e.g. ``family.identity_params()``);
            the output has ``identity.numel()`` numbers per image and starts at
            ``identity.flatten()``.
        input_size: (H, W) or an int: the images are resized to this before the convs.
        width: channel multiplier applied to (8, 16, 32, 64, 64) (int rounding, min 8).
        in_channels: image channels.

    Shapes: (B, in_channels, H, W) of any H, W → (B, num_params), float32.
    """

    def __init__(
        self,
        identity: Tensor,
        input_size: int | Sequence[int] = 64,
        width: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not isinstance(identity, Tensor) or identity.numel() == 0:
            raise ValueError("identity must be a non-empty tensor of identity warp parameters")
        if not width > 0:
            raise ValueError(f"locnet width must be positive, got {width}")
        self.input_size = as_size(input_size, "locnet_input_size")
        self.in_channels = int(in_channels)
        self.num_params = int(identity.numel())
        channels = [scaled_channels(c, width) for c in LOCNET_CHANNELS]
        self.stage0 = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_ch = channels[0]
        for num_blocks, out_ch in zip(LOCNET_LAYERS, channels[1:]):
            blocks = [BasicBlock(in_ch, out_ch, stride=2)]
            blocks += [BasicBlock(out_ch, out_ch) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, self.num_params)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.reset_to_identity(identity)

    @torch.no_grad()
    def reset_to_identity(self, identity: Tensor) -> None:
        """Set the last FC to weight 0, bias = ``identity.flatten()``."""
        if identity.numel() != self.num_params:
            raise ValueError(
                f"identity has {identity.numel()} numbers, LocNet predicts {self.num_params}"
            )
        self.fc.weight.zero_()
        self.fc.bias.copy_(identity.detach().reshape(-1).to(self.fc.bias))

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"LocNet images must have shape (B, {self.in_channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        x = images
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", align_corners=False, antialias=False
            )
        x = self.stages(self.stage0(x))
        features = self.pool(x).flatten(1)
        return _regress(self.fc, features)


__all__ = ["LOCNET_CHANNELS", "LOCNET_LAYERS", "BasicBlock", "LocNet"]
