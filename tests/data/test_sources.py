"""Real-data sources: 300-W .pts folders (HELEN), image-folder trees (AT&T), landmark tables."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.schema import FIVE, IBUG68
from balanced_align.data.sources import (
    ImageFolderSource,
    PtsFolderSource,
    RecordSubset,
    from_corner,
    read_landmark_table,
    read_pts,
    to_corner,
    write_landmark_table,
    write_pts,
)
from tests.data_paths import ASSET_ATT as ATT
from tests.data_paths import ASSET_HELEN as HELEN


def test_every_helen_pts_parses_inside_the_image_with_plausible_eyes():
    _check_helen_pts(HELEN, 8)


def test_every_shared_helen_pts_parses(shared_data):
    _check_helen_pts(shared_data / "landmarks68" / "helen_test", 330)


def _check_helen_pts(folder: Path, count: int) -> None:
    files = sorted(folder.glob("*.pts"))
    assert len(files) == count
    for path in files:
        raw = read_pts(path)
        assert raw.shape == (68, 2), path
        points = to_corner(raw, "one_based")
        np.testing.assert_allclose(points, raw - 0.5)
        assert (points >= 0).all() and (points <= 256).all(), path
        ratio = float(IBUG68.interocular(points)) / 256
        assert 0.15 <= ratio <= 0.6, (path, ratio)


def test_helen_as_pts_folder_source():
    source = PtsFolderSource(HELEN)
    assert len(source) == 8 and source.schema is IBUG68 and source.has_landmarks
    assert source.skipped.count == 0 and (source.labels == -1).all()
    record = source[5]
    assert record.image.shape == (256, 256, 3) and record.image.dtype == np.uint8
    stem = Path(record.source).with_suffix(".pts")
    np.testing.assert_allclose(record.landmarks, read_pts(stem) - 0.5)
    # colour order: RGB, i.e. OpenCV's BGR reversed
    np.testing.assert_array_equal(record.image, cv2.imread(record.source)[:, :, ::-1])


def test_att_faces_loads_as_12_identities_of_10_rgb_images():
    source = ImageFolderSource(ATT)
    assert len(source) == 120 and source.num_classes == 12 and not source.has_landmarks
    assert source.classes == sorted(f"s{i}" for i in range(1, 13))
    np.testing.assert_array_equal(np.bincount(source.labels), np.full(12, 10))
    for index in (0, 73, 119):
        record = source[index]
        assert record.image.shape == (112, 92, 3) and record.image.dtype == np.uint8
        grey = cv2.imread(record.source, cv2.IMREAD_GRAYSCALE)
        for channel in range(3):
            np.testing.assert_array_equal(record.image[..., channel], grey)
        assert source.classes[record.label] == Path(record.source).parent.name
        assert record.landmarks is None


def test_pts_round_trip(tmp_path):
    points = np.random.default_rng(0).uniform(-5, 300, (68, 2))
    write_pts(tmp_path / "a.pts", points)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points, atol=5e-4)
    text = (tmp_path / "a.pts").read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points:  68", "{"] and text[-1] == "}"


def test_conventions_are_inverse_and_half_pixel_apart():
    pts = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(to_corner(pts, "one_based"), [[2.5, 3.5]])
    np.testing.assert_allclose(to_corner(pts, "zero_based_centre"), [[3.5, 4.5]])
    for name in ("corner", "one_based", "zero_based_centre"):
        np.testing.assert_allclose(from_corner(to_corner(pts, name), name), pts)
    with pytest.raises(ValueError, match="convention"):
        to_corner(pts, "centre")


def _tree(root: Path, identities=("bob", "alice"), per_identity=2, size=(20, 16)):
    rng = np.random.default_rng(0)
    table = {}
    for name in identities:
        (root / name).mkdir(parents=True)
        for k in range(per_identity):
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / name / f"{k}.png"), image)
            table[f"{name}/{k}.png"] = rng.uniform(2, 14, (5, 2))
    return table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("convention,shift", [("corner", 0.0), ("one_based", -0.5)])
def test_image_folder_with_landmark_table(tmp_path, suffix, convention, shift):
    table = _tree(tmp_path / "faces")
    write_landmark_table(tmp_path / f"lmk{suffix}", table)
    assert set(read_landmark_table(tmp_path / f"lmk{suffix}")) == set(table)
    source = ImageFolderSource(
        tmp_path / "faces", landmarks=tmp_path / f"lmk{suffix}", landmark_convention=convention
    )
    assert source.schema is FIVE and source.has_landmarks and source.classes == ["alice", "bob"]
    for index in range(len(source)):
        record = source[index]
        key = f"{record.meta['identity']}/{Path(record.source).name}"
        np.testing.assert_allclose(record.landmarks, table[key] + shift, atol=1e-5)
        assert record.label == ["alice", "bob"].index(record.meta["identity"])


def test_record_subset_relabels():
    source = ImageFolderSource(ATT)
    rows = np.flatnonzero(np.isin(source.labels, [3, 7, 10]))
    subset = RecordSubset(source, rows)
    assert len(subset) == 30 and subset.num_classes == 3
    np.testing.assert_array_equal(np.unique(subset.labels), [0, 1, 2])
    assert subset[15].label == 1 and source[int(rows[15])].label == 7
