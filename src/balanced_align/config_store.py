"""Hydra wiring of the configuration schema: ``train_schema``, the typed base of train.yaml.

:func:`register_configs` stores ``train_schema`` in Hydra's ``ConfigStore``;
``conf/train.yaml`` lists it first in its defaults, so everything composed on top of it (its
own keys, the group files, an experiment, the command line) is checked against it:

- ``model``, ``align``, ``loss``, ``optim``: the dataclasses of
  :mod:`balanced_align.config_schema`, with their defaults (the one home of those). A group
  file only overrides them. A value of the wrong type or outside a closed choice
  (``align.location=fmapp``) and an unknown key (``align.tps_grid_sizee=3``, or a key in a
  group file) fail at composition, with the full key; ``python train.py … --cfg job`` fails
  too. A key *added* with ``+`` is accepted by Hydra and refused by
  :func:`balanced_align.training.validate` when the job starts.
- the top-level keys of the training job (:class:`TrainSettings`): types only; their values
  are in ``conf/train.yaml``.
- ``data``, ``trainer``, ``logger``, ``callbacks``, ``paths``: not typed here.

Entry points call :func:`register_configs` before ``hydra.main``; so must anything that
composes ``train.yaml`` itself (``hydra.compose``). Choices compose as enum members that
compare and print as their strings; ``OmegaConf.to_container(…, enum_to_str=True)`` gives the
strings (the training job's ``plain``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields

from omegaconf import (
    MISSING,
    BooleanNode,
    DictConfig,
    EnumNode,
    FloatNode,
    IntegerNode,
    ListConfig,
    OmegaConf,
    StringNode,
)

from balanced_align.config_schema import GROUPS, Choice, config_key, field_types, optional_of

#: the name of the schema in Hydra's ConfigStore (``defaults: [train_schema, …]``)
TRAIN_SCHEMA = "train_schema"


@dataclass
class TrainSettings:
    """Types of the training job's top-level keys (values: ``conf/train.yaml``)."""

    task_name: str = MISSING
    seed: int = MISSING
    ckpt_path: str | None = MISSING
    resume_sweep: bool = MISSING
    test: bool = MISSING
    figures: bool = MISSING
    print_config: bool = MISSING
    optimized_metric: str | None = MISSING


_SCALAR_NODES = {bool: BooleanNode, int: IntegerNode, float: FloatNode, str: StringNode}


def _node(annotation, value, name: str):
    """The OmegaConf node of one field: typed, optional only for ``X | None``."""
    inner = optional_of(annotation)
    optional = inner is not None
    annotation = inner if optional else annotation
    if isinstance(annotation, type) and issubclass(annotation, Choice):
        return EnumNode(enum_type=annotation, value=value, is_optional=optional)
    if annotation in _SCALAR_NODES:
        return _SCALAR_NODES[annotation](value=value, is_optional=optional)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return ListConfig(content=list(value), element_type=item, is_optional=optional)
    raise TypeError(f"{name}: no OmegaConf node for schema type {annotation!r}")


def schema_node(cls: type, struct: bool = True) -> DictConfig:
    """A typed ``DictConfig`` of dataclass ``cls``: its config keys, types and defaults.

    Built node by node (rather than ``OmegaConf.structured``) because ``loss.lambda`` is not
    a Python name. ``struct``: unknown keys are errors.
    """
    defaults, annotations = cls(), field_types(cls)
    node = DictConfig(
        {
            config_key(f): _node(annotations[f.name], getattr(defaults, f.name), f.name)
            for f in fields(cls)
        }
    )
    OmegaConf.set_struct(node, struct)
    return node


def train_schema() -> DictConfig:
    """The base of ``conf/train.yaml``: the typed groups and top-level keys."""
    groups = {group: schema_node(cls) for group, cls in GROUPS.items()}
    top = schema_node(TrainSettings, struct=False)  # the other groups are added on top
    for group, node in groups.items():
        top[group] = node
    return top


def register_configs() -> None:
    """Store :data:`TRAIN_SCHEMA` in Hydra's ConfigStore (again: replaced, harmless)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=TRAIN_SCHEMA, node=train_schema())


__all__ = ["TRAIN_SCHEMA", "TrainSettings", "register_configs", "schema_node", "train_schema"]
