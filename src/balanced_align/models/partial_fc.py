"""Partial FC (An et al., 2022): a margin head whose class centres are sharded across ranks.

With ``world`` ranks, rank r holds the centres of the classes
``shard_bounds(C, r, world) = [start_r, stop_r)`` (C // world of them, the first C % world
ranks one more). Each step:

1. the embeddings (b, D) of every rank are gathered with an autograd-aware all-gather
   (``torch.distributed.nn.functional.all_gather``) into (B, D), B = Σ b; labels too;
2. each rank keeps the centres of the labels that fall in its shard (the positives) plus a
   random ``sample_rate`` fraction of the others (the negatives): ``ceil(rate · C_r)``
   centres in all, or all positives when there are more of them;
3. it computes the margin logits (B, S_r) of its sampled centres (AM-Softmax / CosFace /
   ArcFace, :mod:`balanced_align.models.margins`, shared with the heads), and the softmax
   cross-entropy over all ranks' logits is assembled from an all-reduced max (no gradient),
   sum of exponentials and target logit (autograd-aware all-reduces).

Every rank returns the same loss: the mean cross-entropy of the global batch, equal to the
full head's at ``sample_rate = 1``. Gradients follow DDP's convention: the embeddings of rank
r receive world × ∂L/∂e (what rank r's own mean loss would give them; DDP's average over ranks
then gives the backbone ∂L/∂θ), and the sharded centres, which DDP must not average (they
differ per rank; see ``ddp_ignored`` in the module), receive exactly ∂L/∂W of their rows.

The head starts holding all C centres (one process: an ordinary margin head trained with a
sampled softmax) and is split by :meth:`PartialFC.shard` once the process group exists.
Checkpoints hold the full (C, D) matrix (:meth:`PartialFC.gather_full`), so they load at any
world size; :func:`reshard` re-splits per-rank shards saved elsewhere.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from balanced_align.core.sharding import shard_range
from balanced_align.models.margins import (
    DEFAULT_MARGINS,
    angular_margin,
    cosine_margin,
    normalized_cosine,
)


def shard_bounds(num_classes: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of the classes held by ``rank`` of ``world`` (contiguous, balanced)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world), got rank={rank}, world={world}")
    if num_classes < world:
        raise ValueError(f"num_classes={num_classes} must be >= the world size {world}")
    rows = shard_range(num_classes, rank, world)
    return rows.start, rows.stop


def reshard(shards: Sequence[Tensor], world: int) -> list[Tensor]:
    """Shards (C_r, D) saved at one world size, in rank order -> the shards for ``world``."""
    full = torch.cat(list(shards), dim=0)
    return [full[slice(*shard_bounds(len(full), r, world))] for r in range(world)]


def sample_centres(
    local_labels: Tensor, num_local: int, sample_rate: float, generator=None
) -> tuple[Tensor | None, Tensor]:
    """The centres one rank uses this step.

    Args:
        local_labels: (B,) int64 shard-local class of each row, −1 where it is not in the shard.
        num_local: C_r, the classes of the shard.
        sample_rate: fraction of the shard's centres kept, in (0, 1].

    Returns:
        (index (S,) sorted shard-local centres, or None for all of them; columns (B,): the
        column of each row's class among them, −1 where not in the shard). Every positive
        (label in the shard) is kept.
    """
    inside = local_labels >= 0
    if sample_rate >= 1.0:
        return None, local_labels
    positives = torch.unique(local_labels[inside])
    keep = min(num_local, max(math.ceil(sample_rate * num_local), len(positives)))
    scores = torch.rand(num_local, device=local_labels.device, generator=generator)
    scores[positives] = 2.0  # above every random score: always kept
    index = torch.topk(scores, keep, sorted=False).indices.sort().values
    columns = torch.where(inside, torch.searchsorted(index, local_labels.clamp_min(0)), -1)
    return index, columns


@dataclass
class PartialFCOutput:
    """loss: the global batch's mean cross-entropy (scalar, same on every rank);
    accuracy: fraction of the global batch whose target logit is the largest (scalar, no
    gradient); num_sampled: S_r, the centres this rank used."""

    loss: Tensor
    accuracy: Tensor
    num_sampled: int


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``scale``."""

    @staticmethod
    def forward(ctx, tensor: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def _autograd_collectives():
    """torch.distributed.nn.functional (its deprecation warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn import functional

    return functional


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return fn(*args)


class PartialFC(nn.Module):
    """Sharded, sampled margin head (module docstring).

    Args:
        in_features: D. num_classes: C.
        margin: "am" | "cos" (s·(cosθ − m) at the target) | "arc" (s·cos(θ + m)).
        s, m: scale and margin (m defaults to :data:`DEFAULT_MARGINS`).
        sample_rate: fraction of each shard's centres used per step, in (0, 1].

    ``forward(embeddings (b, D), labels (b,))`` -> :class:`PartialFCOutput`; in a process
    group after :meth:`shard`, every rank calls it with its own rows (sizes may differ).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        margin: str = "am",
        s: float = 64.0,
        m: float | None = None,
        sample_rate: float = 1.0,
    ) -> None:
        super().__init__()
        if margin not in DEFAULT_MARGINS:
            raise ValueError(f"margin must be one of {sorted(DEFAULT_MARGINS)}, got {margin!r}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if not s > 0:
            raise ValueError(f"scale s must be positive, got {s}")
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be positive, got {in_features}, {num_classes}"
            )
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.margin, self.s = margin, float(s)
        self.m = float(DEFAULT_MARGINS[margin] if m is None else m)
        limit = math.pi / 2 if margin == "arc" else 2.0
        if not 0.0 <= self.m < limit:
            raise ValueError(f"margin m must be in [0, {limit:.4g}) for {margin!r}, got {self.m}")
        self.sample_rate = float(sample_rate)
        self.rank, self.world = 0, 1
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    @property
    def bounds(self) -> tuple[int, int]:
        return shard_bounds(self.num_classes, self.rank, self.world)

    @property
    def sharded(self) -> bool:
        return self.world > 1

    # -- sharding ------------------------------------------------------------------------
    @torch.no_grad()
    def shard(self, rank: int, world: int) -> None:
        """Keep only the centres of ``rank`` (of ``world``); from the full matrix."""
        if self.sharded:
            raise RuntimeError(f"the head is sharded already (rank {self.rank} of {self.world})")
        start, stop = shard_bounds(self.num_classes, rank, world)
        self.weight = nn.Parameter(self.weight[start:stop].clone())
        self.rank, self.world = int(rank), int(world)

    @torch.no_grad()
    def unshard(self, full: Tensor) -> None:
        """Hold the full (C, D) matrix ``full`` again (one process)."""
        if tuple(full.shape) != (self.num_classes, self.in_features):
            raise ValueError(
                f"full centres must be ({self.num_classes}, {self.in_features}), "
                f"got {tuple(full.shape)}"
            )
        self.weight = nn.Parameter(full.to(self.weight).clone())
        self.rank, self.world = 0, 1

    def local_rows(self, full: Tensor) -> Tensor:
        """This rank's rows of a full (C, …) tensor (a checkpoint's centres or momentum)."""
        if full.shape[0] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} rows, got {tuple(full.shape)}")
        return full[slice(*self.bounds)]

    @torch.no_grad()
    def gather_full(self, shard: Tensor | None = None, dst: int = 0) -> Tensor | None:
        """The full (C, …) tensor from every rank's ``shard`` (default: the centres), on
        rank ``dst`` (None on the others). Collective: every rank must call it."""
        shard = self.weight.detach() if shard is None else shard
        if not self.sharded:
            return shard
        rows = math.ceil(self.num_classes / self.world)
        padded = F.pad(shard, (0, 0) * (shard.dim() - 1) + (0, rows - shard.shape[0]))
        parts = [torch.empty_like(padded) for _ in range(self.world)] if self.rank == dst else None
        dist.gather(padded.contiguous(), parts, dst=dst)
        if parts is None:
            return None
        sizes = [
            b - a
            for a, b in (shard_bounds(self.num_classes, r, self.world) for r in range(self.world))
        ]
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    # -- forward -------------------------------------------------------------------------
    def _gather(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, D) embeddings and (B,) labels of every rank, in rank order (each rank's rows
        padded to the largest count, the padding labelled −1)."""
        size = torch.tensor([embeddings.shape[0]], device=embeddings.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        sizes = [int(s) for s in sizes]
        pad = max(sizes) - embeddings.shape[0]
        embeddings = F.pad(embeddings, (0, 0, 0, pad))
        labels = F.pad(labels, (0, pad), value=-1)
        rows = _quiet(_autograd_collectives().all_gather, embeddings)
        gathered_labels = [torch.empty_like(labels) for _ in range(self.world)]
        dist.all_gather(gathered_labels, labels)
        return torch.cat(rows), torch.cat(gathered_labels)

    def forward(self, embeddings: Tensor, labels: Tensor) -> PartialFCOutput:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(
                f"embeddings must have shape (b, {self.in_features}), got {tuple(embeddings.shape)}"
            )
        if labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}"
            )
        labels = labels.long()
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(
                f"labels must be class indices in [0, {self.num_classes}), got "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        if self.sharded:
            embeddings, labels = self._gather(embeddings, labels)
        valid = labels >= 0
        start, stop = self.bounds
        inside = valid & (labels >= start) & (labels < stop)
        local = torch.where(inside, labels - start, -1)
        index, columns = sample_centres(local, stop - start, self.sample_rate)
        weight = self.weight if index is None else self.weight[index]
        if self.sharded:  # raw gradients are world × ∂L (every rank returns L); see docstring
            weight = _ScaleGrad.apply(weight, 1.0 / self.world)
        return self._loss(embeddings, weight, columns, valid)

    def _loss(self, embeddings: Tensor, weight: Tensor, columns: Tensor, valid: Tensor):
        cos = normalized_cosine(embeddings, weight)  # (B, S) float32
        num_sampled = cos.shape[1]
        inside = columns >= 0
        # rows without a target here point at a dummy column, dropped after the margin
        cos = torch.cat([cos, cos.new_zeros(cos.shape[0], 1)], dim=1)
        target = torch.where(inside, columns, num_sampled)
        if self.margin == "arc":
            margined = angular_margin(cos, target, self.m)
        else:
            margined = cosine_margin(cos, target, self.m)
        logits = self.s * margined[:, :num_sampled]
        target_logit = torch.where(inside, self.s * margined.gather(1, target[:, None])[:, 0], 0.0)
        row_max = logits.detach().max(dim=1).values
        if self.sharded:
            dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
        sum_exp = (logits - row_max[:, None]).exp().sum(dim=1)
        if self.sharded:
            collectives = _autograd_collectives()
            sum_exp = _quiet(collectives.all_reduce, sum_exp)
            target_logit = _quiet(collectives.all_reduce, target_logit)
        cross_entropy = sum_exp.log() + row_max - target_logit
        count = valid.sum().clamp_min(1)
        loss = torch.where(valid, cross_entropy, 0.0).sum() / count
        with torch.no_grad():
            accuracy = ((target_logit >= row_max) & valid).sum() / count
        return PartialFCOutput(loss=loss, accuracy=accuracy, num_sampled=num_sampled)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"margin={self.margin}, s={self.s}, m={self.m}, sample_rate={self.sample_rate}, "
            f"rank={self.rank}, world={self.world}"
        )


__all__ = [
    "PartialFC",
    "PartialFCOutput",
    "reshard",
    "sample_centres",
    "shard_bounds",
]
