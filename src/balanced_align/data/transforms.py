"""Landmark-aware image transforms: resize, flip, affine/photometric jitter, to_tensor.

Frames (docs/design.md §2): records carry landmarks in corner-origin pixels (pixel j spans
[j, j + 1)). albumentations keypoints use the OpenCV convention (pixel j's *centre* is
at j: ``HorizontalFlip`` maps x → W − 1 − x, ``Affine`` rotates about ((W − 1)/2,
(H − 1)/2)), so points are shifted by −0.5 before albumentations and +0.5 after; then a
landmark stays on the same pixel content exactly.

The horizontal flip is done here, not by albumentations, because a flip must also apply
the schema's ``flip_permutation`` (otherwise "left eye" ends on the right) and negate yaw
and roll. Resizing is done here too: ``cv2.resize`` is corner-aligned, so corner-frame
points simply scale by (W'/W, H'/H).

Sample dict returned by :class:`FaceTransform` (what the DataLoader collates):

- ``image``: (3, H, W) float32 in [−1, 1], RGB.
- ``landmarks``: (S, 2) float32 normalised (u = 2x/W − 1, v = 2y/H − 1); zeros where the
  record has none (then ``has_landmarks`` is False; S = schema size, 0 without schema).
- ``has_landmarks``: bool scalar tensor.
- ``label``: int64 scalar; ``yaw``: float32 scalar degrees (NaN if unknown; negated by a
  flip); ``index``: int64 scalar, the item's index in its data set.
- ``landmarks_exact``: (S, 2) float32 normalised, only from evaluation transforms and only
  for records whose ``meta["landmarks_exact"]`` holds the true points behind noisy labels
  (SynthFaces with ``landmark_noise``); resized like ``landmarks``. ANME against them
  measures how well the warp aligns the true face rather than its labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from balanced_align.core.schema import LandmarkSchema, get_schema, schema_for_count
from balanced_align.data.record import FaceRecord
from balanced_align.data.validation import require_rgb_uint8
from balanced_align.geometry.coords import pixel_to_normalized

_ALB_SHIFT = 0.5  # corner-origin x minus OpenCV/albumentations x for the same location


def _size_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return size


def resize_face(
    image: np.ndarray, landmarks: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize (H, W, 3) to ``size`` = (H', W') and scale corner-frame (S, 2) landmarks.

    No-op when the size already matches. INTER_AREA when shrinking, INTER_LINEAR else.
    """
    height, width = image.shape[:2]
    new_h, new_w = size
    if (height, width) == (new_h, new_w):
        return image, landmarks
    shrink = new_h * new_w < height * width
    image = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return image, scale_landmarks(landmarks, (height, width), size)


def scale_landmarks(
    landmarks: np.ndarray | None, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray | None:
    """Corner-frame (S, 2) landmarks of an (H, W) image, in the same image resized to
    ``to_size`` = (H', W') by :func:`resize_face` (corner-aligned: x·W'/W, y·H'/H)."""
    if landmarks is None or tuple(from_size) == tuple(to_size):
        return landmarks
    (height, width), (new_h, new_w) = from_size, to_size
    return landmarks * np.array([new_w / width, new_h / height], np.float32)


def hflip_face(
    image: np.ndarray, landmarks: np.ndarray | None, schema: LandmarkSchema | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror (H, W, 3) and its corner-frame (S, 2) landmarks (x → W − x, indices permuted)."""
    flipped = np.ascontiguousarray(image[:, ::-1])
    if landmarks is None:
        return flipped, None
    if schema is None:
        raise ValueError("hflip_face: a landmark schema is needed to flip landmarks")
    return flipped, schema.flip(landmarks, image.shape[1]).astype(np.float32)


def to_tensor(
    image: np.ndarray, landmarks: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 in [−1, 1]; (S, 2) pixels → normalised."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"to_tensor: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    tensor = tensor.div_(127.5).sub_(1.0)
    if landmarks is None:
        return tensor, None
    points = torch.as_tensor(np.asarray(landmarks, np.float32))
    return tensor, pixel_to_normalized(points, image.shape[:2])


@dataclass(frozen=True)
class JitterConfig:
    """Training augmentation strengths (each applied with its probability).

    flip_p: horizontal flip. affine_p, scale, rotate (degrees), translate (fraction of
    size): geometric jitter. color_p, brightness/contrast/saturation (± fraction), hue
    (± fraction of the hue circle): colour jitter. blur_p, blur_sigma: Gaussian blur.
    gray_p: grey scale (kept as 3 channels). erase_p, erase_scale: random erasing (one
    rectangle of ``erase_scale`` × the image area, aspect 0.3–3.3, filled with 0 = black in
    uint8; landmarks unchanged, as the face behind an occluder is where it was). Grey and
    erasing are off by default and join the pipeline only when their probability is > 0,
    so the default pipeline draws exactly the augmentations it drew before they existed.
    """

    flip_p: float = 0.5
    affine_p: float = 0.8
    scale: tuple[float, float] = (0.92, 1.08)
    rotate: tuple[float, float] = (-8.0, 8.0)
    translate: tuple[float, float] = (-0.04, 0.04)
    color_p: float = 0.8
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.02
    blur_p: float = 0.15
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    gray_p: float = 0.0
    erase_p: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.2)


def build_jitter(config: JitterConfig) -> A.Compose:
    """albumentations pipeline of the affine, colour, blur, grey and erasing jitter (no flip,
    no resize).

    Keypoints are in albumentations' "xy" (pixel-centre) frame; ``remove_invisible=False``
    keeps points that leave the image. The border is replicated: reflect modes would
    make albumentations add mirrored copies of keypoints.
    """
    steps = [
        A.Affine(
            scale=config.scale,
            rotate=config.rotate,
            translate_percent=config.translate,
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_REPLICATE,
            p=config.affine_p,
        ),
        A.ColorJitter(
            brightness=config.brightness,
            contrast=config.contrast,
            saturation=config.saturation,
            hue=config.hue,
            p=config.color_p,
        ),
        A.GaussianBlur(blur_limit=0, sigma_limit=config.blur_sigma, p=config.blur_p),
    ]
    if config.gray_p > 0:
        steps.append(A.ToGray(p=config.gray_p))
    if config.erase_p > 0:
        steps.append(A.Erasing(scale=config.erase_scale, p=config.erase_p))
    return A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))


class FaceTransform:
    """FaceRecord → sample dict (see module docstring) for training or evaluation.

    Evaluation (``train=False``): resize to ``image_size`` only if the record's size
    differs, then :func:`to_tensor`; deterministic.
    Training: resize, horizontal flip with landmark permutation (``jitter.flip_p``),
    then affine, colour and blur jitter (:class:`JitterConfig`).

    Randomness, two ways:

    - keyed (``epoch`` given): the augmentation of a sample is a pure function of
      ``(seed, epoch, index)``, whatever came before it, in whichever worker. The training
      loaders use this (the map-style one, see :mod:`.epoch_sampler`, and the shard
      stream, :mod:`.shards`), so a resumed run draws exactly the augmentations an
      uninterrupted run would.
    - streamed (``epoch=None``): the transform's own generators, seeded by ``seed`` and
      re-seeded in DataLoader workers through :meth:`reseed` (``datamodule.seed_worker``).

    Args:
        train: training augmentation on/off.
        image_size: model input size, int or (H, W).
        schema: landmark schema (name or object) of the records; None = infer from the
            point count of each record (and S = 0 for records without landmarks).
        jitter: augmentation strengths for ``train=True``.
        seed: seed of the augmentation randomness.
    """

    def __init__(
        self,
        train: bool,
        image_size: int | tuple[int, int],
        schema: str | LandmarkSchema | None = None,
        jitter: JitterConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.train = bool(train)
        self.size = _size_hw(image_size)
        self.schema = None if schema is None else get_schema(schema)
        self.jitter = jitter or JitterConfig()
        self._compose = build_jitter(self.jitter) if self.train else None
        self.seed = int(seed) % 2**63  # keyed randomness; reseed() leaves it alone
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the streamed augmentation randomness from ``seed`` (flip and
        albumentations). Keyed calls (``epoch`` given) do not depend on it."""
        self._restart(np.random.SeedSequence(int(seed) % 2**63))

    def _restart(self, sequence: np.random.SeedSequence) -> None:
        flip_seed, alb_seed = sequence.generate_state(2)
        self._rng = np.random.default_rng(int(flip_seed))
        if self._compose is not None:
            self._compose.set_random_seed(int(alb_seed))

    def _schema_for(self, landmarks: np.ndarray | None) -> LandmarkSchema | None:
        if landmarks is None or self.schema is not None:
            return self.schema
        return schema_for_count(len(landmarks))

    def _jitter(self, image, landmarks):
        if landmarks is None:
            out = self._compose(image=image, keypoints=np.zeros((0, 2), np.float32))
            return out["image"], None
        out = self._compose(image=image, keypoints=landmarks - _ALB_SHIFT)
        points = np.asarray(out["keypoints"], np.float32).reshape(-1, 2)
        if len(points) != len(landmarks):
            raise RuntimeError(
                f"albumentations changed the landmark count ({len(landmarks)} -> {len(points)})"
            )
        return out["image"], points + _ALB_SHIFT

    def __call__(
        self, record: FaceRecord, index: int = -1, epoch: int | None = None
    ) -> dict[str, torch.Tensor]:
        """The sample dict of ``record`` (item ``index`` of its data set). With ``epoch``,
        training randomness is keyed by ``(seed, epoch, index)`` (needs ``index >= 0``)."""
        if self.train and epoch is not None:
            if int(index) < 0 or int(epoch) < 0:
                raise ValueError(
                    f"FaceTransform: keyed augmentation needs index >= 0 and epoch >= 0, "
                    f"got index={index}, epoch={epoch}"
                )
            self._restart(np.random.SeedSequence([self.seed, int(epoch), int(index)]))
        image = record.image
        require_rgb_uint8(image, f"FaceTransform: record {record.source or index!r}")
        landmarks = None
        if record.landmarks is not None:
            landmarks = np.asarray(record.landmarks, np.float32)
        schema = self._schema_for(landmarks)
        if landmarks is not None:
            schema.check(landmarks, where=f"landmarks of record {record.source or index!r}")
        yaw = float(record.yaw)
        image, landmarks = resize_face(image, landmarks, self.size)
        if self.train:
            if self._rng.random() < self.jitter.flip_p:
                image, landmarks = hflip_face(image, landmarks, schema)
                yaw = -yaw
            image, landmarks = self._jitter(image, landmarks)
        image_t, points_t = to_tensor(image, landmarks)
        exact = self._exact_landmarks(record, landmarks is not None, schema, index)
        has_landmarks = points_t is not None
        if points_t is None:
            num_points = 0 if schema is None else schema.num_points
            points_t = torch.zeros(num_points, 2)
        sample = {
            "image": image_t,
            "landmarks": points_t.float(),
            "has_landmarks": torch.tensor(has_landmarks),
            "label": torch.tensor(int(record.label), dtype=torch.int64),
            "yaw": torch.tensor(yaw, dtype=torch.float32),
            "index": torch.tensor(int(index), dtype=torch.int64),
        }
        if exact is not None:
            sample["landmarks_exact"] = exact
        return sample

    def _exact_landmarks(
        self, record: FaceRecord, has_labels: bool, schema, index: int
    ) -> torch.Tensor | None:
        """The record's true landmarks (``meta["landmarks_exact"]``) as a normalised (S, 2)
        tensor, for evaluation transforms (no flip or jitter to follow); else None."""
        exact = (record.meta or {}).get("landmarks_exact")
        if self.train or exact is None or not has_labels:
            return None
        exact = np.asarray(exact, np.float32)
        schema.check(exact, where=f"meta['landmarks_exact'] of record {record.source or index!r}")
        exact = scale_landmarks(exact, record.image.shape[:2], self.size)
        return pixel_to_normalized(torch.from_numpy(exact), self.size)

    def __repr__(self) -> str:
        schema = None if self.schema is None else self.schema.name
        return f"FaceTransform(train={self.train}, image_size={self.size}, schema={schema!r})"
