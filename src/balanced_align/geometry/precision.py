"""Geometry runs in float32 even under autocast (docs/design.md §2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def full_precision(fn: F) -> F:
    """Run ``fn`` with autocast disabled and every floating tensor argument lifted to float32.

    float64 inputs stay float64 (gradcheck and references need them).
    """

    def lift(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if value.dtype in (torch.float16, torch.bfloat16):
                return value.float()
        return value

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(lift(a) for a in args)
        kwargs = {k: lift(v) for k, v in kwargs.items()}
        with torch.autocast(device_type="cpu", enabled=False):
            if torch.cuda.is_available():
                with torch.autocast(device_type="cuda", enabled=False):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
