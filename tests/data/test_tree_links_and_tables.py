"""Image trees with broken symlinks, landmark tables with hostile keys or broken rows:
each is named, under raise and under skip, and nothing vanishes silently."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.sources import (
    ImageFolderSource,
    PtsFolderSource,
    read_landmark_table,
    write_landmark_table,
    write_pts,
)
from balanced_align.data.validation import BadSampleError


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (24, 20, 3), np.uint8))


def _folder_tree(root: Path) -> dict[str, np.ndarray]:
    table = {}
    for k, name in enumerate(("a/0.png", "a/1.png", "b/0.png")):
        _image(root / name, k)
        table[name] = np.random.default_rng(k).uniform(3, 17, (5, 2))
    return table


LINKS = {
    # name: (link path relative to root, link target, kind of error under raise)
    "dangling_image": ("a/2.png", "nowhere.png", FileNotFoundError),
    "image_loop": ("a/3.png", "3.png", BadSampleError),
    "dangling_identity_folder": ("c", "../nowhere", FileNotFoundError),
}


@pytest.mark.parametrize("case", sorted(LINKS))
def test_broken_links_in_an_image_folder_tree_are_bad_samples(tmp_path, case):
    root = tmp_path / "faces"
    _folder_tree(root)
    name, target, error = LINKS[case]
    (root / name).symlink_to(target)
    with pytest.raises(error, match=rf"{name.replace('.', '[.]')}'.*(dangling symlink|loop)"):
        ImageFolderSource(root)
    source = ImageFolderSource(root, on_bad_sample="skip")
    ((path, reason),) = source.skipped
    assert path == str(root / name) and ("dangling" in reason or "loop" in reason)
    assert len(source) == 3


def test_listed_broken_link_is_reported_once(tmp_path):
    root = tmp_path / "faces"
    table = _folder_tree(root)
    (root / "a" / "2.png").symlink_to("nowhere.png")
    table["a/2.png"] = np.full((5, 2), 5.0)
    write_landmark_table(tmp_path / "lmk.csv", table)
    source = ImageFolderSource(root, landmarks=tmp_path / "lmk.csv", on_bad_sample="skip")
    assert source.skipped.paths() == [str(root / "a" / "2.png")]


def test_pts_tree_reports_loops_and_dangling_links_and_follows_linked_folders(tmp_path):
    root, elsewhere = tmp_path / "pts", tmp_path / "elsewhere"
    points = np.random.default_rng(0).uniform(3, 17, (68, 2))
    for folder, stem in ((root / "sub", "x"), (elsewhere, "y")):
        _image(folder / f"{stem}.png", 0)
        write_pts(folder / f"{stem}.pts", points)
    (root / "sub" / "loop").symlink_to("..")
    (root / "sub" / "gone.png").symlink_to("missing.png")
    (root / "linked").symlink_to(elsewhere)
    with pytest.raises((BadSampleError, FileNotFoundError), match=r"gone\.png|loop"):
        PtsFolderSource(root)
    source = PtsFolderSource(root, on_bad_sample="skip")
    assert sorted(Path(p).name for p in source.skipped.paths()) == ["gone.png", "loop"]
    assert sorted(source.paths) == ["linked/y.png", "sub/x.png"]


@pytest.mark.parametrize("key_of", [lambda t: "../outside/x.png", lambda t: str(t / "x.png")])
def test_table_keys_leaving_the_root_are_refused_naming_the_key(tmp_path, key_of):
    root = tmp_path / "faces"
    table = _folder_tree(root)
    _image(tmp_path / "outside" / "x.png", 9)
    _image(tmp_path / "x.png", 9)
    key = key_of(tmp_path)
    table[key] = np.full((5, 2), 5.0)
    write_landmark_table(tmp_path / "lmk.csv", table)
    with pytest.raises(BadSampleError, match=r"refused.*(absolute|climbs out)"):
        ImageFolderSource(root, landmarks=tmp_path / "lmk.csv")
    source = ImageFolderSource(root, landmarks=tmp_path / "lmk.csv", on_bad_sample="skip")
    ((path, reason),) = source.skipped
    assert path == key and reason.startswith("refused")
    assert all(not p.startswith("..") and not Path(p).is_absolute() for p in source.paths)


def test_csv_row_with_extra_fields_names_the_table_and_the_line(tmp_path):
    table = tmp_path / "lmk.csv"
    table.write_text("path,x0,y0\na/0.png,1,2\na/1.png,1,2,3\n")
    with pytest.raises(BadSampleError, match=r"lmk\.csv'.*line 3: 4 fields, the header has 3"):
        read_landmark_table(table)
    _folder_tree(tmp_path / "faces")
    with pytest.raises(BadSampleError, match=r"lmk\.csv'.*line 3"):
        ImageFolderSource(tmp_path / "faces", landmarks=table)
