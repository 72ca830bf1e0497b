"""Landmark-aware transforms: flips, affine jitter and to_tensor keep landmarks on content."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import FIVE, IBUG68, LMK84
from balanced_align.data.sources import read_pts, to_corner
from balanced_align.data.transforms import (
    FaceTransform,
    JitterConfig,
    hflip_face,
    resize_face,
    to_tensor,
)
from balanced_align.data.validation import read_image
from tests.data_paths import ASSET_HELEN as HELEN

NO_JITTER = JitterConfig(flip_p=0.0, affine_p=0.0, color_p=0.0, blur_p=0.0)
FLIP_ONLY = JitterConfig(flip_p=1.0, affine_p=0.0, color_p=0.0, blur_p=0.0)


def _pixel_landmarks(sample: dict, size: tuple[int, int]) -> np.ndarray:
    """Normalised sample landmarks back to corner-origin pixels, independently of coords.py."""
    height, width = size
    uv = sample["landmarks"].double().numpy()
    return np.stack([(uv[:, 0] + 1) * width / 2, (uv[:, 1] + 1) * height / 2], axis=1)


def _uint8(sample: dict) -> np.ndarray:
    return ((sample["image"].permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)


def _dot_image(size, num_points, seed):
    """Image with one distinct-valued dot per landmark, landmarks at the dots' centres."""
    rng = np.random.default_rng(seed)
    height, width = size
    cells = rng.choice(height * width, size=num_points, replace=False)
    rows, cols = np.divmod(cells, width)
    image = np.zeros((height, width, 3), np.uint8)
    values = 3 * (np.arange(num_points) + 1)
    image[rows, cols, 0] = values
    image[rows, cols, 1] = 255 - values
    points = np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float32)
    return image, points, values


def test_flip_twice_is_identity_and_once_is_not():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    points = rng.uniform(0, 52, (84, 2)).astype(np.float32)
    once_img, once_pts = hflip_face(image, points, LMK84)
    twice_img, twice_pts = hflip_face(once_img, once_pts, LMK84)
    np.testing.assert_array_equal(twice_img, image)
    np.testing.assert_allclose(twice_pts, points, atol=1e-5)
    assert not np.array_equal(once_img, image)
    assert not np.allclose(once_pts, points)


@pytest.mark.parametrize("name", ["2968560214_1", "296814969_3"])
def test_flip_keeps_left_eye_on_image_left_of_nose(name):
    image = read_image(HELEN / f"{name}.jpg")
    points = to_corner(read_pts(HELEN / f"{name}.pts"), "one_based")

    def order_ok(pts):
        left, right, nose = IBUG68.five_points(pts)[[0, 1, 2], 0]
        return left < nose < right

    assert order_ok(points)  # a near-frontal face to start from
    _, flipped = hflip_face(image, points, IBUG68)
    assert order_ok(flipped)
    # the same through the training transform (flip always, nothing else)
    sample = FaceTransform(True, 256, IBUG68, FLIP_ONLY)(FaceRecord(image, points, 0, yaw=10.0))
    assert order_ok(_pixel_landmarks(sample, (256, 256)))
    assert sample["yaw"].item() == -10.0
    # a mirror without the permutation would have swapped the eyes
    mirrored = points.copy()
    mirrored[:, 0] = 256 - mirrored[:, 0]
    assert not order_ok(mirrored)


@pytest.mark.parametrize("schema", [FIVE, IBUG68])
def test_flipped_landmark_sits_on_flipped_dot(schema):
    size = (48, 64)
    image, points, values = _dot_image(size, schema.num_points, seed=schema.num_points)
    sample = FaceTransform(True, size, schema, FLIP_ONLY)(FaceRecord(image, points, 3), index=7)
    out = _uint8(sample)
    pixels = np.floor(_pixel_landmarks(sample, size)).astype(int)
    perm = np.asarray(schema.flip_permutation)
    # landmark i after the flip is old landmark perm[i]: its dot, moved to the mirrored pixel
    np.testing.assert_array_equal(out[pixels[:, 1], pixels[:, 0], 0], values[perm])
    np.testing.assert_array_equal(out[pixels[:, 1], pixels[:, 0], 1], 255 - values[perm])
    assert sample["label"].item() == 3 and sample["index"].item() == 7


def _blob_centroid_error(jitter: JitterConfig, seeds) -> float:
    size = 64
    centre = np.array([30.3, 33.7], np.float32)
    points = np.array([centre, [44.1, 21.2], [32.0, 35.5], [24.6, 46.3], [40.2, 47.0]])
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 2.0**2))
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = (255 * blob).round()
    transform = FaceTransform(True, size, FIVE, jitter)
    worst = 0.0
    for seed in seeds:
        transform.reseed(seed)
        sample = transform(FaceRecord(image, points.astype(np.float32), 0))
        weight = sample["image"][0].double().numpy() + 1.0
        weight /= weight.sum()
        found = np.array([(weight * xs).sum(), (weight * ys).sum()])
        worst = max(worst, float(np.abs(found - _pixel_landmarks(sample, (size, size))[0]).max()))
    return worst


def test_affine_jitter_keeps_landmark_on_pixel_content():
    # strong zoom + rotation: a half-pixel convention slip would move the point ~0.6 px
    strong = JitterConfig(
        flip_p=0.0,
        affine_p=1.0,
        scale=(1.6, 1.8),
        rotate=(25.0, 35.0),
        translate=(-0.05, 0.05),
        color_p=0.0,
        blur_p=0.0,
    )
    assert _blob_centroid_error(strong, range(4)) < 0.05
    default_geometry = JitterConfig(flip_p=0.0, affine_p=1.0, color_p=0.0, blur_p=0.0)
    assert _blob_centroid_error(default_geometry, range(4)) < 0.05


def test_to_tensor_range_and_normalised_coordinates():
    image = np.zeros((4, 8, 3), np.uint8)
    image[0, 0] = 255
    image[1, 2] = (0, 128, 255)
    points = np.array([[0.0, 0.0], [8.0, 4.0], [2.5, 1.5], [4.0, 2.0]], np.float32)
    tensor, uv = to_tensor(image, points)
    assert tensor.shape == (3, 4, 8) and tensor.dtype == torch.float32
    assert tensor.min().item() == -1.0 and tensor.max().item() == 1.0
    np.testing.assert_allclose(tensor[:, 1, 2].numpy(), [-1.0, 128 / 127.5 - 1.0, 1.0], atol=1e-6)
    expected = np.array([[-1, -1], [1, 1], [2 * 2.5 / 8 - 1, 2 * 1.5 / 4 - 1], [0, 0]])
    np.testing.assert_allclose(uv.numpy(), expected, atol=1e-6)


def test_eval_transform_is_identity_when_size_matches_and_resizes_otherwise():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    points = rng.uniform(2, 30, (5, 2)).astype(np.float32)
    record = FaceRecord(image, points, 1, yaw=5.0)
    transform = FaceTransform(False, 32, FIVE)
    sample = transform(record, index=4)
    np.testing.assert_array_equal(_uint8(sample), image)
    np.testing.assert_allclose(_pixel_landmarks(sample, (32, 32)), points, atol=1e-5)
    assert sample["yaw"].item() == 5.0 and bool(sample["has_landmarks"])
    # resizing keeps normalised coordinates (u = 2x/W − 1 is scale-free)
    small = FaceTransform(False, (16, 24), FIVE)(record)
    assert small["image"].shape == (3, 16, 24)
    np.testing.assert_allclose(small["landmarks"].numpy(), sample["landmarks"].numpy(), atol=1e-5)


def test_exact_landmarks_follow_the_labels_through_evaluation_transforms():
    """meta["landmarks_exact"] comes out resized and normalised like the labels, from
    evaluation transforms only (training ones flip and jitter the labels alone)."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    exact = rng.uniform(4, 36, (5, 2)).astype(np.float32)
    labels = exact + rng.normal(0, 2, exact.shape).astype(np.float32)
    record = FaceRecord(image, labels, 1, meta={"landmarks_exact": exact})
    sample = FaceTransform(False, (20, 30), FIVE)(record)
    expected = np.stack([2 * exact[:, 0] / 40 - 1, 2 * exact[:, 1] / 40 - 1], axis=1)
    np.testing.assert_allclose(sample["landmarks_exact"].numpy(), expected, atol=1e-6)
    truth = FaceTransform(False, (20, 30), FIVE)(FaceRecord(image, exact, 1))
    np.testing.assert_allclose(sample["landmarks_exact"], truth["landmarks"], atol=1e-6)
    assert "landmarks_exact" not in truth
    assert "landmarks_exact" not in FaceTransform(True, 40, FIVE)(record)
    bad = FaceRecord(image, labels, 1, source="face.png", meta={"landmarks_exact": exact[:4]})
    with pytest.raises(ValueError, match=r"landmarks_exact.*face\.png"):
        FaceTransform(False, 40, FIVE)(bad)


def test_resize_keeps_landmark_on_blob():
    ys, xs = np.mgrid[0:112, 0:92] + 0.5
    centre = (40.3, 61.8)
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 4.0**2))
    image = np.repeat((255 * blob).round().astype(np.uint8)[..., None], 3, axis=2)
    out, pts = resize_face(image, np.array([centre], np.float32), (64, 64))
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    weight = out[..., 0].astype(float) / out[..., 0].sum()
    np.testing.assert_allclose([(weight * xs).sum(), (weight * ys).sum()], pts[0], atol=0.05)


def test_missing_landmarks_give_zeros_and_flag():
    image = np.zeros((20, 20, 3), np.uint8)
    sample = FaceTransform(True, 20, LMK84)(FaceRecord(image, None, 2))
    assert sample["landmarks"].shape == (84, 2)
    assert not bool(sample["has_landmarks"]) and torch.all(sample["landmarks"] == 0)
    sample = FaceTransform(False, 20, None)(FaceRecord(image, None, 2))
    assert sample["landmarks"].shape == (0, 2)
    assert sample["yaw"].isnan() and sample["label"].dtype == torch.int64


def test_training_augmentation_is_reproducible_from_the_seed():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    record = FaceRecord(image, rng.uniform(4, 28, (84, 2)).astype(np.float32), 0)
    a = [FaceTransform(True, 32, LMK84, seed=5)(record) for _ in range(1)]
    t = FaceTransform(True, 32, LMK84, seed=5)
    first = [t(record) for _ in range(3)]
    t.reseed(5)
    again = [t(record) for _ in range(3)]
    for x, y in zip(first, again):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["landmarks"], y["landmarks"])
    assert torch.equal(a[0]["image"], first[0]["image"])
    assert not torch.equal(first[0]["image"], first[1]["image"])


def test_bad_record_is_named():
    with pytest.raises(ValueError, match=r"face\.png"):
        FaceTransform(False, 8)(FaceRecord(np.zeros((8, 8), np.uint8), None, 0, source="face.png"))
    with pytest.raises(ValueError, match="84 landmarks"):
        FaceTransform(False, 8, LMK84)(
            FaceRecord(np.zeros((8, 8, 3), np.uint8), np.zeros((5, 2)), 0)
        )


def test_grey_and_erasing_keep_landmarks_and_change_only_what_they_say():
    """gray_p = 1: the three channels equal the ITU-R 601 luma of the input; erase_p = 1: one
    rectangle of erase_scale × the area turns black, everything else and the landmarks are
    untouched; both at p = 0 (the default) leave the pipeline as before they existed."""
    rng = np.random.default_rng(3)
    image = rng.integers(1, 256, (48, 48, 3), dtype=np.uint8)  # no black pixel to start with
    points = rng.uniform(1, 47, (5, 2)).astype(np.float32)
    record = FaceRecord(image, points, 0)

    grey = FaceTransform(True, 48, FIVE, replace(NO_JITTER, gray_p=1.0))(record)
    out = _uint8(grey).astype(float)
    luma = image.astype(float) @ np.array([0.299, 0.587, 0.114])
    for channel in range(3):
        np.testing.assert_allclose(out[..., channel], luma, atol=1.01)
    np.testing.assert_allclose(_pixel_landmarks(grey, (48, 48)), points, atol=1e-4)

    scale = (0.1, 0.15)
    erase = replace(NO_JITTER, erase_p=1.0, erase_scale=scale)
    transform = FaceTransform(True, 48, FIVE, erase)
    for seed in range(5):
        transform.reseed(seed)
        sample = transform(record)
        out = _uint8(sample)
        black = (out == 0).all(axis=2)
        rows, cols = np.nonzero(black)
        box = np.zeros_like(black)
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        np.testing.assert_array_equal(black, box)  # one filled rectangle
        assert scale[0] - 0.02 <= black.mean() <= scale[1] + 0.02
        np.testing.assert_array_equal(out[~black], image[~black])
        np.testing.assert_allclose(_pixel_landmarks(sample, (48, 48)), points, atol=1e-4)

    # off by default: the pipeline is the affine, colour and blur jitter alone
    assert len(FaceTransform(True, 48, FIVE, JitterConfig())._compose.transforms) == 3
