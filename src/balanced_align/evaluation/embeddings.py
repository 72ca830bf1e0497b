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


def flip_tta_landmark_embeddings(
    embed_fn: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    landmarks: Tensor,
    flip_permutation: tuple[int, ...] | list[int],
) -> Tensor:
    """Flip TTA for a model aligned by each image's own landmarks (Affine2D, FullAlign).

    Args:
        embed_fn: maps (images (B, C, H, W), landmarks (B, S, 2)) to embeddings (B, D).
        images: (B, C, H, W).
        landmarks: (B, S, 2) in normalised [−1, 1] coordinates of ``images``.
        flip_permutation: the schema's left/right permutation (S,): the mirrored face's
            landmarks are ``landmarks[:, perm]`` with x negated.

    Returns:
        (B, D) float32 unit rows: normalise(f(x, L) + f(mirror(x), mirror(L))).
    """
    if landmarks.ndim != 3 or landmarks.shape[0] != images.shape[0] or landmarks.shape[2] != 2:
        raise ValueError(
            f"landmarks: expected ({images.shape[0]}, S, 2), got {tuple(landmarks.shape)}"
        )
    mirrored = landmarks[:, list(flip_permutation)] * landmarks.new_tensor([-1.0, 1.0])
    emb = embed_fn(images, landmarks)
    emb_flip = embed_fn(torch.flip(images, dims=(-1,)), mirrored)
    return torch.nn.functional.normalize(emb.float() + emb_flip.float(), dim=1)
