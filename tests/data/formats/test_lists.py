"""MegaFace-style probe/distractor lists, Multi-PIE-style pose lists, streamed feature files."""

import numpy as np
import pytest
import torch

from balanced_align.data.formats import (
    MULTIPIE_CAMERA_YAW,
    read_distractor_list,
    read_pose_list,
    read_probe_list,
    write_distractor_list,
    write_embeddings_memmap,
    write_pose_list,
    write_probe_list,
)
from balanced_align.evaluation import megaface_rank1


def test_probe_list_round_trip(tmp_path):
    paths = ["Aaron Eckhart/Aaron_Eckhart_1.png", "Zoe_Ball/z 2.png", "Aaron Eckhart/a.png"]
    identities = ["Aaron_Eckhart", "Zoe_Ball", "Aaron_Eckhart"]
    path = tmp_path / "probes.txt"
    write_probe_list(path, paths, identities)
    probes = read_probe_list(path)
    assert probes.paths == paths and probes.names == identities
    assert probes.identities == ["Aaron_Eckhart", "Zoe_Ball"]
    np.testing.assert_array_equal(probes.labels, [0, 1, 0])
    assert probes.yaws is None
    # comments and blank lines are not entries; the written text is 'path identity'
    path.write_text("# FaceScrub probes\n\n" + path.read_text())
    assert read_probe_list(path).paths == paths
    assert path.read_text().splitlines()[3] == "Zoe_Ball/z 2.png Zoe_Ball"


def test_distractor_list_round_trip(tmp_path):
    paths = [f"FlickrFinal2/{i:03d}/{i}_{i * 7}.jpg" for i in range(50)] + ["a b/c.jpg"]
    path = tmp_path / "distractors.txt"
    write_distractor_list(path, paths)
    assert read_distractor_list(path) == paths
    assert len(path.read_text().splitlines()) == len(paths)


def test_pose_list_round_trip_and_errors(tmp_path):
    cameras = ["05_1", "14_0", "11_0", "24_0", "19_0"]
    yaws = [MULTIPIE_CAMERA_YAW[c] for c in cameras]
    paths = [
        f"session01/multiview/001/01/{c}/001_01_01_{c.replace('_', '')}_07.png" for c in cameras
    ]
    identities = ["001", "001", "002", "10", "002"]
    path = tmp_path / "pose.txt"
    write_pose_list(path, paths, identities, yaws)
    poses = read_pose_list(path)
    assert poses.paths == paths and poses.names == identities
    np.testing.assert_array_equal(poses.yaws, [0, -15, -90, 90, 45])
    assert sorted(np.abs(list(MULTIPIE_CAMERA_YAW.values()))) == sorted(
        [0] + [15 * k for k in range(1, 7) for _ in (0, 1)]
    )
    path.write_text("a.png 001 0\nb.png 001 left\n")
    with pytest.raises(ValueError, match=r"pose\.txt', line 2: yaw 'left'"):
        read_pose_list(path)
    path.write_text("a.png 001 0\nb.png\n")
    with pytest.raises(ValueError, match=r"pose\.txt', line 2: expected 'path identity yaw'"):
        read_pose_list(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match=r"pose\.txt.*no entries"):
        read_pose_list(path)
    with pytest.raises(FileNotFoundError, match="absent"):
        read_probe_list(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="whitespace"):
        write_probe_list(tmp_path / "p.txt", ["a.png"], ["two words"])


def _chunks(features: np.ndarray, sizes, consumed: list):
    start = 0
    for size in sizes:
        consumed.append(size)
        chunk = features[start : start + size]
        yield torch.from_numpy(chunk) if len(consumed) % 2 else chunk
        start += size


@pytest.mark.parametrize("suffix", [".npy", ".f32"])
def test_memmap_streams_an_iterator(tmp_path, suffix):
    rng = np.random.default_rng(4)
    features = rng.normal(size=(1000, 16)).astype(np.float32)
    sizes = [300, 1, 299, 400]
    consumed: list[int] = []
    path = tmp_path / f"distractors{suffix}"
    out = write_embeddings_memmap(path, _chunks(features, sizes, consumed), 16, 1000)
    assert consumed == sizes  # the generator was consumed once, in order
    assert isinstance(out, np.memmap) and out.shape == (1000, 16) and not out.flags.writeable
    np.testing.assert_array_equal(out, features)
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(path), features)
    else:
        assert path.stat().st_size == features.nbytes  # header-free
    # the memmap feeds the streaming MegaFace protocol like an in-memory array
    probes = rng.normal(size=(6, 16)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    expected = megaface_rank1(probes, labels, features, chunk_size=128, ranks=(1, 5))
    got = megaface_rank1(probes, labels, out, chunk_size=128, ranks=(1, 5))
    assert got.cmc == expected.cmc and got.num_distractors == 1000


@pytest.mark.parametrize(
    ("sizes", "dim", "message"),
    [([300, 300], 16, "600 rows, expected count=1000"), ([800, 300], 16, "more than count")],
)
def test_memmap_count_mismatch_removes_the_file(tmp_path, sizes, dim, message):
    features = np.zeros((1100, 16), np.float32)
    path = tmp_path / "bad.npy"
    with pytest.raises(ValueError, match=rf"bad\.npy.*{message}"):
        write_embeddings_memmap(path, _chunks(features, sizes, []), dim, 1000)
    assert not path.exists()


def test_memmap_rejects_wrong_width_and_nan(tmp_path):
    path = tmp_path / "bad.npy"
    with pytest.raises(ValueError, match=r"bad\.npy.*\(3, 8\)"):
        write_embeddings_memmap(path, iter([np.zeros((3, 8))]), 16, 3)
    nan = np.zeros((4, 16), np.float32)
    nan[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"bad\.npy.*rows 4…7 hold NaN"):
        write_embeddings_memmap(path, iter([np.zeros((4, 16)), nan]), 16, 8)
    assert not path.exists()
