"""FaceDataModule: train / val / test face data with disjoint identities (docs/design.md §4, §5).

The only Lightning-aware module of ``balanced_align.data``. Train items are
FaceRecords turned into sample dicts by a :class:`FaceTransform` (see
:mod:`.transforms` for the sample layout); val and test are evaluation item lists
(:mod:`.evaluation_sets`) with their :class:`EvaluationProtocol`, loaded without
shuffling or augmentation.

Reproducibility: the training order of epoch ``e`` and every sample's augmentation are
pure functions of ``(seed, e, index)`` (an :class:`~.epoch_sampler.EpochSampler` yields
``(epoch, index)`` keys; the transform draws from them). So training batches do not depend
on the worker count, and a run resumed at an epoch boundary sees exactly the batches an
uninterrupted run sees. Shard streams (:mod:`.shards`) order an epoch by ``(seed, epoch,
rank, worker)`` and key each sample's augmentation by ``(seed, epoch, index)`` the same way,
so their batches depend on the worker and rank counts but a resumed run sees the
uninterrupted run's batches too. Evaluation batches are deterministic and do not depend on
the worker count.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.core.schema import LandmarkSchema
from balanced_align.data.epoch_sampler import EpochLoader, EpochSampler
from balanced_align.data.evaluation_sets import EvaluationItems
from balanced_align.data.shards import ShardLoader
from balanced_align.data.source_kinds import (
    BuildOptions,
    FaceSource,
    SynthFacesSource,
    from_flat_arguments,
    plain,
    source_from_config,
)
from balanced_align.data.transforms import FaceTransform, JitterConfig
from balanced_align.data.validation import SkipReport, require_landmarks

logger = logging.getLogger(__name__)


class FaceSampleDataset(Dataset):
    """Data set of sample dicts: ``transform(records[i], index=i)``.

    A key ``(epoch, i)`` (from :class:`~.epoch_sampler.EpochSampler`) gives
    ``transform(records[i], index=i, epoch=epoch)``: augmentation keyed by both.
    """

    def __init__(self, records, transform: FaceTransform) -> None:
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple):
            epoch, index = key
            return self.transform(self.records[int(index)], index=int(index), epoch=int(epoch))
        return self.transform(self.records[key], index=int(key))

    def reseed(self, seed: int) -> None:
        self.transform.reseed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, random, torch and the transform.

    OpenCV's thread count is left alone on purpose: ``cv2.setNumThreads`` in a forked
    worker can deadlock once the parent has used OpenCV's thread pool (seen here).

    Uses torch's per-worker seed (base seed from the loader's generator + worker id),
    so a run is reproducible given the loader's generator.
    """
    info = get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)  # noqa: NPY002 (global state, for code that uses it)
    random.seed(seed)
    torch.manual_seed(seed)
    dataset = info.dataset if info is not None else None
    if hasattr(dataset, "reseed"):
        dataset.reseed(seed)


def collate_samples(batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of sample dicts into a batch dict: every key gains a leading B axis."""
    if not batch:
        raise ValueError("collate_samples: empty batch")
    keys = set(batch[0])
    for i, sample in enumerate(batch):
        if set(sample) != keys:
            raise ValueError(
                f"collate_samples: sample {i} has keys {sorted(sample)}, sample 0 {sorted(keys)}"
            )
    return {key: torch.stack([sample[key] for sample in batch]) for key in batch[0]}


def _known_yaw(records, index: int) -> float | None:
    """Yaw of item ``index`` without rendering it, where the data set can tell (SynthFaces)."""
    scene = getattr(records, "scene", None)
    per_identity = getattr(records, "images_per_identity", None)
    if scene is None or per_identity is None:
        return None
    c, k = divmod(int(index), int(per_identity))
    return float(scene(records.identity_offset + c, records.image_offset + k).yaw)


class FaceDataModule(L.LightningDataModule):
    """Train / val / test face data with disjoint identities, from one ``source``.

    ``source`` (the ``data.source`` node of a ``conf/data`` file) is a source kind of
    :mod:`.source_kinds` that holds its own options and builds the splits:
    :class:`~.source_kinds.SynthFacesSource`, :class:`~.source_kinds.FolderSource`,
    :class:`~.source_kinds.LFWSource` or :class:`~.source_kinds.ShardSource`; or its plain
    config ``{"kind": …, option: value}`` (what a checkpoint stores,
    :func:`~.source_kinds.source_from_config`); None: ``SynthFacesSource()``. A shard
    source's training set batches itself (every sample once per epoch across DDP ranks and
    workers); the others are sampled by epoch.

    Args (the loader-level options, common to every source):
        image_size: model input size (square); sources of another size are resized.
        seed: the splits, the evaluation sets, the training order and augmentation.
        batch_size, eval_batch_size (default: batch_size), num_workers, pin_memory (used
        only when CUDA is available), persistent_workers (only with workers).
        augment: training augmentation on/off; jitter: :class:`JitterConfig` fields.
        on_bad_sample: ``"raise"`` or ``"skip"`` for file sources.
        check_images: decode every file at ``setup`` to find unreadable images and
            out-of-image landmarks (one pass over the data; turn off for huge trees).

    The hyperparameters it saves are plain values, the source as its config. Flat
    arguments of the former signature (``dataset=…``): :meth:`from_hyperparameters`.
    """

    def __init__(
        self,
        source: FaceSource | Mapping | None = None,
        image_size: int = 64,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        augment: bool = True,
        jitter: dict | None = None,
        on_bad_sample: str = "raise",
        check_images: bool = True,
    ) -> None:
        super().__init__()
        self.source = SynthFacesSource() if source is None else source_from_config(source)
        for name, value in (("batch_size", batch_size), ("image_size", image_size)):
            if int(value) <= 0:
                raise ValueError(f"data.{name} must be positive, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.augment = bool(augment)
        self.jitter = JitterConfig(**plain(jitter or {}))
        self.build_options = BuildOptions(
            self.image_size, self.seed, on_bad_sample, bool(check_images)
        )
        self.save_hyperparameters(
            {
                "source": self.source.to_config(),
                "image_size": self.image_size,
                "seed": self.seed,
                "batch_size": self.batch_size,
                "eval_batch_size": eval_batch_size,
                "num_workers": self.num_workers,
                "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers,
                "augment": self.augment,
                "jitter": plain(jitter or {}),
                "on_bad_sample": on_bad_sample,
                "check_images": bool(check_images),
            },
            logger=False,
        )
        self._built = False

    @classmethod
    def from_hyperparameters(cls, hparams: Mapping, **overrides) -> FaceDataModule:
        """The data module of saved hyperparameters (a checkpoint's
        ``datamodule_hyper_parameters``), today's or the former flat ones (``dataset=…``),
        with ``overrides`` of the loader-level options."""
        hparams = dict(hparams)
        if "source" not in hparams:
            hparams = from_flat_arguments(hparams)
        return cls(**{**hparams, **overrides})

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Build and validate every split once (idempotent; all stages at once)."""
        if self._built:
            return
        splits = self.source.build(self.build_options)
        self.train_records = splits.train_records
        (self.val_items, self.val_protocol_), (self.test_items, self.test_protocol_) = (
            splits.val,
            splits.test,
        )
        self.records = splits.records
        self._schema = splits.schema
        self._has_landmarks = splits.has_landmarks
        self._skipped = splits.skipped
        train_transform = FaceTransform(
            self.augment, self.image_size, self._schema, self.jitter, seed=self.seed
        )
        stream = self.source.train_stream(
            train_transform, seed=self.seed, batch_size=self.batch_size, collate_fn=collate_samples
        )
        if stream is not None:
            self.train_set = stream
        else:
            self.train_set = FaceSampleDataset(self.train_records, train_transform)
        eval_transform = FaceTransform(False, self.image_size, self._schema)
        self.val_set = FaceSampleDataset(self.val_items, eval_transform)
        self.test_set = FaceSampleDataset(self.test_items, eval_transform)
        self._built = True

    def _require_setup(self) -> None:
        if not self._built:
            self.setup()

    # ------------------------------------------------------------- properties

    @property
    def num_classes(self) -> int:
        """Number of training identities (labels 0 … num_classes − 1)."""
        known = self.source.known_num_classes()
        if known is not None:
            return int(known)
        self._require_setup()
        return int(self.train_records.num_classes)

    @property
    def schema(self) -> LandmarkSchema | None:
        self._require_setup()
        return self._schema

    @property
    def has_landmarks(self) -> bool:
        self._require_setup()
        return self._has_landmarks

    @property
    def val_protocol(self) -> EvaluationProtocol:
        self._require_setup()
        return self.val_protocol_

    @property
    def test_protocol(self) -> EvaluationProtocol:
        self._require_setup()
        return self.test_protocol_

    @property
    def skipped(self) -> SkipReport:
        """Bad samples dropped under ``on_bad_sample="skip"`` (empty for SynthFaces)."""
        self._require_setup()
        return self._skipped

    def evaluation_items(self, split: str) -> EvaluationItems:
        """The val or test item list (row i = dataset index i of that loader)."""
        self._require_setup()
        if split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        return self.val_items if split == "val" else self.test_items

    # ------------------------------------------------------------ T_fix

    def mean_frontal_landmarks(
        self, max_abs_yaw: float = 15.0, max_images: int = 2000
    ) -> torch.Tensor:
        """(S, 2) float32 normalised mean landmarks of frontal training faces (T_fix).

        Training records are visited in a fixed order (a permutation drawn from ``seed``)
        until ``max_images`` records with |yaw| < ``max_abs_yaw`` are found; records with
        unknown yaw (NaN, e.g. folder sources) count as frontal. Landmarks are normalised
        by each record's own image size (so resizing does not change them), no
        augmentation. Deterministic.
        """
        self._require_setup()
        if not self._has_landmarks:
            require_landmarks(self.records, "mean_frontal_landmarks (T_fix)")
        records = self.train_records
        if isinstance(records, IterableDataset):
            candidates = iter(records)  # a shard stream: writing order, already shuffled
        else:
            order = np.random.default_rng(self.seed).permutation(len(records))
            candidates = (
                records[int(index)]
                for index in order
                # skip rendering faces that cannot qualify
                if (known := _known_yaw(records, int(index))) is None or abs(known) < max_abs_yaw
            )
        total, count, unknown = None, 0, 0
        for record in candidates:
            yaw = float(record.yaw)
            if not np.isnan(yaw) and abs(yaw) >= max_abs_yaw:
                continue
            unknown += int(np.isnan(yaw))
            height, width = record.image.shape[:2]
            points = np.asarray(record.landmarks, np.float64)
            normalised = points * np.array([2.0 / width, 2.0 / height]) - 1.0
            total = normalised if total is None else total + normalised
            count += 1
            if count >= max_images:
                break
        if count == 0:
            raise ValueError(
                f"mean_frontal_landmarks: no training face with |yaw| < {max_abs_yaw} degrees"
            )
        if unknown:
            logger.info("mean_frontal_landmarks: %d of %d faces have unknown yaw", unknown, count)
        return torch.from_numpy(total / count).float()

    # ------------------------------------------------------------ loaders

    def _loader(self, dataset, batch_size: int, train: bool) -> DataLoader:
        workers = self.num_workers
        generator = torch.Generator().manual_seed(self.seed) if train else None
        return (EpochLoader if train else DataLoader)(
            dataset,
            batch_size=batch_size,
            sampler=self._epoch_sampler(dataset) if train else None,
            drop_last=train and len(dataset) >= batch_size,
            num_workers=workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            worker_init_fn=seed_worker if workers > 0 else None,
            generator=generator,
        )

    def _epoch_sampler(self, dataset) -> EpochSampler:
        """The training order: epoch-indexed, this rank's share under DDP."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return EpochSampler(dataset, self.seed)
        return EpochSampler(
            dataset, self.seed, num_replicas=trainer.world_size, rank=trainer.global_rank
        )

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        if isinstance(self.train_set, IterableDataset):  # a stream that batches itself
            # Lightning calls loader.sampler.set_epoch(e) before each epoch's first batch,
            # and the ShardLoader starts its workers only then (also on a resumed run).
            workers = self.num_workers
            return ShardLoader(
                self.train_set,
                num_workers=workers,
                pin_memory=self.pin_memory and torch.cuda.is_available(),
                persistent_workers=self.persistent_workers and workers > 0,
                worker_init_fn=seed_worker if workers > 0 else None,
                generator=torch.Generator().manual_seed(self.seed),
            )
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.val_set, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.test_set, self.eval_batch_size, train=False)
