"""MegaFace-style identification with a large distractor set, streamed in chunks.

See docs/design.md §5.3.

Protocol. Similarity is the cosine s(a, b) of L2-normalised embeddings. For every probe
identity with images 1..n, every ordered pair (gallery i, probe j), i ≠ j, of that identity
is one trial: image i is put into the distractor gallery and image j searches it. The *rank*
of the mate is

    rank(j, i) = 1 + #{ distractors d : s(j, d) >= s(j, i) }

(ties count against the mate). The trial is a hit at rank r iff rank(j, i) <= r, i.e. iff
the r-th largest distractor similarity of probe j is < s(j, i); rank-1 is the rule
s(j, i) > max_d s(j, d). Only the top-k distractor similarities of each probe image are
needed, so they are computed once by streaming the distractors in chunks: memory is
O(probes × chunk_size), independent of the number of distractors.

The distractors' identities must be disjoint from the probes' (the caller guarantees this:
a distractor of a probe's identity would be counted as an impostor).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from balanced_align.evaluation._inputs import float_matrix, label_vector, normalise

#: probe rows per block when scoring the probe × probe mate similarities
_MATE_BLOCK = 1024


@dataclass
class IdentificationResult:
    """Outcome of :func:`megaface_rank1`.

    rank1: fraction of (gallery, probe) trials that are rank-1 hits.
    cmc: rank r -> fraction of trials with mate rank <= r (always contains 1).
    num_pairs: number of ordered (gallery, probe) trials.
    num_distractors: number of distractors searched.
    """

    rank1: float
    cmc: dict[int, float] = field(default_factory=dict)
    num_pairs: int = 0
    num_distractors: int = 0


def _check_ranks(ranks: Sequence[int]) -> list[int]:
    out = sorted({1, *(int(r) for r in ranks)})
    if out[0] < 1 or any(int(r) != r for r in ranks):
        raise ValueError(f"ranks: expected positive integers, got {tuple(ranks)}")
    return out


def _iter_chunks(source, dim: int, chunk_size: int, device: torch.device) -> Iterator[Tensor]:
    """Yield normalised float32 (C, dim) chunks of ``source`` (tensor, array or memmap)."""
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"distractor_emb: expected shape (N, D), got {shape}")
    if shape[1] != dim:
        raise ValueError(f"distractor_emb: feature size {shape[1]} != probe feature size {dim}")
    for start in range(0, shape[0], chunk_size):
        stop = min(start + chunk_size, shape[0])
        block = source[start:stop]
        if torch.is_tensor(block):
            chunk = block.detach().to(device=device, dtype=torch.float32)
        else:
            chunk = torch.from_numpy(np.array(block, dtype=np.float32, order="C")).to(device)
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError(f"distractor_emb: rows {start}..{stop - 1} contain NaN or inf")
        yield normalise(chunk)


def distractor_topk(probes: Tensor, distractor_emb, k: int, chunk_size: int = 8192) -> Tensor:
    """Top-k distractor cosine similarities of each probe, streamed in chunks.

    Args:
        probes: (P, D) L2-normalised float32 probe embeddings (their device is used).
        distractor_emb: (N, D) tensor, numpy array or ``np.memmap``; normalised per chunk.
        k: how many of the largest similarities to keep.
        chunk_size: distractor rows per chunk; peak memory ~ 4·P·chunk_size bytes.

    Returns:
        (P, k) float32, each row sorted descending, padded with -inf when N < k.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    top = torch.full((probes.shape[0], k), float("-inf"), device=probes.device)
    for chunk in _iter_chunks(distractor_emb, probes.shape[1], chunk_size, probes.device):
        sims = probes @ chunk.T  # (P, C)
        if k == 1:
            top = torch.maximum(top, sims.amax(1, keepdim=True))
        else:
            vals = sims.topk(min(k, sims.shape[1]), dim=1).values
            top = torch.cat([top, vals], 1).topk(k, dim=1).values
        del sims, chunk  # free before the next chunk's matmul: one (P, C) matrix at a time
    return top


def megaface_rank1(
    probe_emb,
    probe_labels,
    distractor_emb,
    chunk_size: int = 8192,
    ranks: Sequence[int] = (1,),
) -> IdentificationResult:
    """MegaFace rank-1 (and CMC) identification rate; see the module docstring.

    Args:
        probe_emb: (P, D) probe embeddings (tensor or array); the computation runs on their
            device.
        probe_labels: (P,) integer identity of each probe.
        distractor_emb: (N, D) torch tensor, numpy array or ``np.memmap`` of distractor
            embeddings, identities disjoint from the probes'. Read and converted chunk by chunk.
        chunk_size: distractor rows per chunk (memory ~ 4·P·chunk_size bytes).
        ranks: CMC ranks to report (rank 1 is always included).

    Returns:
        :class:`IdentificationResult`.
    """
    probes = normalise(float_matrix(probe_emb, "probe_emb"))
    labels = label_vector(probe_labels, "probe_labels", probes.shape[0], probes.device)
    rank_list = _check_ranks(ranks)
    top = distractor_topk(probes, distractor_emb, rank_list[-1], chunk_size)

    hits = {r: 0 for r in rank_list}
    num_pairs = 0
    p = probes.shape[0]
    for r0 in range(0, p, _MATE_BLOCK):
        r1 = min(r0 + _MATE_BLOCK, p)
        mate = probes[r0:r1] @ probes.T  # (B, P): row j = probe, column i = gallery
        same = labels[r0:r1, None] == labels[None, :]
        rows = torch.arange(r1 - r0, device=probes.device)
        same[rows, rows + r0] = False
        num_pairs += int(same.sum())
        for r in rank_list:
            hits[r] += int(((mate > top[r0:r1, r - 1 : r]) & same).sum())
    if num_pairs == 0:
        raise ValueError("probe_labels: no identity has two or more probe images")
    cmc = {r: hits[r] / num_pairs for r in rank_list}
    return IdentificationResult(
        rank1=cmc[1],
        cmc=cmc,
        num_pairs=num_pairs,
        num_distractors=int(distractor_emb.shape[0]),
    )
