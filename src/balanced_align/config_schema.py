"""The configuration of the method: model, align, loss and optim settings, typed, with defaults.

This module is the one home of these defaults (docs/design.md §6, "Configuration"):

- :class:`ModelConfig`, :class:`AlignConfig`, :class:`LossConfig` and :class:`OptimConfig`
  hold every key with its type and default; closed choices are :class:`Choice` enums.
- Hydra's files (``conf/model``, ``conf/align``, ``conf/loss``, ``conf/optim``) only override
  them: :mod:`balanced_align.config_store` registers these classes as the typed base of
  ``conf/train.yaml``, so a value of the wrong type, a string outside a closed choice and an
  unknown key fail at composition, naming the key.
- :class:`BalancedAlignModule` takes plain dicts (notebooks, checkpoints) and merges them over
  the defaults with :meth:`ModuleConfig.from_mappings` (an unknown key is a ``ValueError``
  naming ``group.key``); it stores :meth:`ModuleConfig.to_dicts` (strings, numbers, lists).
- :func:`validate_config` holds the range and cross-field checks (``loss.lambda > 0`` needs a
  learned warp, …); the module and the training job (before any data is built) both call it.

Plain Python: no Hydra, no torch; any unit may import it. One key is not a Python name:
``loss.lambda`` is the attribute ``LossConfig.lambda_`` (see :func:`config_key`).
"""

from __future__ import annotations

import math
import numbers
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any


class Choice(str, Enum):
    """A closed set of config strings. Members are named by their values (OmegaConf reads a
    string by member name, Python by value) and print as their value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def choices(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def parse(cls, value: Any, name: str) -> Choice:
        """The member for ``value`` (a member or its string); ValueError naming ``name``."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{name} must be one of {cls.choices()}, got {value!r}") from None


class Backbone(Choice):
    iresnet18 = "iresnet18"
    iresnet34 = "iresnet34"
    iresnet50 = "iresnet50"
    iresnet100 = "iresnet100"


class AlignMethod(Choice):
    """none; an STN family learned by the LocNet; a baseline computed from the landmarks."""

    none = "none"
    affine = "affine"
    projective = "projective"
    tps = "tps"
    affine2d = "affine2d"
    fullalign = "fullalign"

    @property
    def learned(self) -> bool:
        """Whether a LocNet predicts the warp (the alignment loss can supervise it)."""
        return self in (AlignMethod.affine, AlignMethod.projective, AlignMethod.tps)


class Location(Choice):
    """Where the warp applies: the stage-0 feature map (the paper's choice) or the image."""

    fmap = "fmap"
    input = "input"


class PaddingMode(Choice):
    """``grid_sample`` padding of the warp."""

    zeros = "zeros"
    border = "border"
    reflection = "reflection"


class Head(Choice):
    """Margin head. The module also reads the spellings ``build_head`` accepts (amsoftmax,
    AM-Softmax, …), as older checkpoints may hold them; a config takes these names."""

    am_softmax = "am_softmax"
    cosface = "cosface"
    arcface = "arcface"
    softmax = "softmax"
    #: Partial FC (centres sharded across ranks, sampled per step) with the AM-Softmax,
    #: CosFace or ArcFace margin
    partial_fc_am = "partial_fc_am"
    partial_fc_cos = "partial_fc_cos"
    partial_fc_arc = "partial_fc_arc"

    @property
    def partial_fc(self) -> bool:
        """Whether this is a Partial FC head (``loss.sample_rate`` applies)."""
        return self.value.startswith("partial_fc_")

    @classmethod
    def _missing_(cls, value: object) -> Head | None:
        def key(text: str) -> str:
            return text.lower().replace("-", "").replace("_", "")

        if isinstance(value, str):
            return next((m for m in cls if key(m.value) == key(value)), None)
        return None


class Units(Choice):
    """Units of the landmark error: pixels of the input image, or normalised coordinates."""

    pixels = "pixels"
    normalized = "normalized"


class Reduction(Choice):
    """mean over the (image, landmark) terms (the paper), or their sum."""

    mean = "mean"
    sum = "sum"


@dataclass
class ModelConfig:
    """The recogniser: the paper's model family at a CPU size (IR-ResNet-18, ¼ width, 64²)."""

    backbone: Backbone = Backbone.iresnet18
    width: float = 0.25
    input_size: int = 64
    embedding_dim: int = 128
    dropout: float = 0.0
    #: channels-last convolutions: ~13% faster steps on CPU (oneDNN), the usual choice on GPU
    channels_last: bool = True
    #: an insightface / arcface_torch IR-ResNet ``.pth`` state dict loaded into the backbone
    #: when the module is built (read with ``weights_only``; models/insightface.py)
    pretrained: str | None = None


@dataclass
class AlignConfig:
    """The alignment: STN-TPS on an 8×8 grid at the stage-0 feature map (the paper's)."""

    method: AlignMethod = AlignMethod.tps
    #: n of the n×n TPS control grid (tps only)
    tps_grid_size: int = 8
    location: Location = Location.fmap
    locnet_input_size: int = 32
    locnet_width: float = 1.0
    padding_mode: PaddingMode = PaddingMode.zeros


@dataclass
class LossConfig:
    """L = L_fr + λ·L_align: λ = 3 (the paper's best), AM-Softmax s = 64, m = 0.35."""

    #: λ, the key ``loss.lambda`` (``lambda`` is not a Python name)
    lambda_: float = field(default=3.0, metadata={"key": "lambda"})
    head: Head = Head.am_softmax
    scale: float = 64.0
    margin: float = 0.35
    learn_template: bool = True
    learn_alpha: bool = True
    alpha_init: float = 0.9
    units: Units = Units.pixels
    reduction: Reduction = Reduction.mean
    #: T_fix†: a checkpoint whose learned template is loaded, frozen
    template_checkpoint: str | None = None
    #: Partial FC heads: fraction of each rank's class centres used per step (positives
    #: always), in (0, 1]; 1 with every other head
    sample_rate: float = 1.0


@dataclass
class OptimConfig:
    """SGD with momentum, lr steps at fixed fractions of the run (paper §5.1)."""

    #: at a global batch of ``reference_batch_size``; scaled linearly with the global batch
    lr: float = 0.2
    reference_batch_size: int = 256
    #: per device (× devices × accumulation = the global batch)
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    #: lr × gamma at these fractions of the run's optimiser steps; the paper's epochs 13, 18
    #: and 23 of 24 (the same fractions when the run is shorter or longer)
    milestones: list[float] = field(default_factory=lambda: [12 / 24, 17 / 24, 22 / 24])
    gamma: float = 0.1
    warmup_fraction: float = 0.0
    #: lr of the alignment subsystem (LocNet and template T) relative to the rest. With one
    #: lr for everything (1.0) the warp parameters diverge within a few steps here, and a
    #: template that moves 100x faster than the warp drifts into folded warps.
    align_lr_scale: float = 0.01


#: config group -> its schema
GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "align": AlignConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
}


def config_key(f) -> str:
    """The config key of dataclass field ``f`` (its name, or ``metadata["key"]``)."""
    return f.metadata.get("key", f.name)


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation of schema ``cls``."""
    return typing.get_type_hints(cls)


def optional_of(annotation: Any) -> Any | None:
    """``X`` for ``X | None`` (or ``Optional[X]``), else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0]
    return None


def _coerce(annotation: Any, value: Any, name: str) -> Any:
    """``value`` as the type ``annotation``; ValueError naming ``name`` when it is not one."""
    inner = optional_of(annotation)
    if inner is not None:
        return None if value is None else _coerce(inner, value, name)
    if isinstance(annotation, type) and issubclass(annotation, Choice):
        return annotation.parse(value, name)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{name} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
        raise ValueError(f"{name} must be a string, got {value!r}")
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return [_coerce(item, v, f"{name}[{i}]") for i, v in enumerate(value)]
        raise ValueError(f"{name} must be a list, got {value!r}")
    raise TypeError(f"{name}: unsupported schema type {annotation!r}")


def build_group(cls: type, values: Mapping | None, where: str):
    """Schema ``cls`` with its defaults updated by ``values`` (plain or OmegaConf mapping).

    Each value is checked against its field's type (a string of a closed choice becomes its
    :class:`Choice`); an unknown key or a value of the wrong type is a ValueError naming
    ``where.key``.
    """
    by_key = {config_key(f): f for f in fields(cls)}
    annotations = field_types(cls)
    given = {}
    for key, value in dict(values or {}).items():
        if key not in by_key:
            raise ValueError(f"unknown config key '{where}.{key}'; known: {sorted(by_key)}")
        f = by_key[key]
        given[f.name] = _coerce(annotations[f.name], value, f"{where}.{key}")
    return cls(**given)


def to_plain(config) -> dict:
    """A schema instance as a plain dict keyed by config keys (choices as strings)."""

    def plain(value):
        if isinstance(value, Choice):
            return value.value
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {config_key(f): plain(getattr(config, f.name)) for f in fields(config)}


@dataclass
class ModuleConfig:
    """The four groups :class:`~balanced_align.module.BalancedAlignModule` is built from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_mappings(
        cls,
        model: Mapping | None = None,
        align: Mapping | None = None,
        loss: Mapping | None = None,
        optim: Mapping | None = None,
    ) -> ModuleConfig:
        """Each group's defaults updated by its mapping, then :func:`validate_config`."""
        given = {"model": model, "align": align, "loss": loss, "optim": optim}
        config = cls(**{g: build_group(GROUPS[g], given[g], g) for g in GROUPS})
        validate_config(config)
        return config

    def to_dicts(self) -> dict[str, dict]:
        """``{"model": {...}, "align": {...}, "loss": {...}, "optim": {...}}``, plain values."""
        return {group: to_plain(getattr(self, group)) for group in GROUPS}


def _require(name: str, value, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _finite(value) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def validate_config(config: ModuleConfig) -> None:
    """Range and cross-field checks of typed groups; ValueError naming the key.

    Types and closed choices are checked where the values come in (composition, or
    :func:`build_group`); this checks what a type cannot say.
    """
    model, align, loss, optim = config.model, config.align, config.loss, config.optim

    def positive(name: str, value, strict: bool = True) -> None:
        ok = _finite(value) and (value > 0 if strict else value >= 0)
        _require(name, value, ok, "a finite number " + ("> 0" if strict else ">= 0"))

    positive("model.width", model.width)
    _require("model.input_size", model.input_size, model.input_size >= 1, "an integer >= 1")
    _require(
        "model.embedding_dim", model.embedding_dim, model.embedding_dim >= 1, "an integer >= 1"
    )
    _require("model.dropout", model.dropout, 0 <= model.dropout < 1, "in [0, 1)")

    method = AlignMethod(align.method)
    if method is AlignMethod.tps:
        _require(
            "align.tps_grid_size", align.tps_grid_size, align.tps_grid_size >= 2, "an integer >= 2"
        )
    _require(
        "align.locnet_input_size",
        align.locnet_input_size,
        align.locnet_input_size >= 1,
        "an integer >= 1",
    )
    positive("align.locnet_width", align.locnet_width)

    lam = loss.lambda_
    _require("loss.lambda", lam, _finite(lam) and lam >= 0, "a finite number >= 0")
    if not method.learned and lam > 0:
        raise ValueError(
            "loss.lambda > 0 needs a learned alignment (align.method affine, projective or tps); "
            f"align.method={method} has no learned warp to supervise"
        )
    positive("loss.scale", loss.scale)
    positive("loss.margin", loss.margin, strict=False)
    _require(
        "loss.alpha_init",
        loss.alpha_init,
        _finite(loss.alpha_init) and 0 < loss.alpha_init < 1,
        "strictly between 0 and 1",
    )

    rate = loss.sample_rate
    _require("loss.sample_rate", rate, _finite(rate) and 0 < rate <= 1, "in (0, 1]")
    head = Head.parse(loss.head, "loss.head")
    if rate != 1 and not head.partial_fc:
        raise ValueError(
            f"loss.sample_rate={rate} samples class centres, which only the Partial FC heads "
            f"do ({[h.value for h in Head if h.partial_fc]}); loss.head={head} needs 1.0"
        )

    positive("optim.lr", optim.lr)
    for key in ("momentum", "weight_decay", "align_lr_scale"):
        positive(f"optim.{key}", getattr(optim, key), strict=False)
    positive("optim.gamma", optim.gamma)
    for key in ("batch_size", "reference_batch_size"):
        value = getattr(optim, key)
        _require(f"optim.{key}", value, value >= 1, "an integer >= 1")
    warmup = optim.warmup_fraction
    _require("optim.warmup_fraction", warmup, _finite(warmup) and 0 <= warmup < 1, "in [0, 1)")
    milestones = optim.milestones
    _require(
        "optim.milestones",
        milestones,
        sorted(milestones) == list(milestones) and all(0 < m < 1 for m in milestones),
        "increasing fractions in (0, 1)",
    )


__all__ = [
    "GROUPS",
    "AlignConfig",
    "AlignMethod",
    "Backbone",
    "Choice",
    "Head",
    "Location",
    "LossConfig",
    "ModelConfig",
    "ModuleConfig",
    "OptimConfig",
    "PaddingMode",
    "Reduction",
    "Units",
    "build_group",
    "config_key",
    "to_plain",
    "validate_config",
]
