"""Real benchmark runs: parsed benchmark files + an embedding function -> flat metrics.

One plain function per benchmark kind (no Hydra, no Lightning), each taking

- ``embed``: images (B, 3, H, W) float32 in [−1, 1] -> embeddings (B, D) (e.g. the model's
  forward under ``torch.no_grad``; it may move the batch to its device); where a benchmark
  is given landmarks (every function takes them: ``landmarks``, or ``probe_landmarks`` and
  ``distractor_landmarks``, (N, S, 2) corner-origin pixels of its images in order),
  ``embed(images, landmarks (B, S, 2))`` with the landmarks normalised to [−1, 1] (a model
  aligned by each image's landmarks);
- the parsed files (:mod:`balanced_align.data.formats`);
- :class:`EmbedOptions`: model input size, batch size, flip TTA, decoding threads;

and returning a flat ``{metric: value}`` dict (NaN where a metric is undefined):

- :func:`lfw_benchmark`: LFW ``pairs.txt``, verification with its sets as the folds;
- :func:`bin_benchmark`: insightface ``.bin``, verification with contiguous folds;
- :func:`video_benchmark`: YTF-style videos, verification of mean frame embeddings;
- :func:`megaface_benchmark`: MegaFace-style identification, rank-1 and CMC@k;
- :func:`pose_benchmark`: Multi-PIE-style rank-1 per |yaw| bin against a frontal gallery.

Images are decoded (grey -> RGB), resized to the model input size (no crop: benchmark
images should be face crops like the training images) and scaled to [−1, 1]. With flip TTA
an image's embedding is the L2-normalised sum of the embeddings of the image and of its
horizontal mirror (docs/design.md §5). Embedding runs batch by batch; MegaFace distractor features
go to a ``.npy`` memory map and are searched in chunks, so memory does not grow with the
number of distractors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from balanced_align.data.formats import (
    BinPairs,
    IdentityList,
    LFWPairs,
    VideoPairs,
    write_embeddings_memmap,
)
from balanced_align.data.transforms import resize_face, to_tensor
from balanced_align.data.validation import read_image
from balanced_align.evaluation.embeddings import (
    flip_tta_embeddings,
    flip_tta_landmark_embeddings,
)
from balanced_align.evaluation.identification import megaface_rank1
from balanced_align.evaluation.pose import DEFAULT_YAW_BINS, per_pose_rank1
from balanced_align.evaluation.protocol import far_metric_name
from balanced_align.evaluation.verification import (
    DEFAULT_FARS,
    contiguous_folds,
    verification_accuracy,
)
from balanced_align.safe_paths import resolve_inside

log = logging.getLogger(__name__)

EmbedFn = Callable[[Tensor], Tensor]
#: identification backends of :func:`megaface_benchmark`
BACKENDS = ("builtin", "faiss")


@dataclass(frozen=True)
class EmbedOptions:
    """How images become embeddings.

    image_size: model input (H, W) (or one int); every image is resized to it.
    batch_size: images per ``embed`` call (two calls per batch with ``flip``).
    flip: flip TTA (see module docstring); False: the L2-normalised embedding alone.
    num_workers: threads decoding and resizing images (0: in the calling thread); with
        workers, the next batch is decoded while the current one is embedded.
    flip_permutation: the landmark schema's left/right permutation, for flip TTA of images
        given with landmarks (required then).
    """

    image_size: int | tuple[int, int]
    batch_size: int = 64
    flip: bool = True
    num_workers: int = 0
    flip_permutation: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        size = self.image_size
        size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"EmbedOptions.image_size: expected (H, W) > 0, got {self.image_size}")
        object.__setattr__(self, "image_size", size)
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"EmbedOptions.batch_size must be >= 1, got {self.batch_size!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"EmbedOptions.num_workers must be >= 0, got {self.num_workers!r}")


# -- embedding ------------------------------------------------------------------------------
def _input_tensor(image, size: tuple[int, int]):
    """(H, W, 3) uint8 RGB -> (3, H', W') float32 in [−1, 1] at the model input size; an
    (image, (S, 2) corner-pixel landmarks) pair -> (that tensor, (S, 2) normalised points)."""
    if isinstance(image, tuple):
        resized, points = resize_face(np.asarray(image[0]), np.asarray(image[1]), size)
        return to_tensor(resized, points)
    resized, _ = resize_face(np.asarray(image), None, size)
    return to_tensor(resized)[0]


def _stack(items: list):
    if isinstance(items[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*items))
    return torch.stack(items)


def image_batches(
    count: int, load: Callable[[int], np.ndarray], options: EmbedOptions
) -> Iterator[Tensor]:
    """Yield (B, 3, H, W) batches of images ``load(0) … load(count − 1)``, in order; where
    ``load`` gives (image, landmarks) pairs, (images, (B, S, 2) normalised landmarks)."""

    def one(i: int):
        return _input_tensor(load(i), options.image_size)

    starts = range(0, count, options.batch_size)

    def indices(start: int) -> range:
        return range(start, min(start + options.batch_size, count))

    if options.num_workers == 0:
        for start in starts:
            yield _stack([one(i) for i in indices(start)])
        return
    with ThreadPoolExecutor(options.num_workers) as pool:
        pending = None
        for start in starts:
            futures = pending or [pool.submit(one, i) for i in indices(start)]
            following = start + options.batch_size
            pending = (
                [pool.submit(one, i) for i in indices(following)] if following < count else None
            )
            yield _stack([f.result() for f in futures])


def embed_batches(
    embed: EmbedFn, count: int, load: Callable[[int], np.ndarray], options: EmbedOptions
) -> Iterator[np.ndarray]:
    """Yield (B, D) float32 unit-norm embeddings of ``load(0) … load(count − 1)``, in order."""
    for images in image_batches(count, load, options):
        if isinstance(images, tuple):
            yield _embed_with_landmarks(embed, *images, options)
            continue
        with torch.no_grad():
            if options.flip:
                emb = flip_tta_embeddings(embed, images)
            else:
                emb = torch.nn.functional.normalize(embed(images).float(), dim=1)
        if emb.ndim != 2 or emb.shape[0] != images.shape[0]:
            raise ValueError(
                f"embed: expected ({images.shape[0]}, D) embeddings, got {tuple(emb.shape)}"
            )
        yield emb.detach().cpu().numpy().astype(np.float32, copy=False)


def _embed_with_landmarks(
    embed: EmbedFn, images: Tensor, landmarks: Tensor, options: EmbedOptions
) -> np.ndarray:
    with torch.no_grad():
        if options.flip:
            if options.flip_permutation is None:
                raise ValueError("flip TTA of images with landmarks needs flip_permutation")
            emb = flip_tta_landmark_embeddings(embed, images, landmarks, options.flip_permutation)
        else:
            emb = torch.nn.functional.normalize(embed(images, landmarks).float(), dim=1)
    if emb.ndim != 2 or emb.shape[0] != images.shape[0]:
        shape = tuple(emb.shape)
        raise ValueError(f"embed: expected ({images.shape[0]}, D) embeddings, got {shape}")
    return emb.detach().cpu().numpy().astype(np.float32, copy=False)


def embed_all(
    embed: EmbedFn, count: int, load: Callable[[int], np.ndarray], options: EmbedOptions
) -> np.ndarray:
    """(count, D) float32 unit-norm embeddings of ``load(0) … load(count − 1)``."""
    if count < 1:
        raise ValueError("embed_all: no images")
    return np.concatenate(list(embed_batches(embed, count, load, options)))


def _with_landmarks(
    load: Callable[[int], np.ndarray], landmarks: np.ndarray | None
) -> Callable[[int], np.ndarray]:
    """``load``, or ``i -> (load(i), landmarks[i])`` when landmarks are given."""
    if landmarks is None:
        return load
    return lambda i: (load(i), landmarks[i])


def _path_loader(
    paths: Sequence, root: str | Path | None = None, landmarks: np.ndarray | None = None
) -> Callable[[int], np.ndarray]:
    """``load(i)``: image ``i`` (H, W, 3) uint8 RGB, or (image, landmarks[i]) when given.
    Paths relative to ``root`` must stay inside it (``safe_paths.resolve_inside``)."""
    base = None if root is None else Path(root)

    def load(i: int):
        if base is None:
            return read_image(Path(paths[i]))
        return read_image(resolve_inside(base, str(paths[i])))

    return _with_landmarks(load, landmarks)


def check_files(paths: Iterable, root: str | Path | None, what: str) -> None:
    """Raise FileNotFoundError naming up to 5 of the files of ``what`` missing under ``root``,
    and :class:`~balanced_align.safe_paths.UnsafePathError` (naming ``what`` and the path)
    for a path that is absolute or leaves ``root`` (``..``, a link out of the tree)."""
    base = None if root is None else Path(root)
    if base is not None and not base.is_dir():
        raise FileNotFoundError(f"{what}: image root {str(base)!r} is not a folder")
    missing = []
    for path in paths:
        full = Path(path) if base is None else resolve_inside(base, str(path), what=what)
        if not full.is_file():
            missing.append(str(full))
            if len(missing) == 5:
                break
    if missing:
        raise FileNotFoundError(f"{what}: image file(s) missing, e.g. {missing}")


# -- verification -----------------------------------------------------------------------------
def verification_metrics(emb_a, emb_b, issame, folds) -> dict[str, float]:
    """``verif_acc`` (mean over folds), ``verif_acc_std``, ``verif_auc``, ``tar@far=…``."""
    result = verification_accuracy(emb_a, emb_b, issame, folds=folds, fars=DEFAULT_FARS)
    out = {
        "verif_acc": result.accuracy_mean,
        "verif_acc_std": result.accuracy_std,
        "verif_auc": result.roc_auc,
    }
    out.update({far_metric_name(far): tar for far, tar in result.tar_at_far.items()})
    out["num_pairs"] = len(issame)
    out["num_folds"] = int(np.unique(np.asarray(folds)).size)
    return out


def lfw_benchmark(
    embed: EmbedFn,
    pairs: LFWPairs,
    options: EmbedOptions,
    n_folds: int = 10,
    landmarks: np.ndarray | None = None,
) -> dict[str, float]:
    """LFW verification over ``pairs.txt``: its sets are the folds (a one-set View 1 file
    gets ``n_folds`` contiguous folds instead). Each image is embedded once.

    landmarks: (num_images, S, 2) corner-origin pixels of ``pairs.paths``, for a model
    aligned by each image's landmarks (``embed`` then takes them; see module docstring).
    """
    load = _path_loader(pairs.paths, landmarks=landmarks)
    emb = embed_all(embed, pairs.num_images, load, options)
    folds = pairs.folds
    if np.unique(folds).size < 2:
        folds = contiguous_folds(len(pairs), n_folds)
    out = verification_metrics(emb[pairs.pairs_a], emb[pairs.pairs_b], pairs.issame, folds)
    out["num_images"] = pairs.num_images
    return out


def bin_benchmark(
    embed: EmbedFn,
    pairs: BinPairs,
    options: EmbedOptions,
    n_folds: int = 10,
    landmarks: np.ndarray | None = None,
) -> dict[str, float]:
    """insightface ``.bin`` verification: images 2k and 2k + 1 form pair k; ``n_folds``
    contiguous folds in file order. landmarks: (num_images, S, 2), in file order."""
    images = pairs.images
    emb = embed_all(embed, len(images), _with_landmarks(images.__getitem__, landmarks), options)
    out = verification_metrics(
        emb[pairs.pairs_a], emb[pairs.pairs_b], pairs.issame, pairs.folds(n_folds)
    )
    out["num_images"] = len(images)
    return out


def video_benchmark(
    embed: EmbedFn,
    pairs: VideoPairs,
    options: EmbedOptions,
    landmarks: np.ndarray | None = None,
) -> dict[str, float]:
    """YTF-style video verification: a video's embedding is the L2-normalised mean of its
    frames' (flip-TTA) embeddings; the splits file's split numbers are the folds.
    landmarks: (num_frames, S, 2) of ``pairs.frame_paths``.

    Frame embeddings are summed per video as they arrive (memory: one (V, D) array), which
    equals :func:`~balanced_align.data.formats.video_embeddings` of all frames.
    """
    frame_paths = pairs.frame_paths
    video_of = pairs.video_index
    sums: np.ndarray | None = None
    done = 0
    load = _path_loader(frame_paths, landmarks=landmarks)
    for chunk in embed_batches(embed, len(frame_paths), load, options):
        if sums is None:
            sums = np.zeros((len(pairs.videos), chunk.shape[1]), np.float64)
        np.add.at(sums, video_of[done : done + len(chunk)], chunk)
        done += len(chunk)
    counts = np.bincount(video_of, minlength=len(pairs.videos))
    means = sums / counts[:, None]
    videos = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    videos = videos.astype(np.float32)
    out = verification_metrics(
        videos[pairs.pairs_a], videos[pairs.pairs_b], pairs.issame, pairs.folds
    )
    out["num_videos"] = len(pairs.videos)
    out["num_frames"] = len(frame_paths)
    return out


# -- identification -----------------------------------------------------------------------------
def faiss_topk(probes: np.ndarray, distractors, k: int, chunk_size: int) -> np.ndarray:
    """Top-k distractor cosine similarities per probe with faiss ``IndexFlatIP``, chunk by
    chunk (one chunk's index in memory at a time). probes: (P, D) unit rows;
    distractors: (N, D) array or memmap. Returns (P, k) float32 descending, −inf padded."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "benchmark.megaface.backend=faiss needs faiss: pip install 'balanced-align[faiss]' "
            "(or use backend=builtin, the same result)"
        ) from err

    probes = np.ascontiguousarray(probes, np.float32)
    top = np.full((probes.shape[0], k), -np.inf, np.float32)
    for start in range(0, distractors.shape[0], chunk_size):
        block = np.array(distractors[start : start + chunk_size], np.float32, order="C")
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        index = faiss.IndexFlatIP(block.shape[1])
        index.add(block)
        values, _ = index.search(probes, min(k, block.shape[0]))
        merged = np.concatenate([top, values], axis=1)
        top = -np.sort(-merged, axis=1)[:, :k]
    return top


def cmc_from_topk(probes: np.ndarray, labels: np.ndarray, top: np.ndarray, ranks) -> dict:
    """CMC of MegaFace trials given each probe's top-k distractor similarities ``top``
    (P, k): trial (gallery i, probe j ≠ i, same identity) is a hit at rank r iff
    s(j, i) > top[j, r − 1] (the rule of :func:`~balanced_align.evaluation.megaface_rank1`).
    Returns ``{r: rate}`` and the number of trials under key ``"num_pairs"``."""
    probes_t = torch.from_numpy(np.ascontiguousarray(probes, np.float32))
    labels_t = torch.from_numpy(np.asarray(labels, np.int64))
    top_t = torch.from_numpy(np.ascontiguousarray(top, np.float32))
    mate = probes_t @ probes_t.T
    same = labels_t[:, None] == labels_t[None, :]
    same.fill_diagonal_(False)
    num_pairs = int(same.sum())
    if num_pairs == 0:
        raise ValueError("probe list: no identity has two or more probe images")
    out = {r: int(((mate > top_t[:, r - 1 : r]) & same).sum()) / num_pairs for r in ranks}
    out["num_pairs"] = num_pairs
    return out


def megaface_benchmark(
    embed: EmbedFn,
    probes: IdentityList,
    distractors: Sequence[str],
    options: EmbedOptions,
    features_path: str | Path,
    probe_root: str | Path | None = None,
    distractor_root: str | Path | None = None,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 16384,
    backend: str = "builtin",
    search_device: str | torch.device = "cpu",
    probe_landmarks: np.ndarray | None = None,
    distractor_landmarks: np.ndarray | None = None,
) -> dict[str, float]:
    """MegaFace-style identification (docs/design.md §5): ``rank1`` and ``cmc@r``.

    probes: ``path identity`` list (paths under ``probe_root``); every ordered pair of images
    of one identity is a trial. distractors: paths under ``distractor_root``, identities
    disjoint from the probes'. Distractor embeddings are written batch by batch to
    ``features_path`` (a ``.npy`` memory map, kept) and searched ``chunk_size`` rows at a
    time, so memory does not grow with the number of distractors.
    backend: ``builtin`` (:func:`~balanced_align.evaluation.megaface_rank1`, on
    ``search_device``) or ``faiss`` (exact ``IndexFlatIP`` per chunk; same rule and result).
    Ranks above the number of distractors are dropped. probe_landmarks,
    distractor_landmarks: (N, S, 2) of the probes and distractors, in list order.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if len(distractors) < 1:
        raise ValueError("distractor list: no distractors")
    load = _path_loader(probes.paths, probe_root, probe_landmarks)
    probe_emb = embed_all(embed, len(probes), load, options)

    features_path = Path(features_path)
    features_path.parent.mkdir(parents=True, exist_ok=True)
    load = _path_loader(distractors, distractor_root, distractor_landmarks)
    chunks = embed_batches(embed, len(distractors), load, options)
    first = next(chunks)
    features = write_embeddings_memmap(
        features_path, chain([first], chunks), dim=first.shape[1], count=len(distractors)
    )

    kept = sorted({1, *(int(r) for r in ranks if int(r) <= len(distractors))})
    dropped = sorted({int(r) for r in ranks} - set(kept))
    if dropped:
        log.warning("CMC ranks %s exceed the %d distractors: dropped", dropped, len(distractors))
    if backend == "builtin":
        result = megaface_rank1(
            torch.from_numpy(probe_emb).to(search_device),
            probes.labels,
            features,
            chunk_size=chunk_size,
            ranks=kept,
        )
        cmc, num_pairs = result.cmc, result.num_pairs
    else:
        top = faiss_topk(probe_emb, features, kept[-1], chunk_size)
        cmc = cmc_from_topk(probe_emb, probes.labels, top, kept)
        num_pairs = cmc.pop("num_pairs")
    out = {"rank1": cmc[1]}
    out.update({f"cmc@{r}": cmc[r] for r in kept if r != 1})
    out.update(
        {
            "num_pairs": num_pairs,
            "num_probes": len(probes),
            "num_probe_identities": len(probes.identities),
            "num_distractors": len(distractors),
        }
    )
    return out


# -- per pose --------------------------------------------------------------------------------
def frontal_gallery(labels: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """Per identity, the row with the smallest |yaw| (first in list order on ties).

    labels: (N,) int; yaws: (N,) degrees. Returns sorted (G,) int64 row indices.
    """
    labels = np.asarray(labels)
    order = np.lexsort((np.arange(len(labels)), np.abs(np.asarray(yaws, np.float64)), labels))
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    return np.sort(order[first]).astype(np.int64)


def pose_benchmark(
    embed: EmbedFn,
    poses: IdentityList,
    options: EmbedOptions,
    root: str | Path | None = None,
    bins: Sequence[float] = DEFAULT_YAW_BINS,
    tolerance: float = 7.5,
    include_frontal: bool = False,
    landmarks: np.ndarray | None = None,
) -> dict[str, float]:
    """Multi-PIE-style rank-1 per |yaw| bin (docs/design.md §5).

    poses: ``path identity yaw`` list (paths under ``root``). Gallery: per identity, the
    image with the smallest |yaw| (:func:`frontal_gallery`); probes: every other image,
    binned by |yaw| (:func:`~balanced_align.evaluation.per_pose_rank1`). Reports
    ``rank1_yaw<b>`` and ``count_yaw<b>`` per bin, and ``rank1_mean`` over non-empty bins.
    landmarks: (N, S, 2) of the list's images, in order.
    """
    if poses.yaws is None:
        raise ValueError(f"{poses.source}: a pose list needs a yaw per image")
    emb = embed_all(embed, len(poses), _path_loader(poses.paths, root, landmarks), options)
    gallery = frontal_gallery(poses.labels, poses.yaws)
    probe = np.setdiff1d(np.arange(len(poses)), gallery)
    if probe.size == 0:
        raise ValueError(f"pose list {str(poses.source)!r}: no probe images besides the gallery")
    per_bin = per_pose_rank1(
        emb[gallery],
        poses.labels[gallery],
        emb[probe],
        poses.labels[probe],
        poses.yaws[probe],
        bins=bins,
        tolerance=tolerance,
        include_frontal=include_frontal,
    )
    out: dict[str, float] = {}
    for b, res in per_bin.items():
        out[f"rank1_yaw{b:g}"] = res.rank1
    for b, res in per_bin.items():
        out[f"count_yaw{b:g}"] = res.count
    rates = [res.rank1 for res in per_bin.values() if res.count]
    out["rank1_mean"] = float(np.mean(rates)) if rates else float("nan")
    out["num_gallery"] = int(gallery.size)
    out["gallery_max_abs_yaw"] = float(np.abs(poses.yaws[gallery]).max())
    out["num_probes"] = int(probe.size)
    return out
