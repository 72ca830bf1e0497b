"""Rank-1 identification per yaw bin, Multi-PIE style (docs/design.md §5).

The gallery holds one (frontal) image per identity. Each probe is assigned to the yaw bin b
nearest to its |yaw| among those with | |yaw| − b | <= tolerance (ties go to the smaller
bin); probes outside every bin, or with NaN yaw, are ignored. A probe is a rank-1 hit iff the
gallery image with the largest cosine similarity has the probe's label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from balanced_align.core.protocol import DEFAULT_YAW_BINS
from balanced_align.evaluation._inputs import float_matrix, label_vector, normalise, vector


class PoseBin(NamedTuple):
    """Rank-1 rate of one yaw bin (NaN when ``count`` is 0) and its number of probes."""

    rank1: float
    count: int


def assign_yaw_bins(yaw, bins: Sequence[float], tolerance: float) -> torch.Tensor:
    """Index into ``bins`` of each yaw's bin, or -1 when none is within ``tolerance``.

    yaw: (P,) degrees (sign ignored; NaN -> -1). Returns (P,) int64.
    """
    yaw_t = vector(yaw, "probe_yaw").double().abs()
    if len(bins) == 0:
        return torch.full(yaw_t.shape, -1, dtype=torch.long, device=yaw_t.device)
    centres = torch.tensor([float(b) for b in bins], dtype=torch.float64, device=yaw_t.device)
    gap = (yaw_t[:, None] - centres[None, :]).abs()  # (P, B)
    gap = torch.where(gap <= tolerance, gap, torch.full_like(gap, math.inf))  # NaN -> inf
    # nearest centre; among equal gaps the smaller centre
    order = torch.argsort(centres)
    best = order[torch.argmin(gap[:, order], dim=1)]
    return torch.where(torch.isfinite(gap.min(1).values), best, torch.full_like(best, -1))


def per_pose_rank1(
    gallery_emb,
    gallery_labels,
    probe_emb,
    probe_labels,
    probe_yaw,
    bins: Sequence[float] = DEFAULT_YAW_BINS,
    tolerance: float = 7.5,
    include_frontal: bool = False,
) -> dict[float, PoseBin]:
    """Rank-1 rate of closed-set identification against a frontal gallery, per yaw bin.

    Args:
        gallery_emb: (G, D) gallery embeddings, one image per identity.
        gallery_labels: (G,) distinct integer labels.
        probe_emb: (P, D) probe embeddings (computed on their device).
        probe_labels: (P,) integer labels, each present in the gallery.
        probe_yaw: (P,) yaw in degrees (sign ignored).
        bins: yaw bin centres in degrees.
        tolerance: half-width of a bin in degrees.
        include_frontal: also report bin 0 (near-frontal probes).

    Returns:
        dict bin -> :class:`PoseBin` (rank1, count) for every bin (and 0 first if
        ``include_frontal``); rank1 is NaN where count is 0.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    probes = normalise(float_matrix(probe_emb, "probe_emb"))
    device = probes.device
    gallery = normalise(float_matrix(gallery_emb, "gallery_emb", device))
    if gallery.shape[1] != probes.shape[1]:
        raise ValueError(
            f"gallery_emb has feature size {gallery.shape[1]}, probe_emb {probes.shape[1]}"
        )
    g_labels = label_vector(gallery_labels, "gallery_labels", gallery.shape[0], device)
    p_labels = label_vector(probe_labels, "probe_labels", probes.shape[0], device)
    if torch.unique(g_labels).numel() != g_labels.numel():
        raise ValueError("gallery_labels: the gallery must hold one image per identity")
    missing = ~torch.isin(p_labels, g_labels)
    if bool(missing.any()):
        raise ValueError(
            f"probe_labels: {int(missing.sum())} probes have no gallery image "
            f"(e.g. label {int(p_labels[missing][0])})"
        )
    all_bins = ([0] if include_frontal else []) + list(bins)
    if len(set(all_bins)) != len(all_bins):
        raise ValueError(f"bins: duplicated bin centres in {tuple(all_bins)}")
    bin_of = assign_yaw_bins(vector(probe_yaw, "probe_yaw", probes.shape[0]), all_bins, tolerance)
    bin_of = bin_of.to(device)

    if gallery.shape[0] > 0 and probes.shape[0] > 0:
        nearest = (probes @ gallery.T).argmax(1)
        hit = g_labels[nearest] == p_labels
    else:
        hit = torch.zeros(probes.shape[0], dtype=torch.bool, device=device)
    out: dict[float, PoseBin] = {}
    for k, b in enumerate(all_bins):
        members = bin_of == k
        count = int(members.sum())
        rate = int(hit[members].sum()) / count if count else float("nan")
        out[b] = PoseBin(rate, count)
    return out
