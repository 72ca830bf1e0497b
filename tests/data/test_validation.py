"""Bad input: each case raises naming the file, and under skip is counted, listed and logged."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.sources import (
    ImageFolderSource,
    PtsFolderSource,
    write_landmark_table,
    write_pts,
)
from balanced_align.data.validation import (
    BadSampleError,
    DataConfigurationError,
    landmark_problem,
    read_image,
    require_landmarks,
)
from tests.data_paths import ASSET_ATT as ATT


def _image(seed=0, size=(24, 20)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _good_tree(root: Path) -> dict:
    """root/{a,b}/{0,1}.jpg plus a five-point table inside the 24x20 images."""
    table = {}
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(root / name / f"{k}.jpg"), _image(k))
            table[f"{name}/{k}.jpg"] = np.random.default_rng(k).uniform(3, 17, (5, 2))
    return table


def _truncated_jpeg(path: Path):
    data = cv2.imencode(".jpg", _image(3))[1].tobytes()
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path: Path):
    path.write_text("this is not an image\n")


CASES = {
    # name: (mutation of the tree/table, file named in the error, expected error type)
    "truncated_jpeg": (lambda r, t: _truncated_jpeg(r / "a" / "1.jpg"), "a/1.jpg", BadSampleError),
    "non_image": (lambda r, t: _not_an_image(r / "b" / "0.jpg"), "b/0.jpg", BadSampleError),
    "nan_landmark": (
        lambda r, t: t["a/0.jpg"].__setitem__((2, 1), np.nan),
        "a/0.jpg",
        BadSampleError,
    ),
    "landmark_far_outside": (
        lambda r, t: t["b/1.jpg"].__setitem__((4, 0), 45.0),  # W = 20: > 50 % outside
        "b/1.jpg",
        BadSampleError,
    ),
    "empty_identity_folder": (lambda r, t: (r / "c").mkdir(), "c", BadSampleError),
    "missing_landmark_row": (lambda r, t: t.pop("b/0.jpg"), "b/0.jpg", BadSampleError),
    "listed_but_missing": (
        lambda r, t: t.__setitem__("a/9.jpg", np.full((5, 2), 5.0)),
        "a/9.jpg",
        FileNotFoundError,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_folder_input_raises_naming_the_file_or_is_skipped_with_report(tmp_path, case, caplog):
    mutate, named, error = CASES[case]
    root = tmp_path / "faces"
    table = _good_tree(root)
    mutate(root, table)
    write_landmark_table(tmp_path / "lmk.csv", table)
    with pytest.raises(error, match=named.replace(".", r"\.")):
        ImageFolderSource(root, landmarks=tmp_path / "lmk.csv")
    with caplog.at_level(logging.WARNING, logger="balanced_align.data.validation"):
        source = ImageFolderSource(root, landmarks=tmp_path / "lmk.csv", on_bad_sample="skip")
    assert source.skipped.count == 1
    ((path, reason),) = source.skipped
    assert path == str(root / named) and reason
    assert named in caplog.text and "skipped 1 bad sample" in caplog.text
    expected_len = 4 if case in ("empty_identity_folder", "listed_but_missing") else 3
    assert len(source) == expected_len
    assert str(root / named) not in [str(root / p) for p in source.paths]
    for index in range(len(source)):  # what is left loads
        assert source[index].landmarks.shape == (5, 2)


def test_good_tree_has_nothing_to_skip(tmp_path):
    table = _good_tree(tmp_path / "faces")
    write_landmark_table(tmp_path / "lmk.csv", table)
    source = ImageFolderSource(tmp_path / "faces", landmarks=tmp_path / "lmk.csv")
    assert len(source) == 4 and source.skipped.count == 0 and source.num_classes == 2


def test_identity_whose_images_are_all_bad_disappears_and_labels_stay_contiguous(tmp_path):
    root = tmp_path / "faces"
    _good_tree(root)
    (root / "0").mkdir()
    _not_an_image(root / "0" / "x.png")
    source = ImageFolderSource(root, on_bad_sample="skip")
    assert source.classes == ["a", "b"] and sorted(set(source.labels.tolist())) == [0, 1]
    assert source.skipped.paths() == [str(root / "0" / "x.png")]


def _pts_folder(root: Path, count_line: int, lines: int):
    root.mkdir()
    cv2.imwrite(str(root / "good.jpg"), _image(0, (64, 64)))
    write_pts(root / "good.pts", np.random.default_rng(0).uniform(5, 60, (68, 2)))
    cv2.imwrite(str(root / "bad.jpg"), _image(1, (64, 64)))
    body = [f"{10 + i % 40}.0 {12 + i % 37}.0" for i in range(lines)]
    text = ["version: 1", f"n_points: {count_line}", "{", *body, "}"]
    (root / "bad.pts").write_text("\n".join(text) + "\n")


@pytest.mark.parametrize("header", [68, 67])
def test_pts_with_67_points(tmp_path, header):
    _pts_folder(tmp_path / "w", header, 67)
    with pytest.raises(BadSampleError, match=r"bad\.(pts|jpg).*(wrong landmark count|67)"):
        PtsFolderSource(tmp_path / "w", schema="ibug68")
    source = PtsFolderSource(tmp_path / "w", schema="ibug68", on_bad_sample="skip")
    assert len(source) == 1 and source.skipped.count == 1
    assert "bad." in source.skipped.entries[0][0]
    assert "count" in source.skipped.entries[0][1]


def test_pts_without_image_and_image_without_pts(tmp_path):
    root = tmp_path / "w"
    _pts_folder(root, 68, 68)
    write_pts(root / "orphan.pts", np.full((68, 2), 9.0))
    with pytest.raises(FileNotFoundError, match=r"orphan\.pts"):
        PtsFolderSource(root)
    (root / "orphan.pts").unlink()
    cv2.imwrite(str(root / "lonely.png"), _image(2))
    with pytest.raises(FileNotFoundError, match=r"lonely\.png"):
        PtsFolderSource(root)
    assert len(PtsFolderSource(root, on_bad_sample="skip")) == 2


def test_read_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.png"):
        read_image(tmp_path / "nothing.png")
    _not_an_image(tmp_path / "x.png")
    with pytest.raises(BadSampleError, match=r"x\.png.*not a readable image"):
        read_image(tmp_path / "x.png")
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"e\.jpg.*empty"):
        read_image(tmp_path / "e.jpg")


def test_landmark_problem_margin():
    inside = np.array([[-9.0, 5.0], [29.0, 34.0]])  # image 20 wide, 24 high
    assert landmark_problem(inside, 2, (24, 20), margin=0.5) is None
    assert "far outside" in landmark_problem(inside, 2, (24, 20), margin=0.4)
    assert "wrong landmark count" in landmark_problem(inside, 3)


def test_require_landmarks_and_bad_policy():
    source = ImageFolderSource(ATT)
    with pytest.raises(
        DataConfigurationError,
        match=r"ImageFolderSource\('.*att_faces'\) has no "
        r"landmarks, but align.lambda > 0 needs them",
    ):
        require_landmarks(source, "align.lambda > 0")
    with pytest.raises(ValueError, match="on_bad_sample"):
        ImageFolderSource(ATT, on_bad_sample="ignore")
