"""Input checks shared by the protocol functions: tensors or arrays in, clear errors out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_tensor(x, name: str, device: torch.device | None = None) -> Tensor:
    """A torch tensor view/copy of ``x`` (tensor, numpy array or sequence) on ``device``."""
    if torch.is_tensor(x):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name}: expected a tensor or array, got {type(x).__name__}") from err
    return t if device is None else t.to(device)


def float_matrix(x, name: str, device: torch.device | None = None) -> Tensor:
    """(N, D) float32 tensor; raises ValueError naming ``name`` on a bad shape or non-finite."""
    t = as_tensor(x, name, device)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, D), got {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name}: expected a floating point tensor, got {t.dtype}")
    t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t


def vector(x, name: str, length: int | None = None, device: torch.device | None = None) -> Tensor:
    """1-D tensor of ``length`` (if given); raises ValueError naming ``name`` otherwise."""
    t = as_tensor(x, name, device)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {tuple(t.shape)}")
    if length is not None and t.shape[0] != length:
        raise ValueError(f"{name}: expected length {length}, got {t.shape[0]}")
    return t


def label_vector(x, name: str, length: int, device: torch.device | None = None) -> Tensor:
    """1-D int64 labels of ``length``."""
    t = vector(x, name, length, device)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name}: expected integer labels, got {t.dtype}")
    return t.long()


def normalise(x: Tensor) -> Tensor:
    """Row-wise L2 normalisation in float32 (zero rows stay zero)."""
    return torch.nn.functional.normalize(x.float(), dim=-1)
