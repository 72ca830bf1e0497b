"""IR-ResNet backbones (the insightface "IR" residual unit), as in the paper's Table 1.

Layout for an input of (H, W) = (112, 112) at width 1 (ResNet34):

- stage 0: 3×3 conv, stride 1 → BN → PReLU; 112 × 112, 64 channels
- stage 1: 3 IR blocks, the first with stride 2; 56 × 56, 64 channels
- stage 2: 4 IR blocks; 28 × 28, 128 channels
- stage 3: 6 IR blocks; 14 × 14, 256 channels
- stage 4: 3 IR blocks; 7 × 7, 512 channels
- output: BN → Dropout → flatten → FC-512 → BN1d

(blocks per stage: 18 = [2, 2, 2, 2], 34 = [3, 4, 6, 3], 50 = [3, 4, 14, 3],
100 = [3, 13, 30, 3]). Each IR block is BN → 3×3 conv → BN → PReLU → 3×3 conv (stride)
→ BN, plus a shortcut that is the identity, or 1×1 conv (stride) → BN when the shape changes.
Convolutions have no bias; PReLU slopes are per channel.

Stage 0 keeps the input resolution, so its feature map is where the paper's STN warps
(``align@fmap``). :meth:`IResNet.stem` runs stage 0, :meth:`IResNet.body` the rest.
Any input size ≥ 16 works (each stride-2 stage maps n to ceil(n / 2)); the FC input size
follows from it, e.g. 112 → 7 × 7, 64 → 4 × 4, 48 → 3 × 3.

Trainable parameter counts of the full-width 112 × 112 models with a 512-d embedding
(BN running statistics are buffers, not counted):

- ``iresnet18``:  24,025,600
- ``iresnet34``:  34,139,328
- ``iresnet50``:  43,590,848
- ``iresnet100``: 65,156,160
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

#: blocks per stage for each depth
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}

#: channels of stage 0 .. stage 4 at width 1
IRESNET_CHANNELS: tuple[int, int, int, int, int] = (64, 64, 128, 256, 512)

#: number of stride-2 stages after stage 0
NUM_DOWNSAMPLINGS = 4


def scaled_channels(channels: int, width: float) -> int:
    """``channels × width`` rounded to an int, at least 8."""
    return max(8, round(channels * width))


def as_size(size: int | Sequence[int], name: str = "input_size") -> tuple[int, int]:
    """Turn an int or an (H, W) pair into an (H, W) tuple of positive ints, or raise."""
    if isinstance(size, int) and not isinstance(size, bool):
        out = (size, size)
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, int) for s in size):
        out = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or an (H, W) pair of ints, got {size!r}")
    if min(out) < 16:
        raise ValueError(f"{name} must be at least 16 pixels on each side, got {out}")
    return out


def downsampled_size(size: tuple[int, int], times: int = NUM_DOWNSAMPLINGS) -> tuple[int, int]:
    """Spatial size after ``times`` stride-2 3×3 convs with padding 1: n → ceil(n / 2)."""
    h, w = size
    for _ in range(times):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """Insightface IR residual unit. (B, in_ch, H, W) → (B, out_ch, ceil(H/s), ceil(W/s))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch, stride)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.shortcut is None else self.shortcut(x)
        return out + identity


class IResNet(nn.Module):
    """IR-ResNet face embedding network.

    Args:
        layers: IR blocks in stages 1–4, e.g. (3, 4, 6, 3) for ResNet34.
        width: channel multiplier applied to (64, 64, 128, 256, 512) (int rounding, min 8).
        input_size: (H, W) or an int; the network only accepts inputs of this size, because
            the FC input size is fixed by it.
        embedding_dim: output dimension D.
        dropout: dropout probability before the FC layer.
        in_channels: image channels (3 for RGB).

    Shapes: ``forward`` (B, in_channels, H, W) → (B, D); ``stem`` (B, in_channels, H, W) →
    (B, C0, H, W); ``body`` (B, C0, H, W) → (B, D).
    """

    def __init__(
        self,
        layers: Sequence[int],
        width: float = 1.0,
        input_size: int | Sequence[int] = 112,
        embedding_dim: int = 512,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.layers = tuple(int(n) for n in layers)
        self.width = float(width)
        self.input_size = as_size(input_size)
        self.embedding_dim = int(embedding_dim)
        self.in_channels = int(in_channels)
        self.channels = tuple(scaled_channels(c, width) for c in IRESNET_CHANNELS)
        self.fmap_size = downsampled_size(self.input_size)

        c0 = self.channels[0]
        self.stage0 = nn.Sequential(conv3x3(in_channels, c0), nn.BatchNorm2d(c0), nn.PReLU(c0))
        stages = []
        in_ch = c0
        for num_blocks, out_ch in zip(self.layers, self.channels[1:]):
            blocks = [IRBlock(in_ch, out_ch, stride=2)]
            blocks += [IRBlock(out_ch, out_ch) for _ in range(num_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        fh, fw = self.fmap_size
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_ch * fh * fw, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        self._init_weights()

    @property
    def stage0_channels(self) -> int:
        return self.channels[0]

    @property
    def stage0_size(self) -> tuple[int, int]:
        """(H, W) of the stage-0 feature map: the input size."""
        return self.input_size

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: Tensor, channels: int, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != channels or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"{what} must have shape (B, {channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}), got {tuple(x.shape)}"
            )

    def stem(self, x: Tensor) -> Tensor:
        """Stage 0: (B, in_channels, H, W) → (B, C0, H, W)."""
        self._check_input(x, self.in_channels, "images")
        return self.stage0(x)

    def body(self, fmap: Tensor) -> Tensor:
        """Stages 1–4 and the output layer: (B, C0, H, W) → (B, D)."""
        self._check_input(fmap, self.channels[0], "stage-0 feature map")
        x = self.stage4(self.stage3(self.stage2(self.stage1(fmap))))
        return self.output_layer(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.stem(x))

    def extra_repr(self) -> str:
        return (
            f"layers={self.layers}, width={self.width}, input_size={self.input_size}, "
            f"embedding_dim={self.embedding_dim}"
        )


def _factory(depth: int):
    def build(
        width: float = 1.0,
        input_size: int | Sequence[int] = 112,
        embedding_dim: int = 512,
        dropout: float = 0.0,
    ) -> IResNet:
        return IResNet(IRESNET_LAYERS[depth], width, input_size, embedding_dim, dropout)

    build.__name__ = f"iresnet{depth}"
    build.__qualname__ = build.__name__
    build.__doc__ = (
        f"IR-ResNet{depth}, blocks {IRESNET_LAYERS[depth]} (see the module docstring for "
        "the parameter count at full width, 112 × 112)."
    )
    return build


iresnet18 = _factory(18)
iresnet34 = _factory(34)
iresnet50 = _factory(50)
iresnet100 = _factory(100)

BACKBONES = {
    "iresnet18": iresnet18,
    "iresnet34": iresnet34,
    "iresnet50": iresnet50,
    "iresnet100": iresnet100,
}


def build_backbone(name: str, **kwargs) -> IResNet:
    """Build a backbone by name (one of :data:`BACKBONES`)."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    return BACKBONES[name](**kwargs)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "BACKBONES",
    "IRESNET_CHANNELS",
    "IRESNET_LAYERS",
    "IRBlock",
    "IResNet",
    "build_backbone",
    "count_parameters",
    "downsampled_size",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "scaled_channels",
]
