"""torchmetrics wrappers that gather evaluation rows across DDP ranks.

:class:`EmbeddingCollector` keeps, per sample, its dataset index, its embedding and named
extras (labels, yaw, landmarks, …) as ``cat`` list states, so torchmetrics gathers them from
every rank. ``compute()`` orders the rows by dataset index and drops duplicates: a
``DistributedSampler`` pads the last batches with repeated samples, which must not be
counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

_RESERVED = ("indices", "embeddings")


class EmbeddingCollector(Metric):
    """Collect per-sample embeddings and extras from all ranks, ordered by dataset index.

    Args:
        extras: names of the per-sample extras that every ``update`` must pass, e.g.
            ``("labels", "yaw", "aligned_landmarks")``.
        num_items: if given, ``compute()`` checks that exactly the indices 0..num_items-1
            were seen (so row i of the result is dataset item i).
        check_duplicates: if True, ``compute()`` checks that repeated indices carry the same
            rows (integers exactly, floats within 1e-2 absolute + 1e-2 relative: loose enough
            for AMP and batch-composition noise, tight enough to catch mixed-up indices).
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``compute_on_cpu=True`` to move
            the states to the CPU after each update and spare GPU memory).

    ``update(indices (B,), embeddings (B, D), **extras (B, ...))``; ``compute()`` returns a dict
    with ``indices`` (M,) sorted unique int64, ``embeddings`` (M, D) and every extra (M, ...),
    the first occurrence kept for each index (rank order, then update order). Calling the
    collector like a module is the same as ``update``. Call ``reset()`` after each epoch's
    ``compute()``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        extras: Sequence[str] = (),
        num_items: int | None = None,
        check_duplicates: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(extras, str):
            extras = (extras,)
        names = tuple(extras)
        for name in names:
            if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
                raise ValueError(f"extras: invalid or reserved extra name {name!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"extras: duplicated names in {names}")
        if num_items is not None and num_items < 0:
            raise ValueError(f"num_items must be >= 0, got {num_items}")
        self.extra_names = names
        self.num_items = num_items
        self.check_duplicates = check_duplicates
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        for name in names:
            self.add_state(self._state(name), default=[], dist_reduce_fx="cat")

    @staticmethod
    def _state(name: str) -> str:
        return f"extra_{name}"

    def update(self, indices: Tensor, embeddings: Tensor, **extras: Tensor) -> None:
        """Store one batch. indices (B,) int; embeddings (B, D); each declared extra (B, ...)."""
        unknown = sorted(set(extras) - set(self.extra_names))
        missing = sorted(set(self.extra_names) - set(extras))
        if unknown or missing:
            raise ValueError(
                f"EmbeddingCollector.update: extras must be exactly {self.extra_names}; "
                f"unknown {unknown}, missing {missing}"
            )
        if not torch.is_tensor(indices) or indices.ndim != 1:
            raise ValueError(
                f"indices: expected a 1-D tensor, got {getattr(indices, 'shape', indices)}"
            )
        if indices.is_floating_point() or indices.is_complex():
            raise TypeError(f"indices: expected integers, got {indices.dtype}")
        b = indices.shape[0]
        if not torch.is_tensor(embeddings) or embeddings.ndim != 2 or embeddings.shape[0] != b:
            raise ValueError(
                f"embeddings: expected a ({b}, D) tensor, got {getattr(embeddings, 'shape', None)}"
            )
        self.indices.append(indices.detach().long())
        self.embeddings.append(embeddings.detach())
        for name in self.extra_names:
            value = extras[name]
            if not torch.is_tensor(value) or value.ndim < 1 or value.shape[0] != b:
                raise ValueError(
                    f"{name}: expected a ({b}, ...) tensor, got {getattr(value, 'shape', value)}"
                )
            getattr(self, self._state(name)).append(value.detach())

    def forward(self, *args, **kwargs) -> None:
        """Same as :meth:`update`; there is no per-batch value (the protocols need every row)."""
        self.update(*args, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        """Rows ordered by dataset index, duplicates removed; see the class docstring."""
        if isinstance(self.indices, list) and len(self.indices) == 0:
            raise RuntimeError("EmbeddingCollector.compute() called before any update()")
        idx = dim_zero_cat(self.indices).long()
        order = torch.sort(idx, stable=True).indices
        sorted_idx = idx[order]
        first = torch.ones_like(sorted_idx, dtype=torch.bool)
        first[1:] = sorted_idx[1:] != sorted_idx[:-1]
        keep = order[first]
        unique_idx = sorted_idx[first]
        if self.num_items is not None and not torch.equal(
            unique_idx.cpu(), torch.arange(self.num_items)
        ):
            raise ValueError(
                f"EmbeddingCollector: expected indices 0..{self.num_items - 1}, got "
                f"{unique_idx.numel()} unique indices in "
                f"[{int(unique_idx.min())}, {int(unique_idx.max())}]"
            )
        group_first = keep[torch.cumsum(first.long(), 0) - 1]  # first row of each sorted row
        out = {"indices": unique_idx}
        states = {"embeddings": self.embeddings}
        states.update({n: getattr(self, self._state(n)) for n in self.extra_names})
        for name, state in states.items():
            rows = dim_zero_cat(state)
            if self.check_duplicates and not bool(first.all()):
                self._check_same(name, rows[order], rows[group_first], sorted_idx)
            out[name] = rows[keep]
        return out

    @staticmethod
    def _check_same(name: str, rows: Tensor, ref: Tensor, sorted_idx: Tensor) -> None:
        if rows.is_floating_point():
            bad = ~torch.isclose(rows.float(), ref.float(), rtol=1e-2, atol=1e-2, equal_nan=True)
        else:
            bad = rows != ref
        bad = bad.reshape(bad.shape[0], -1).any(1)
        if bool(bad.any()):
            raise ValueError(
                f"EmbeddingCollector: index {int(sorted_idx[bad][0])} was collected twice "
                f"with different {name}"
            )
