"""LFW pairs.txt: official layout parsed by hand-written files and round-tripped."""

import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.formats import (
    LFWPairs,
    lfw_image_path,
    read_lfw_pairs,
    write_lfw_pairs,
)
from tests.data_paths import ASSET_HELEN as HELEN

NAMES = ("Abel_Pacheco", "Dean_Barker", "Zico")
COUNTS = (4, 2, 3)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """root/Name/Name_000k.jpg for NAMES with COUNTS images: real HELEN JPEG files (the 8 in
    tests/assets, the first one used twice)."""
    root = tmp_path_factory.mktemp("lfw")
    photos = itertools.cycle(sorted(HELEN.glob("*.jpg")))
    for name, count in zip(NAMES, COUNTS):
        (root / name).mkdir()
        for k in range(1, count + 1):
            shutil.copyfile(next(photos), root / name / f"{name}_{k:04d}.jpg")
    return root


OFFICIAL = """2\t2
Abel_Pacheco\t1\t4
Zico\t1\t2
Abel_Pacheco\t2\tDean_Barker\t1
Dean_Barker\t2\tZico\t3
Zico\t2\t3
Abel_Pacheco\t2\t3
Zico\t1\tAbel_Pacheco\t1

Dean_Barker\t1\tZico\t2
"""


def test_official_layout_gives_sets_as_folds_and_blocks_as_issame(tree, tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(OFFICIAL)
    pairs = read_lfw_pairs(pairs_file, tree)
    assert isinstance(pairs, LFWPairs) and len(pairs) == 8
    np.testing.assert_array_equal(pairs.folds, [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(pairs.issame, [1, 1, 0, 0, 1, 1, 0, 0])
    expected = [
        (("Abel_Pacheco", 1), ("Abel_Pacheco", 4)),
        (("Zico", 1), ("Zico", 2)),
        (("Abel_Pacheco", 2), ("Dean_Barker", 1)),
        (("Dean_Barker", 2), ("Zico", 3)),
        (("Zico", 2), ("Zico", 3)),
        (("Abel_Pacheco", 2), ("Abel_Pacheco", 3)),
        (("Zico", 1), ("Abel_Pacheco", 1)),
        (("Dean_Barker", 1), ("Zico", 2)),
    ]
    for k, (a, b) in enumerate(expected):
        assert pairs.paths[pairs.pairs_a[k]] == tree / a[0] / f"{a[0]}_{a[1]:04d}.jpg"
        assert pairs.paths[pairs.pairs_b[k]] == tree / b[0] / f"{b[0]}_{b[1]:04d}.jpg"
    # unique images: Abel 1,4,2,3 + Zico 1,2,3 + Dean 1,2
    assert len(pairs.paths) == len(set(pairs.paths)) == 9
    # labels index sorted names, consistently with the path's folder
    for i, path in enumerate(pairs.paths):
        assert pairs.names[i] == path.parent.name
        assert sorted(NAMES)[pairs.labels[i]] == path.parent.name
    # the same-pair flag agrees with the identities of the two sides
    np.testing.assert_array_equal(
        pairs.labels[pairs.pairs_a] == pairs.labels[pairs.pairs_b], pairs.issame
    )
    pairs.protocol().validate(pairs.num_images)


def test_record_is_the_rgb_photo(tree, tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(OFFICIAL)
    pairs = read_lfw_pairs(pairs_file, tree)
    record = pairs.record(3)
    np.testing.assert_array_equal(record.image, cv2.imread(str(pairs.paths[3]))[:, :, ::-1])
    assert record.label == pairs.labels[3] and record.landmarks is None


def test_writer_round_trip_and_view1_header(tree, tmp_path):
    rng = np.random.default_rng(0)
    sets = []
    for _ in range(3):
        matched = []
        for _ in range(2):
            i = int(rng.integers(len(NAMES)))
            a, b = rng.choice(np.arange(1, COUNTS[i] + 1), 2, replace=False)
            matched.append((NAMES[i], int(a), int(b)))
        mismatched = []
        for _ in range(2):
            i, j = rng.choice(len(NAMES), 2, replace=False)
            mismatched.append(
                (
                    NAMES[i],
                    int(rng.integers(1, COUNTS[i] + 1)),
                    NAMES[j],
                    int(rng.integers(1, COUNTS[j] + 1)),
                )
            )
        sets.append((matched, mismatched))
    path = tmp_path / "pairs.txt"
    write_lfw_pairs(path, sets)
    assert path.read_text().splitlines()[0] == "3\t2"
    pairs = read_lfw_pairs(path, tree)
    sides = []
    for k in range(len(pairs)):
        a, b = pairs.paths[pairs.pairs_a[k]], pairs.paths[pairs.pairs_b[k]]
        sides.append((a.parent.name, int(a.stem[-4:]), b.parent.name, int(b.stem[-4:])))
    written = []
    for matched, mismatched in sets:
        written += [(n, a, n, b) for n, a, b in matched]
        written += list(mismatched)
    assert sides == written
    np.testing.assert_array_equal(pairs.folds, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(pairs.issame, np.tile([1, 1, 0, 0], 3))

    view1 = tmp_path / "pairsDevTest.txt"
    write_lfw_pairs(view1, sets[:1], single_number=True)
    assert view1.read_text().splitlines()[0] == "2"
    dev = read_lfw_pairs(view1, tree)
    np.testing.assert_array_equal(dev.folds, 0)
    np.testing.assert_array_equal(dev.issame, [1, 1, 0, 0])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1\t1\nZico\t1\tDean_Barker\t1\nZico\t1\tDean_Barker\t1\n", 2, "matched"),
        ("1\t1\nZico\t1\t2\nZico\t1\t3\n", 3, "mismatched"),
        ("1\t1\nZico\tone\t2\nZico\t1\tDean_Barker\t1\n", 2, "matched"),
        ("1\t1\nZico\t0\t2\nZico\t1\tDean_Barker\t1\n", 2, "matched"),
        ("1\t1\nZico\t1\t2\nZico\t1\tDean_Barker\t1\nZico\t1\t2\n", 4, "more pair lines"),
        ("ten\t300\n", 1, "first line"),
    ],
)
def test_bad_lines_name_file_and_line(tree, tmp_path, text, line, message):
    path = tmp_path / "bad_pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_lfw_pairs(path, tree)
    assert "bad_pairs.txt" in str(info.value) and f"line {line}" in str(info.value)


def test_short_file_and_missing_images(tree, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("2\t1\nZico\t1\t2\nZico\t1\tDean_Barker\t1\n")
    with pytest.raises(ValueError, match=r"short\.txt.*promises 4"):
        read_lfw_pairs(short, tree)
    missing = tmp_path / "missing.txt"
    missing.write_text("1\t1\nZico\t1\t9\nZico\t1\tDean_Barker\t7\n")
    with pytest.raises(FileNotFoundError) as info:
        read_lfw_pairs(missing, tree)
    assert "missing.txt" in str(info.value) and "2 listed image(s)" in str(info.value)
    assert str(lfw_image_path(tree, "Zico", 9)) in str(info.value)
    assert str(lfw_image_path(tree, "Dean_Barker", 7)) in str(info.value)
    assert len(read_lfw_pairs(missing, tree, check_images=False)) == 2
