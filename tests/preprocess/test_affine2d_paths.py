"""Affine2D never reads or writes outside its trees: hostile table keys are refused rows,
the sources stay byte-identical, and nothing appears outside --out."""

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from balanced_align.data.sources import write_landmark_table
from balanced_align.preprocess.cli import affine2d_main

FIVE_POINTS = np.array([[12, 15], [28, 15], [20, 22], [14, 30], [26, 30]], np.float64)


def _face(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) -> its bytes."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            if not path.is_symlink():
                files[str(path)] = path.read_bytes()
    return files


def _run(root: Path, table: Path, out: Path, *extra: str) -> int:
    argv = ["--images", str(root), "--landmarks", str(table), "--out", str(out), *extra]
    return affine2d_main([*argv, "--workers", "1"])


@pytest.fixture
def tree(tmp_path):
    """tmp/in/a/{0,1}.png (the image tree), tmp/victim.png beside it, tmp/outside/x.png."""
    _face(tmp_path / "in" / "a" / "0.png", 0)
    _face(tmp_path / "in" / "a" / "1.png", 1)
    _face(tmp_path / "victim.png", 2)
    _face(tmp_path / "outside" / "x.png", 3)
    return tmp_path


def test_escaping_and_absolute_keys_are_refused_rows_and_nothing_outside_out_changes(tree):
    root, out = tree / "in", tree / "out"
    source = root / "a" / "1.png"
    keys = {
        "a/0.png": FIVE_POINTS,  # the one legitimate row
        "../victim.png": FIVE_POINTS,
        "a/../../victim.png": FIVE_POINTS,
        str(source): FIVE_POINTS,  # absolute key naming a source image
        str(tree / "victim.png"): FIVE_POINTS,
    }
    write_landmark_table(tree / "rows.csv", keys)
    before = _snapshot(tree)

    assert _run(root, tree / "rows.csv", out) == 0

    after = _snapshot(tree)
    for path, data in before.items():  # every input (and bystander) byte-identical
        assert after[path] == data, path
    new = sorted(set(after) - set(before))
    assert new and all(Path(p).resolve().is_relative_to(out.resolve()) for p in new), new
    assert sorted(os.listdir(out / "images")) == ["a"]
    assert os.listdir(out / "images" / "a") == ["0.png"]
    failures = pd.read_csv(out / "failures.csv").set_index("path")["reason"]
    assert sorted(failures.index) == sorted(k for k in keys if k != "a/0.png")
    assert all(reason.startswith("refused:") for reason in failures)
    assert "absolute" in failures[str(source)] and "climbs out" in failures["../victim.png"]


def test_symlink_leaving_the_tree_is_refused_and_its_target_untouched(tree):
    root, out = tree / "in", tree / "out"
    (root / "a" / "link.png").symlink_to(tree / "outside" / "x.png")
    write_landmark_table(tree / "rows.csv", {"a/0.png": FIVE_POINTS, "a/link.png": FIVE_POINTS})
    target = (tree / "outside" / "x.png").read_bytes()

    assert _run(root, tree / "rows.csv", out) == 0

    assert (tree / "outside" / "x.png").read_bytes() == target
    assert not (out / "images" / "a" / "link.png").exists()
    failures = pd.read_csv(out / "failures.csv").set_index("path")["reason"]
    assert list(failures.index) == ["a/link.png"] and "leaves" in failures["a/link.png"]


def test_two_keys_with_one_output_do_not_overwrite_each_other(tree):
    root, out = tree / "in", tree / "out"
    _face(root / "a" / "0.bmp", 5)
    write_landmark_table(tree / "rows.csv", {"a/0.png": FIVE_POINTS, "a/0.bmp": FIVE_POINTS})

    assert _run(root, tree / "rows.csv", out, "--format", "png") == 0

    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 1 and "is also" in failures["reason"][0]
    assert len(pd.read_csv(out / "landmarks.csv")) == 1


@pytest.mark.parametrize(
    "layout",
    ["out_inside_images", "images_inside_out_images", "table_is_an_output", "table_in_out_images"],
)
def test_output_folders_that_could_replace_or_delete_inputs_are_refused(tree, layout, capsys):
    root, table, out = tree / "in", tree / "rows.csv", tree / "out"
    if layout == "out_inside_images":
        out = root / "aligned"
    elif layout == "images_inside_out_images":
        out = tree / "in_parent"
        (out / "images").mkdir(parents=True)
        (root).rename(out / "images" / "in")
        root = out / "images" / "in"
        (out / "affine2d.json").write_text("{}")  # looks like a previous run: --overwrite
    elif layout == "table_is_an_output":
        out.mkdir()
        table = out / "landmarks.csv"
        (out / "affine2d.json").write_text("{}")
    else:
        table = out / "images" / "rows.csv"
        table.parent.mkdir(parents=True)
        (out / "affine2d.json").write_text("{}")
    write_landmark_table(table, {"a/0.png": FIVE_POINTS})
    before = _snapshot(tree)

    assert _run(root, table, out, "--overwrite") == 2

    assert "error:" in capsys.readouterr().err
    assert _snapshot(tree) == before  # nothing written, nothing deleted
