"""Flip test-time augmentation for evaluation embeddings (docs/design.md §5)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def flip_tta_embeddings(embed_fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """L2-normalised sum of the embeddings of the images and of their horizontal mirrors.

    Args:
        embed_fn: maps images (B, C, H, W) to embeddings (B, D).
        images: (B, C, H, W).

    Returns:
        (B, D) float32, rows of unit norm. Gradients flow if ``embed_fn`` allows them; wrap
        the call in ``torch.no_grad()`` for evaluation.
    """
    if not torch.is_tensor(images) or images.ndim != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got {shape}")
    emb = embed_fn(images)
    emb_flip = embed_fn(torch.flip(images, dims=(-1,)))
    if emb.ndim != 2 or emb.shape != emb_flip.shape or emb.shape[0] != images.shape[0]:
        raise ValueError(
            f"embed_fn: expected (B, D) embeddings with B={images.shape[0]}, "
            f"got {tuple(emb.shape)} and {tuple(emb_flip.shape)}"
        )
    return torch.nn.functional.normalize(emb.float() + emb_flip.float(), dim=1)
