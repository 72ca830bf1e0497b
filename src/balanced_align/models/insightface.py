"""Published insightface / arcface_torch IR-ResNet weights in our backbone.

arcface_torch's ``iresnet`` names its parameters (a ``.pth`` file holds the state dict)::

    conv1, bn1, prelu                       stage 0       -> stage0.0, stage0.1, stage0.2
    layerK.i.{bn1,conv1,bn2,prelu,conv2,bn3} IR block i    -> stageK.i.<same>
    layerK.i.downsample.{0,1}               its shortcut  -> stageK.i.shortcut.{0,1}
    bn2, dropout, fc, features              output layer  -> output_layer.0, .1, .3, .4

(their dropout has no parameters; ours flattens after it instead of before, which is the
same map.) The layout of each block, the stride-2 first block of each stage and the
flatten order (C, H, W) of the FC input are the same as :class:`~balanced_align.models.
iresnet.IResNet`'s, so a full-width 112 × 112 backbone with a 512-d embedding takes their
weights as they are. A ``module.`` prefix (a DDP-wrapped save) is removed first.

The file is read by :func:`~balanced_align.models.safe_load.load_weights_only`
(``weights_only=True``): a file holding a pickled object is refused, nothing in it runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from balanced_align.models.safe_load import load_weights_only

log = logging.getLogger(__name__)

#: their top-level modules -> ours
TOP_LEVEL = {
    "conv1": "stage0.0",
    "bn1": "stage0.1",
    "prelu": "stage0.2",
    "bn2": "output_layer.0",
    "dropout": "output_layer.1",
    "fc": "output_layer.3",
    "features": "output_layer.4",
}
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(bn1|conv1|bn2|prelu|conv2|bn3|downsample)\.(.+)$")


def insightface_to_ours(name: str) -> str | None:
    """Our backbone's key for their state-dict key ``name``; None when it has no counterpart."""
    name = name.removeprefix("module.")
    block = _BLOCK.match(name)
    if block:
        stage, index, part, rest = block.groups()
        if part == "downsample":
            part = "shortcut"
        return f"stage{stage}.{index}.{part}.{rest}"
    head, _, rest = name.partition(".")
    if head in TOP_LEVEL and rest:
        return f"{TOP_LEVEL[head]}.{rest}"
    return None


@dataclass
class LoadReport:
    """What :func:`load_insightface_weights` did. ``missing``: our keys the file did not set;
    ``unexpected``: the file's keys with no counterpart here (their names)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def map_insightface_state(
    state: Mapping[str, Tensor], backbone: nn.Module
) -> tuple[dict, LoadReport]:
    """Their ``state`` renamed to ``backbone``'s keys, with the report of what matched.

    A tensor whose shape differs from ours (another depth, width, input size or embedding
    size) is a ValueError naming both keys and shapes.
    """
    ours = backbone.state_dict()
    mapped, report = {}, LoadReport()
    for name, value in state.items():
        key = insightface_to_ours(name)
        if key is None or key not in ours:
            report.unexpected.append(name)
            continue
        if not isinstance(value, Tensor) or value.shape != ours[key].shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"pretrained weight {name!r} has shape {shape}, our {key!r} has "
                f"{tuple(ours[key].shape)}: a backbone of another depth, width, input size or "
                "embedding size"
            )
        mapped[key] = value
    report.loaded = sorted(mapped)
    report.missing = sorted(set(ours) - set(mapped))
    return mapped, report


def load_insightface_weights(backbone: nn.Module, path: str | Path) -> LoadReport:
    """Load an arcface_torch IR-ResNet ``.pth`` state dict into ``backbone`` (an
    :class:`~balanced_align.models.iresnet.IResNet`); log and return the missing and
    unexpected keys. A file that matches none of our keys is a ValueError."""
    state = load_weights_only(path, "cpu", what="model.pretrained")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(
            f"model.pretrained {str(path)!r}: expected a state dict, got {type(state).__name__}"
        )
    try:
        mapped, report = map_insightface_state(state, backbone)
    except ValueError as error:
        raise ValueError(f"model.pretrained {str(path)!r}: {error}") from None
    if not mapped:
        raise ValueError(
            f"model.pretrained {str(path)!r}: none of its {len(state)} keys is an insightface "
            f"IR-ResNet parameter (e.g. {sorted(state)[:3]})"
        )
    with torch.no_grad():
        backbone.load_state_dict(mapped, strict=False)
    if report.missing:
        log.warning(
            "model.pretrained %s: missing keys (left as initialised): %s", path, report.missing
        )
    if report.unexpected:
        log.warning("model.pretrained %s: unexpected keys (ignored): %s", path, report.unexpected)
    return report


__all__ = [
    "TOP_LEVEL",
    "LoadReport",
    "insightface_to_ours",
    "load_insightface_weights",
    "map_insightface_state",
]
