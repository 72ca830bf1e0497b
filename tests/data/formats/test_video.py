"""YouTube-Faces-style video pairs: frame folders, splits file, per-video embeddings."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from balanced_align.data.formats import (
    natural_key,
    read_video_pairs,
    video_embeddings,
    write_video_pairs,
)

VIDEOS = {"Aaron_Eckhart/0": 12, "Aaron_Eckhart/2": 3, "Zoe_Ball/1": 2, "Ann_Veneman/4": 5}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """YTF aligned_images_DB layout: frames aligned_detect_<video>.<frame>.jpg."""
    root = tmp_path_factory.mktemp("ytf")
    image = np.full((8, 8, 3), 128, np.uint8)
    for video, count in VIDEOS.items():
        folder = root / video
        folder.mkdir(parents=True)
        number = video.split("/")[1]
        for frame in range(1, count + 1):
            cv2.imwrite(str(folder / f"aligned_detect_{number}.{frame}.jpg"), image)
        (folder / "notes.txt").write_text("not a frame")
    return root


SPLITS = """split number, first name, second name, is same
1, Aaron_Eckhart/0, Aaron_Eckhart/2, 1
1, Aaron_Eckhart/0, Zoe_Ball/1, 0
2, Zoe_Ball/1, Ann_Veneman/4, 0

2, Ann_Veneman/4, Ann_Veneman/4, 1
"""


def test_splits_file_gives_pairs_folds_and_frames(root, tmp_path):
    path = tmp_path / "splits.txt"
    path.write_text(SPLITS)
    pairs = read_video_pairs(path, root)
    assert pairs.videos == ["Aaron_Eckhart/0", "Aaron_Eckhart/2", "Zoe_Ball/1", "Ann_Veneman/4"]
    np.testing.assert_array_equal(pairs.pairs_a, [0, 0, 2, 3])
    np.testing.assert_array_equal(pairs.pairs_b, [1, 2, 3, 3])
    np.testing.assert_array_equal(pairs.issame, [True, False, False, True])
    np.testing.assert_array_equal(pairs.folds, [1, 1, 2, 2])
    assert pairs.names == ["Aaron_Eckhart", "Aaron_Eckhart", "Zoe_Ball", "Ann_Veneman"]
    np.testing.assert_array_equal(pairs.labels, [0, 0, 2, 1])
    # frames in numeric order (…0.9 before …0.10), only image files
    frames = [p.name for p in pairs.frames[0]]
    assert frames == [f"aligned_detect_0.{k}.jpg" for k in range(1, 13)]
    assert [len(f) for f in pairs.frames] == list(VIDEOS.values())
    np.testing.assert_array_equal(pairs.video_index, np.repeat(np.arange(4), [12, 3, 2, 5]))
    assert pairs.frame_paths[12] == root / "Aaron_Eckhart/2/aligned_detect_2.1.jpg"
    pairs.protocol().validate(len(pairs.videos))
    few = read_video_pairs(path, root, max_frames=4)
    assert [p.name for p in few.frames[0]] == [f"aligned_detect_0.{k}.jpg" for k in (1, 5, 8, 12)]
    assert len(few.frames[2]) == 2


def test_writer_round_trip_and_wider_header(root, tmp_path):
    rows = [
        (3, "Zoe_Ball/1", "Aaron_Eckhart/2", False),
        (7, "Ann_Veneman/4", "Ann_Veneman/4", True),
    ]
    path = tmp_path / "splits.txt"
    write_video_pairs(path, rows)
    assert path.read_text().splitlines()[0] == "split number, first name, second name, is same"
    pairs = read_video_pairs(path, root)
    read_back = [
        (int(f), pairs.videos[a], pairs.videos[b], bool(s))
        for f, a, b, s in zip(pairs.folds, pairs.pairs_a, pairs.pairs_b, pairs.issame)
    ]
    assert read_back == rows
    wide = tmp_path / "wide.txt"
    wide.write_text(
        "Split Number, Pair Number, First Name, Second Name, Is Same\n"
        "4, 1, Zoe_Ball/1, Aaron_Eckhart/0, 0\n"
    )
    pairs = read_video_pairs(wide, root)
    assert pairs.videos == ["Zoe_Ball/1", "Aaron_Eckhart/0"] and pairs.folds.tolist() == [4]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("split number, first name, second name\n1, a/0, b/0\n", ValueError, "'is same'"),
        (SPLITS.replace("Zoe_Ball/1, 0", "Zoe_Ball/1, 2"), ValueError, "line 3: label"),
        (SPLITS.replace("1, Aaron_Eckhart/0, A", "x, Aaron_Eckhart/0, A"), ValueError, "line 2"),
        (SPLITS.replace("Zoe_Ball/1, Ann", "Zoe_Ball, Ann"), ValueError, "line 4: video"),
        (SPLITS.replace("Ann_Veneman/4, 1", "Ann_Veneman/9, 1"), FileNotFoundError, "missing"),
    ],
)
def test_bad_splits_name_the_file(root, tmp_path, text, error, message):
    path = tmp_path / "bad_splits.txt"
    path.write_text(text)
    with pytest.raises(error, match=message) as info:
        read_video_pairs(path, root)
    assert "bad_splits.txt" in str(info.value)


def test_video_without_frames(tmp_path):
    (tmp_path / "Empty_Person" / "0").mkdir(parents=True)
    (tmp_path / "Zoe_Ball" / "1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "Zoe_Ball" / "1" / "1.jpg"), np.zeros((4, 4, 3), np.uint8))
    path = tmp_path / "splits.txt"
    write_video_pairs(path, [(1, "Empty_Person/0", "Zoe_Ball/1", False)])
    with pytest.raises(ValueError, match=r"splits\.txt.*no frame images.*Empty_Person/0"):
        read_video_pairs(path, tmp_path)


def test_video_embeddings_are_normalised_frame_means():
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(11, 5)).astype(np.float32)
    index = np.array([2, 0, 0, 1, 2, 2, 0, 1, 1, 1, 2])
    got = video_embeddings(frames, index)
    assert isinstance(got, np.ndarray) and got.shape == (3, 5)
    for v in range(3):
        mean = frames[index == v].mean(axis=0)
        np.testing.assert_allclose(got[v], mean / np.linalg.norm(mean), rtol=1e-5)
    unit = frames / np.linalg.norm(frames, axis=1, keepdims=True)
    tensor = video_embeddings(
        torch.from_numpy(frames), torch.from_numpy(index), normalize_frames=True
    )
    assert torch.is_tensor(tensor)
    mean = unit[index == 1].mean(axis=0)
    np.testing.assert_allclose(tensor[1].numpy(), mean / np.linalg.norm(mean), rtol=1e-5)
    with pytest.raises(ValueError, match=r"videos \[3\] have no frames"):
        video_embeddings(frames, index, num_videos=4)
    with pytest.raises(ValueError, match="video_index"):
        video_embeddings(frames, index[:-1])


def test_natural_key_orders_numbers_numerically():
    names = ["f.10.jpg", "f.9.jpg", "F.1.jpg", "f.100.jpg"]
    assert sorted(names, key=natural_key) == ["F.1.jpg", "f.9.jpg", "f.10.jpg", "f.100.jpg"]
