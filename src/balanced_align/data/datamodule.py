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
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from balanced_align.core.protocol import EvaluationProtocol
from balanced_align.core.schema import LandmarkSchema, get_schema
from balanced_align.data.epoch_sampler import EpochLoader, EpochSampler
from balanced_align.data.evaluation_sets import (
    EvaluationItems,
    build_folder_evaluation,
    build_synth_evaluation,
)
from balanced_align.data.lfw_protocol import held_out_split
from balanced_align.data.shards import ShardIndex, ShardLoader, ShardStream
from balanced_align.data.sources import ImageFolderSource, RecordSubset
from balanced_align.data.synthfaces.params import Knobs
from balanced_align.data.transforms import FaceTransform, JitterConfig
from balanced_align.data.validation import SkipReport, require_landmarks

logger = logging.getLogger(__name__)

DATASETS = ("synthfaces", "folder", "shards", "lfw")


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


def _plain(value):
    """Config containers (e.g. OmegaConf) to plain values: mappings → dict, lists → tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return tuple(_plain(v) for v in value)


def _known_yaw(records, index: int) -> float | None:
    """Yaw of item ``index`` without rendering it, where the data set can tell (SynthFaces)."""
    scene = getattr(records, "scene", None)
    per_identity = getattr(records, "images_per_identity", None)
    if scene is None or per_identity is None:
        return None
    c, k = divmod(int(index), int(per_identity))
    return float(scene(records.identity_offset + c, records.image_offset + k).yaw)


def _synth_factory():
    from balanced_align.data.synthfaces import SynthFaces

    return SynthFaces


class FaceDataModule(L.LightningDataModule):
    """Train / val / test face data with disjoint identities.

    ``dataset="synthfaces"``: generated faces (84 landmarks, known pose). Global identity
    ids: train ``[0, num_train_identities)``, then val probes, val distractors, test
    probes, test distractors, each range after the previous.

    ``dataset="folder"``: an :class:`ImageFolderSource` at ``root`` (optional landmark
    table ``landmarks``); its identities are shuffled with ``seed`` and split into
    ``val_fraction_identities`` / ``test_fraction_identities`` / the rest for training.
    Each evaluation split becomes probes and distractors (``distractor_fraction``).

    ``dataset="lfw"``: the LFW tree at ``root`` split by the official sets of ``lfw_pairs``
    (:mod:`.lfw_protocol`): test on set ``lfw_test_set``'s pairs, validate on set
    ``lfw_val_set``'s (default: the next set), train on everyone in neither set;
    ``lfw_test_set=None`` holds out set ``seed % num_sets + 1`` (one set per seed).
    ``min_images_per_identity`` (folder and lfw) leaves identities with fewer usable images
    out of training.

    ``dataset="shards"``: training streams the tar shards at ``shards`` (``index.json`` or
    its folder; see :mod:`.shards`) with a :class:`ShardStream` that batches itself, so
    every sample is read exactly once per epoch across DDP ranks and workers and every
    rank yields the same number of batches; ``shuffle_buffer`` samples are shuffled per
    worker. Evaluation uses the SynthFaces sets (as ``dataset="synthfaces"``, identities
    after the shards' ``num_classes``) or, with ``root``, an identity-folder tree whose
    identities are split into val / test halves.

    Args (besides the above):
        image_size: model input size (square); sources of another size are resized.
        train_images_per_identity, synth_knobs: SynthFaces training set (the knobs go to
            every SynthFaces; ``yaw_range`` in them applies to training only).
        val_identities, test_identities, eval_images_per_identity,
        val_distractor_identities, test_distractor_identities, eval_distractor_images,
        eval_yaw_range: SynthFaces evaluation sets.
        val_num_pairs, test_num_pairs: verification pairs (multiples of 20).
        batch_size, eval_batch_size (default: batch_size), num_workers, pin_memory (used
        only when CUDA is available), persistent_workers (only with workers).
        augment: training augmentation on/off; jitter: :class:`JitterConfig` fields.
        on_bad_sample: ``"raise"`` or ``"skip"`` for file sources.
        check_images: decode every file at ``setup`` to find unreadable images and
            out-of-image landmarks (one pass over the data; turn off for huge trees).
    """

    def __init__(
        self,
        dataset: str = "synthfaces",
        image_size: int = 64,
        seed: int = 0,
        num_train_identities: int = 200,
        train_images_per_identity: int = 20,
        synth_knobs: dict | None = None,
        val_identities: int = 20,
        test_identities: int = 50,
        eval_images_per_identity: int = 6,
        val_distractor_identities: int = 50,
        test_distractor_identities: int = 200,
        eval_distractor_images: int = 1,
        eval_yaw_range: tuple[float, float] = (-90.0, 90.0),
        val_num_pairs: int = 200,
        test_num_pairs: int = 600,
        root: str | None = None,
        landmarks: str | None = None,
        landmark_convention: str = "corner",
        schema: str | None = None,
        val_fraction_identities: float = 0.1,
        test_fraction_identities: float = 0.1,
        distractor_fraction: float = 0.5,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        augment: bool = True,
        jitter: dict | None = None,
        on_bad_sample: str = "raise",
        check_images: bool = True,
        min_images_per_identity: int = 1,
        lfw_pairs: str | None = None,
        lfw_test_set: int | None = 1,
        lfw_val_set: int | None = None,
        shards: str | None = None,
        shuffle_buffer: int = 1000,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        if dataset in ("folder", "lfw") and root is None:
            raise ValueError(f"dataset={dataset!r} needs root (the identity-folder tree)")
        if dataset == "lfw" and lfw_pairs is None:
            raise ValueError("dataset='lfw' needs lfw_pairs (the LFW pairs.txt)")
        if dataset == "shards" and shards is None:
            raise ValueError("dataset='shards' needs shards (index.json or its folder)")
        for name, value in (("batch_size", batch_size), ("image_size", image_size)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if int(min_images_per_identity) < 1:
            raise ValueError(f"min_images_per_identity must be >= 1, got {min_images_per_identity}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters(logger=False)
        self.dataset = dataset
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.augment = bool(augment)
        self.jitter = JitterConfig(**_plain(jitter or {}))
        self.synth_knobs = _plain(synth_knobs or {})
        try:  # SynthFaces training or evaluation sets use them: check before any setup
            Knobs.from_mapping(self.synth_knobs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"data.synth_knobs: {error}") from None
        self._built = False

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Build and validate every split once (idempotent; all stages at once)."""
        if self._built:
            return
        if self.dataset == "synthfaces":
            self._setup_synth()
        elif self.dataset == "folder":
            self._setup_folder()
        elif self.dataset == "lfw":
            self._setup_lfw()
        else:
            self._setup_shards()
        schema = self._schema
        train_transform = FaceTransform(
            self.augment, self.image_size, schema, self.jitter, seed=self.seed
        )
        if self.dataset == "shards":
            self.train_set = ShardStream(
                self.shard_index.path,
                train_transform,
                shuffle_buffer=int(self.hparams.shuffle_buffer),
                seed=self.seed,
                batch_size=self.batch_size,
                collate_fn=collate_samples,
            )
        else:
            self.train_set = FaceSampleDataset(self.train_records, train_transform)
        eval_transform = FaceTransform(False, self.image_size, schema)
        self.val_set = FaceSampleDataset(self.val_items, eval_transform)
        self.test_set = FaceSampleDataset(self.test_items, eval_transform)
        self._built = True

    def _setup_synth(self) -> None:
        hp = self.hparams
        synth = _synth_factory()
        n_train = int(hp.num_train_identities)
        self.train_records = synth(
            n_train,
            int(hp.train_images_per_identity),
            image_size=self.image_size,
            seed=self.seed,
            identity_offset=0,
            **self.synth_knobs,
        )
        self._setup_synth_evaluation(offset=n_train)
        self.source = self.train_records
        self._schema = get_schema(getattr(self.train_records, "schema", None) or "lmk84")
        self._has_landmarks = True
        self._skipped = SkipReport()

    def _setup_synth_evaluation(self, offset: int) -> None:
        """SynthFaces val / test sets from global identity ``offset`` on."""
        hp = self.hparams
        synth = _synth_factory()
        splits = {}
        for split in ("val", "test"):
            identities = int(hp[f"{split}_identities"])
            distractors = int(hp[f"{split}_distractor_identities"])
            splits[split] = build_synth_evaluation(
                identities,
                int(hp.eval_images_per_identity),
                distractors,
                int(hp.eval_distractor_images),
                image_size=self.image_size,
                seed=self.seed,
                identity_offset=offset,
                num_pairs=int(hp[f"{split}_num_pairs"]),
                yaw_range=tuple(hp.eval_yaw_range),
                knobs=self.synth_knobs,
                synth_factory=synth,
            )
            offset += identities + distractors
        (self.val_items, self.val_protocol_), (self.test_items, self.test_protocol_) = (
            splits["val"],
            splits["test"],
        )

    def _folder_source(self) -> ImageFolderSource:
        """The ImageFolderSource of ``root`` with this module's landmark and bad-sample options."""
        hp = self.hparams
        return ImageFolderSource(
            hp.root,
            landmarks=hp.landmarks,
            landmark_convention=hp.landmark_convention,
            schema=hp.schema,
            on_bad_sample=hp.on_bad_sample,
            check_images=bool(hp.check_images),
        )

    def _setup_folder(self) -> None:
        hp = self.hparams
        source = self._folder_source()
        identities = np.random.default_rng(self.seed).permutation(source.num_classes)
        n_val = round(float(hp.val_fraction_identities) * len(identities))
        n_test = round(float(hp.test_fraction_identities) * len(identities))
        if n_val < 3 or n_test < 3 or len(identities) - n_val - n_test < 1:
            raise ValueError(
                f"{source!r}: {len(identities)} identities split with "
                f"val_fraction_identities={hp.val_fraction_identities}, "
                f"test_fraction_identities={hp.test_fraction_identities} gives {n_val} val / "
                f"{n_test} test identities; each evaluation split needs >= 3 and training >= 1"
            )
        val_ids, test_ids = identities[:n_val], identities[n_val : n_val + n_test]
        train_ids = identities[n_val + n_test :]
        self.train_records = self._training_subset(source, train_ids)
        self.val_items, self.val_protocol_ = build_folder_evaluation(
            source,
            int(hp.val_num_pairs),
            float(hp.distractor_fraction),
            seed=self.seed,
            identities=val_ids,
        )
        self.test_items, self.test_protocol_ = build_folder_evaluation(
            source,
            int(hp.test_num_pairs),
            float(hp.distractor_fraction),
            seed=self.seed + 1,
            identities=test_ids,
        )
        self.source = source
        self._schema = source.schema
        self._has_landmarks = source.has_landmarks
        self._skipped = source.skipped

    def _setup_lfw(self) -> None:
        hp = self.hparams
        source = self._folder_source()
        split = held_out_split(
            source,
            hp.lfw_pairs,
            test_set=hp.lfw_test_set,
            val_set=hp.lfw_val_set,
            distractor_fraction=float(hp.distractor_fraction),
            seed=self.seed,
        )
        self.train_records = self._training_subset(source, split.train_identities)
        (self.val_items, self.val_protocol_), (self.test_items, self.test_protocol_) = (
            split.val,
            split.test,
        )
        self.source = source
        self._schema = source.schema
        self._has_landmarks = source.has_landmarks
        self._skipped = source.skipped

    def _training_subset(self, source, identities) -> RecordSubset:
        """Training records: the images of ``identities`` (source labels) that have at least
        ``min_images_per_identity`` usable images, relabelled 0…C−1."""
        labels = np.asarray(source.labels)
        identities = np.asarray(identities)
        minimum = int(self.hparams.min_images_per_identity)
        if minimum > 1:
            counts = np.bincount(labels[labels >= 0], minlength=int(source.num_classes))
            kept = identities[counts[identities] >= minimum]
            logger.info(
                "min_images_per_identity=%d: %d of %d training identities kept",
                minimum,
                len(kept),
                len(identities),
            )
            identities = kept
        rows = np.flatnonzero(np.isin(labels, identities))
        if np.unique(labels[rows]).size < 2:
            raise ValueError(
                f"{source!r}: fewer than 2 training identities with >= {minimum} images "
                "(data.min_images_per_identity)"
            )
        return RecordSubset(source, rows)

    def _setup_shards(self) -> None:
        hp = self.hparams
        self.shard_index = ShardIndex.load(hp.shards)
        # Every record once, in writing order (shards are written shuffled), in this
        # process: what mean_frontal_landmarks reads.
        self.train_records = ShardStream(
            self.shard_index.path,
            None,
            shuffle_shards=False,
            shuffle_buffer=0,
            rank=0,
            world_size=1,
            worker_id=0,
            num_workers=1,
        )
        self.source = self.train_records
        index = self.shard_index
        self._schema = None if index.schema is None else get_schema(index.schema)
        self._has_landmarks = index.has_landmarks
        self._skipped = SkipReport()
        if hp.root is None:
            self._setup_synth_evaluation(offset=index.num_classes)
            return
        source = self._folder_source()
        identities = np.random.default_rng(self.seed).permutation(source.num_classes)
        half = len(identities) // 2
        if half < 3:
            raise ValueError(
                f"{source!r}: {len(identities)} identities cannot give val and test sets of "
                ">= 3 identities each"
            )
        self.val_items, self.val_protocol_ = build_folder_evaluation(
            source,
            int(hp.val_num_pairs),
            float(hp.distractor_fraction),
            seed=self.seed,
            identities=identities[:half],
        )
        self.test_items, self.test_protocol_ = build_folder_evaluation(
            source,
            int(hp.test_num_pairs),
            float(hp.distractor_fraction),
            seed=self.seed + 1,
            identities=identities[half:],
        )
        self._skipped = source.skipped

    def _require_setup(self) -> None:
        if not self._built:
            self.setup()

    # ------------------------------------------------------------- properties

    @property
    def num_classes(self) -> int:
        """Number of training identities (labels 0 … num_classes − 1)."""
        if self.dataset == "synthfaces":
            return int(self.hparams.num_train_identities)
        if self.dataset == "shards":
            return ShardIndex.load(self.hparams.shards).num_classes
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
            require_landmarks(self.source, "mean_frontal_landmarks (T_fix)")
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
        if self.dataset == "shards":
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
