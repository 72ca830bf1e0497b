"""Evaluation protocols (docs/design.md §5): verification, MegaFace identification, per-pose rank-1,
ANME, flip-TTA embeddings, and torchmetrics collectors that gather across DDP ranks."""

from balanced_align.evaluation.anme import anme, anme_per_landmark
from balanced_align.evaluation.embeddings import flip_tta_embeddings
from balanced_align.evaluation.identification import (
    IdentificationResult,
    distractor_topk,
    megaface_rank1,
)
from balanced_align.evaluation.metrics import EmbeddingCollector
from balanced_align.evaluation.pose import (
    DEFAULT_YAW_BINS,
    PoseBin,
    assign_yaw_bins,
    per_pose_rank1,
)
from balanced_align.evaluation.protocol import EvaluationProtocol, evaluate_protocol
from balanced_align.evaluation.verification import (
    DEFAULT_FARS,
    DEFAULT_THRESHOLDS,
    VerificationResult,
    contiguous_folds,
    pair_distances,
    roc_auc,
    tar_at_far,
    verification_accuracy,
)

__all__ = [
    "DEFAULT_FARS",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_YAW_BINS",
    "EmbeddingCollector",
    "EvaluationProtocol",
    "IdentificationResult",
    "PoseBin",
    "VerificationResult",
    "anme",
    "anme_per_landmark",
    "assign_yaw_bins",
    "contiguous_folds",
    "distractor_topk",
    "evaluate_protocol",
    "flip_tta_embeddings",
    "megaface_rank1",
    "pair_distances",
    "per_pose_rank1",
    "roc_auc",
    "tar_at_far",
    "verification_accuracy",
]
