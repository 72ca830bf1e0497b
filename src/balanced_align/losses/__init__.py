"""Losses: the alignment loss (template, α, regulariser) and optimizer parameter groups."""

from balanced_align.losses.alignment import (
    DEFAULT_ALPHA_INIT,
    AlignmentLoss,
    AlignmentLossOutput,
)
from balanced_align.losses.param_groups import (
    build_param_groups,
    mark_no_weight_decay,
    takes_weight_decay,
)

__all__ = [
    "DEFAULT_ALPHA_INIT",
    "AlignmentLoss",
    "AlignmentLossOutput",
    "build_param_groups",
    "mark_no_weight_decay",
    "takes_weight_decay",
]
