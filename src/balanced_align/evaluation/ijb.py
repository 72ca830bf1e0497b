"""IJB-B / IJB-C 1:1 template verification (docs/design.md §5.2), streamed.

Protocol, as insightface evaluates these sets:

1. every face (a loose crop) is aligned by its five points (the caller's ``align``, e.g.
   Affine2D's similarity onto the 5-point template) and embedded (flip TTA, unit norm);
2. the faces of one (template, media) pair are averaged: a media feature;
3. a template's feature is the mean of its media features, L2-normalised;
4. a template pair's score is the cosine of the two template features;
5. the ROC of the scores against the pair labels gives TAR at FAR = 1e-6 … 1e-1.

Memory: face embeddings arrive batch by batch and are added into per-media sums
(:class:`MediaPooling`, a (G, D) array for G media groups), so nothing per face is kept
besides the parsed meta data; the embedder sees at most ``batch_size`` images at a time.

TAR at FAR f is the largest true accept rate of an operating point whose false accept rate
is <= f (:func:`tar_at_far`, on the full ROC; :func:`roc_curve` has one point per distinct
score, as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``). insightface reports
the ROC point whose FAR is *nearest* to f instead, which can be a FAR slightly above f.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from balanced_align.data.formats.ijb import IJBSet
from balanced_align.data.validation import read_image
from balanced_align.evaluation.benchmarks import EmbedFn, EmbedOptions, embed_batches
from balanced_align.evaluation.protocol import far_metric_name
from balanced_align.safe_paths import resolve_inside

#: false accept rates reported on IJB-B/C
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: FAR grid of the saved ROC (log-spaced)
ROC_GRID = np.logspace(-7, 0, 141)

#: (image (H, W, 3) uint8, five points (5, 2) corner pixels) -> (crop, five points in it)
AlignFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class MediaPooling:
    """Running per-media sums of face embeddings, then media means -> template features.

    group_of_face: (N,) int media-group index of each face; template_of_group: (G,) template
    id of each group. ``add`` takes embeddings (B, D) of faces ``rows`` (B,); only the (G, D)
    sums and (G,) counts are kept.
    """

    def __init__(self, group_of_face: np.ndarray, template_of_group: np.ndarray) -> None:
        self.group_of_face = np.asarray(group_of_face, np.int64)
        self.template_of_group = np.asarray(template_of_group, np.int64)
        self.sums: torch.Tensor | None = None
        self.counts = np.zeros(len(self.template_of_group), np.int64)

    def add(self, rows: np.ndarray, embeddings: np.ndarray) -> None:
        """Add embeddings (B, D) of faces ``rows`` (B,) (float64 sums, ``index_add``)."""
        embeddings = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(rows):
            raise ValueError(f"embeddings: expected ({len(rows)}, D), got {embeddings.shape}")
        if self.sums is None:
            self.sums = torch.zeros(
                (len(self.template_of_group), embeddings.shape[1]), dtype=torch.float64
            )
        groups = self.group_of_face[rows]
        self.sums.index_add_(0, torch.from_numpy(groups), embeddings)
        np.add.at(self.counts, groups, 1)

    def templates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(template ids (T,) sorted, features (T, D) float32 unit rows)``."""
        if self.sums is None or (self.counts == 0).any():
            raise ValueError("MediaPooling: some media groups received no face")
        media = self.sums / torch.from_numpy(self.counts)[:, None]
        ids, template_index = np.unique(self.template_of_group, return_inverse=True)
        features = torch.zeros((len(ids), media.shape[1]), dtype=torch.float64)
        features.index_add_(0, torch.from_numpy(template_index.reshape(-1)), media)
        features = torch.nn.functional.normalize(features, dim=1, eps=1e-12)
        return ids, features.numpy().astype(np.float32)


def pair_scores(
    ids: np.ndarray, features: np.ndarray, pairs: np.ndarray, chunk_size: int = 1 << 16
) -> np.ndarray:
    """Cosine scores (P,) float32 of template pairs (P, 2) (ids), given sorted template
    ``ids`` (T,) and their unit ``features`` (T, D); computed ``chunk_size`` pairs at a time."""
    index = np.searchsorted(ids, pairs)
    if (index >= len(ids)).any() or (ids[np.minimum(index, len(ids) - 1)] != pairs).any():
        raise ValueError("pair_scores: a pair names a template without features")
    scores = np.empty(len(pairs), np.float32)
    for start in range(0, len(pairs), chunk_size):
        a, b = index[start : start + chunk_size].T
        scores[start : start + chunk_size] = np.einsum("ij,ij->i", features[a], features[b])
    return scores


def roc_curve(scores: np.ndarray, labels: np.ndarray):
    """Full ROC of ``scores`` (P,) (higher = same) against ``labels`` (P,) bool.

    Returns ``(fpr, tpr, thresholds)``, one point per distinct score in decreasing order
    (accept iff score >= threshold), after a first point (0, 0, +inf).
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"roc_curve: {positives} same and {negatives} different pairs")
    order = np.argsort(-scores, kind="stable")
    ranked, same = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # end of each tie run
    tps = np.cumsum(same)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / negatives]
    tpr = np.r_[0.0, tps / positives]
    return fpr, tpr, np.r_[np.inf, ranked[last]]


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """Largest TPR of a ROC point with FPR <= ``far``."""
    return float(tpr[fpr <= far + 1e-15].max())


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC (trapezoids; written out: ``np.trapezoid`` needs numpy >= 2)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def save_roc(path: str | Path, fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> Path:
    """Write the ROC sampled on :data:`ROC_GRID` as CSV ``far,tar,threshold`` (TAR at each
    FAR as :func:`tar_at_far`, and the threshold reaching it). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["far,tar,threshold"]
    for far in ROC_GRID:
        ok = np.flatnonzero(fpr <= far + 1e-15)
        best = ok[np.argmax(tpr[ok])]
        lines.append(f"{far:.6g},{tpr[best]:.8f},{thresholds[best]:.8f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _face_loader(ijb: IJBSet, align: AlignFn, with_landmarks: bool):
    def load(i: int):
        image = read_image(resolve_inside(ijb.image_root, ijb.names[i], what="IJB image"))
        crop, points = align(image, ijb.landmarks[i])
        return (crop, points) if with_landmarks else crop

    return load


def ijb_benchmark(
    embed: EmbedFn,
    ijb: IJBSet,
    options: EmbedOptions,
    align: AlignFn,
    with_landmarks: bool = False,
    roc_path: str | Path | None = None,
    fars=IJB_FARS,
) -> dict[str, float]:
    """IJB-B/C 1:1 verification (module docstring): ``tar@far=…``, ``roc_auc`` and counts.

    align: aligns each loose crop by its five points (returns the crop and the points in
    it); with_landmarks: ``embed`` takes the aligned five points too (a model aligned by
    each image's landmarks). roc_path: where the ROC is saved as CSV (:func:`save_roc`).
    """
    group, template_of_group, _ = ijb.media_groups()
    pooling = MediaPooling(group, template_of_group)
    done = 0
    load = _face_loader(ijb, align, with_landmarks)
    for chunk in embed_batches(embed, len(ijb), load, options):
        pooling.add(np.arange(done, done + len(chunk)), chunk)
        done += len(chunk)
    ids, features = pooling.templates()
    scores = pair_scores(ids, features, ijb.pairs)
    fpr, tpr, thresholds = roc_curve(scores, ijb.labels)
    out = {far_metric_name(far): tar_at_far(fpr, tpr, far) for far in fars}
    out["roc_auc"] = roc_auc(fpr, tpr)
    if roc_path is not None:
        save_roc(roc_path, fpr, tpr, thresholds)
    out.update(
        {
            "num_pairs": len(ijb.pairs),
            "num_templates": len(ids),
            "num_media": len(template_of_group),
            "num_images": len(ijb),
        }
    )
    return out
