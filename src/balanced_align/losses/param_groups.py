"""Optimizer parameter groups: which parameters take weight decay.

Rule: a trainable parameter is *excluded* from weight decay when any of these holds

1. it carries ``param._no_weight_decay = True`` (set by :class:`AlignmentLoss` on the
   template T and the α logits; use :func:`mark_no_weight_decay` for others);
2. its owning module is a normalisation layer (BatchNorm, LayerNorm, GroupNorm,
   InstanceNorm) or a PReLU (slopes);
3. its name ends in ``bias``, ``template``, ``alpha_logit`` or ``alpha``;
4. it has at most one dimension (biases, norm scales, PReLU slopes, α: this catches them when
   only (name, parameter) pairs are given and the owning module is unknown).

Everything else (conv and linear weights, margin-head class weights) takes weight decay.
Parameters with ``requires_grad=False`` are left out; a parameter shared by several modules
appears once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import nn

NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.PReLU,
)
NO_DECAY_NAMES: tuple[str, ...] = ("bias", "template", "alpha_logit", "alpha")


def mark_no_weight_decay(param: nn.Parameter) -> nn.Parameter:
    """Flag ``param`` so that :func:`build_param_groups` never decays it."""
    param._no_weight_decay = True
    return param


def _named_with_owner(source) -> list[tuple[str, nn.Parameter, nn.Module | None]]:
    """(name, parameter, owning module or None) for every parameter of ``source``."""
    if isinstance(source, nn.Module):
        return [
            (f"{mod_name}.{p_name}" if mod_name else p_name, param, module)
            for mod_name, module in source.named_modules(remove_duplicate=False)
            for p_name, param in module.named_parameters(recurse=False)
        ]
    if isinstance(source, Mapping):
        out = []
        for key, value in source.items():
            if not isinstance(value, nn.Module):
                raise TypeError(f"modules mapping value {key!r} is not an nn.Module")
            out += [(f"{key}.{n}", p, m) for n, p, m in _named_with_owner(value)]
        return out
    if isinstance(source, Iterable):
        out = []
        for index, item in enumerate(source):
            if isinstance(item, nn.Module):
                out += [(f"{index}.{n}", p, m) for n, p, m in _named_with_owner(item)]
            elif (
                isinstance(item, tuple)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], nn.Parameter)
            ):
                out.append((item[0], item[1], None))
            else:
                raise TypeError(
                    "modules_or_named_params must be a module, modules, a name → module "
                    f"mapping or (name, Parameter) pairs; item {index} is {type(item).__name__}"
                )
        return out
    raise TypeError(
        f"modules_or_named_params must be a module or an iterable, got {type(source).__name__}"
    )


def takes_weight_decay(name: str, param: nn.Parameter, owner: nn.Module | None = None) -> bool:
    """Whether ``param`` (called ``name``, owned by ``owner`` if known) takes weight decay."""
    if getattr(param, "_no_weight_decay", False):
        return False
    if owner is not None and isinstance(owner, NO_DECAY_MODULES):
        return False
    if name.rsplit(".", 1)[-1] in NO_DECAY_NAMES:
        return False
    return param.dim() > 1


def build_param_groups(modules_or_named_params, weight_decay: float) -> list[dict]:
    """Two optimizer groups: ``[decay, no_decay]`` by the rule in the module docstring.

    Args:
        modules_or_named_params: an ``nn.Module``, an iterable of modules, a name → module
            mapping, or an iterable of (name, Parameter) pairs (e.g. ``named_parameters()``).
        weight_decay: decay of the first group; the second group has 0.

    Returns:
        ``[{"name": "decay", "params": [...], "param_names": [...], "weight_decay": wd},
        {"name": "no_decay", "params": [...], "param_names": [...], "weight_decay": 0.0}]``.
        Both groups are always present (possibly empty).
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
    decay: dict[int, tuple[str, nn.Parameter]] = {}
    no_decay: dict[int, tuple[str, nn.Parameter]] = {}
    for name, param, owner in _named_with_owner(modules_or_named_params):
        if not param.requires_grad:
            continue
        key = id(param)
        if key in no_decay:
            continue
        if takes_weight_decay(name, param, owner):
            decay.setdefault(key, (name, param))
        else:
            # excluded under any of its names/owners wins
            decay.pop(key, None)
            no_decay[key] = (name, param)
    return [
        {
            "name": "decay",
            "params": [p for _, p in decay.values()],
            "param_names": [n for n, _ in decay.values()],
            "weight_decay": float(weight_decay),
        },
        {
            "name": "no_decay",
            "params": [p for _, p in no_decay.values()],
            "param_names": [n for n, _ in no_decay.values()],
            "weight_decay": 0.0,
        },
    ]


__all__ = [
    "NO_DECAY_MODULES",
    "NO_DECAY_NAMES",
    "build_param_groups",
    "mark_no_weight_decay",
    "takes_weight_decay",
]
