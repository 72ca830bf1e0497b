"""Trained Affine2D / FullAlign checkpoints evaluated on real photographs through ``eval.py``.

Two tiny checkpoints are trained (``experiment=lfw``, a few steps) on a tiny LFW-layout tree of
the vendored HELEN faces (tests/data/lfw_tree.py: 68 hand-labelled points per image), then
evaluated on that tree's pairs and on YTF / MegaFace / Multi-PIE / ``.bin`` files made of the
same images: with a landmark table, without one (an error naming the key), with list entries
that leave their root (refused, naming the key), and with ``landmarks=annotate`` (dlib on the
full-size photographs; the cached table is checked against the hand labels and reused).
"""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.formats import (
    read_lfw_pairs,
    write_bin,
    write_distractor_list,
    write_pose_list,
    write_probe_list,
    write_video_pairs,
)
from balanced_align.data.sources import read_landmark_table, read_pts, write_landmark_table
from balanced_align.evaluating import run
from balanced_align.safe_paths import UnsafePathError
from balanced_align.training import run as train
from tests.data.lfw_tree import PER_PERSON, SET_PEOPLE, UNPAIRED, write_lfw_tree
from tests.data_paths import ASSET_HELEN
from tests.training.test_eval_entry import compose_eval
from tests.training_helpers import TINY, compose_train

METHODS = ("affine2d", "fullalign")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """The tiny LFW tree (48² crops) and one checkpoint per landmark method trained on it."""
    root = tmp_path_factory.mktemp("lfw")
    images, table, pairs = write_lfw_tree(root)
    data = [
        f"data.source.{k}={v}"
        for k, v in (("root", images), ("landmarks", table), ("pairs", pairs))
    ]
    checkpoints = {}
    for method in METHODS:
        out = root / f"run_{method}"
        overrides = [
            *TINY[:3],
            "experiment=lfw",
            *data,
            f"align={method}",
            "align.location=input",
            "loss.lambda=0",
            "data.batch_size=8",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "figures=false",
            "test=false",
            "+trainer.limit_train_batches=2",
            *TINY[-6:],
        ]
        train(compose_train(overrides, output_dir=out))
        checkpoints[method] = out / "checkpoints" / "last.ckpt"
    return {"images": images, "table": table, "pairs": pairs, "checkpoints": checkpoints}


def lfw_overrides(tree: dict, method: str, tmp_path: Path, *extra) -> list[str]:
    return [
        f"ckpt_path={tree['checkpoints'][method]}",
        "benchmark=lfw",
        f"benchmark.lfw.pairs={tree['pairs']}",
        f"benchmark.lfw.root={tree['images']}",
        "device=cpu",
        "num_workers=0",
        "annotate.progress=false",
        f"annotate.cache_dir={tmp_path / 'cache'}",
        *extra,
    ]


@pytest.mark.parametrize("method", METHODS)
def test_trained_checkpoint_evaluates_on_lfw_pairs_with_a_table(tree, tmp_path, method):
    pairs = read_lfw_pairs(tree["pairs"], tree["images"])
    table = f"benchmark.lfw.landmarks={tree['table']}"
    results = run(compose_eval(lfw_overrides(tree, method, tmp_path, table), tmp_path / "o"))
    assert results["model"]["method"] == method
    metrics = results["benchmarks"]["lfw"]
    assert metrics["num_pairs"] == len(pairs) == 40 and metrics["num_images"] == pairs.num_images
    assert metrics["num_folds"] == 2
    assert 0.0 <= metrics["verif_acc"] <= 1.0 and 0.0 <= metrics["verif_auc"] <= 1.0
    assert results["landmarks"] == {"lfw.landmarks": {"source": str(tree["table"])}}

    cfg = compose_eval(lfw_overrides(tree, method, tmp_path), tmp_path / "p")
    with pytest.raises(ValueError, match=rf"align\.method={method}.*benchmark\.lfw\.landmarks="):
        run(cfg)


def _other_benchmarks(tree: dict, root: Path) -> list[str]:
    """YTF, MegaFace, Multi-PIE and .bin files over the tree's images, each with the tree's
    hand labels as its landmark table (keyed as each benchmark keys its images)."""
    images, labels = tree["images"], read_landmark_table(tree["table"])
    people = [name for group in SET_PEOPLE for name in group]
    key = {(p, n): f"{p}/{p}_{n:04d}.jpg" for p in people + list(UNPAIRED) for n in range(1, 5)}
    ytf_table = {}
    for p in people[:4]:
        for n in range(1, PER_PERSON + 1):  # two videos of two frames per person
            frame = f"{p}/{(n - 1) // 2}/{n % 2}.jpg"
            (root / "ytf" / frame).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(images / key[p, n], root / "ytf" / frame)
            ytf_table[frame] = labels[key[p, n]]
    write_landmark_table(root / "ytf.csv", ytf_table)
    write_video_pairs(
        root / "splits.txt",
        [(s + 1, f"{people[s]}/0", f"{people[s]}/1", True) for s in range(2)]
        + [(s + 1, f"{people[s]}/0", f"{people[s + 1]}/1", False) for s in range(2)],
    )
    probes = [key[p, n] for p in people[:3] for n in (1, 2, 3)]
    write_probe_list(root / "probes.txt", probes, [k.split("/")[0] for k in probes])
    write_distractor_list(root / "distractors.txt", [key[p, 1] for p in UNPAIRED])
    poses = [(key[p, n], p, 0.0 if n == 1 else 30.0) for p in people[:4] for n in (1, 2)]
    write_pose_list(root / "poses.txt", *zip(*poses))
    order = [key[p, n] for p in people[:4] for n in (1, 2)]
    write_bin(root / "cfp.bin", [cv2.imread(str(images / k))[..., ::-1] for k in order],
              [True, False, True, False], ext=".png")  # fmt: skip
    write_landmark_table(root / "bin.csv", {f"cfp/{i}": labels[k] for i, k in enumerate(order)})
    return [
        "benchmark=[ytf,megaface,multipie,bin]",
        f"benchmark.ytf.splits={root / 'splits.txt'}",
        f"benchmark.ytf.root={root / 'ytf'}",
        f"benchmark.ytf.landmarks={root / 'ytf.csv'}",
        f"benchmark.megaface.probes={root / 'probes.txt'}",
        f"benchmark.megaface.probe_root={images}",
        f"benchmark.megaface.distractors={root / 'distractors.txt'}",
        f"benchmark.megaface.distractor_root={images}",
        f"benchmark.megaface.landmarks={tree['table']}",
        f"benchmark.megaface.distractor_landmarks={tree['table']}",
        f"benchmark.multipie.poses={root / 'poses.txt'}",
        f"benchmark.multipie.root={images}",
        f"benchmark.multipie.landmarks={tree['table']}",
        f"benchmark.bin.path={root / 'cfp.bin'}",
        "benchmark.bin.n_folds=2",
        f"benchmark.bin.landmarks={root / 'bin.csv'}",
    ]


def test_every_benchmark_kind_takes_a_landmark_table(tree, tmp_path):
    ckpt = tree["checkpoints"]["affine2d"]
    base = [f"ckpt_path={ckpt}", "device=cpu", "num_workers=0"]
    others = _other_benchmarks(tree, tmp_path / "data")
    results = run(compose_eval([*base, *others], tmp_path / "o"))
    b = results["benchmarks"]
    assert b["ytf"]["num_pairs"] == 4 and b["ytf"]["num_frames"] == 5 * 2  # 5 videos in pairs
    assert b["megaface"]["num_probes"] == 9 and b["megaface"]["num_distractors"] == 4
    assert b["multipie"]["num_gallery"] == 4 and b["multipie"]["count_yaw30"] == 4
    assert b["bin/cfp"]["num_pairs"] == 4
    assert set(results["landmarks"]) == {
        "ytf.landmarks",
        "megaface.landmarks",
        "megaface.distractor_landmarks",
        "multipie.landmarks",
        "bin/cfp.landmarks",  # one table per .bin file
    }
    # a model that needs landmarks, given a benchmark that has none for its images
    without = [o for o in others if not o.startswith("benchmark.megaface.distractor_landmarks")]
    with pytest.raises(ValueError, match=r"benchmark\.megaface\.distractor_landmarks=TABLE"):
        run(compose_eval([*base, *without], tmp_path / "p"))
    short = [*base, *others, f"benchmark.bin.landmarks={tree['table']}"]
    with pytest.raises(ValueError, match=r"benchmark\.bin\.landmarks: table .* no row .*cfp/0"):
        run(compose_eval(short, tmp_path / "q"))


def _only(overrides: list[str], name: str) -> list[str]:
    return [f"benchmark={name}", *(o for o in overrides if o.startswith(f"benchmark.{name}."))]


def test_list_entries_that_leave_their_root_are_refused_naming_the_key(tree, tmp_path):
    base = [f"ckpt_path={tree['checkpoints']['affine2d']}", "device=cpu", "num_workers=0"]
    others = _other_benchmarks(tree, tmp_path / "data")
    inside, outside = tmp_path / "root", tmp_path / "outside.jpg"
    inside.mkdir()
    shutil.copy(next(tree["images"].rglob("*.jpg")), outside)
    (inside / "out.jpg").symlink_to(outside)
    for entry in (str(outside), "../outside.jpg", "out.jpg"):
        write_probe_list(tmp_path / "bad.txt", [entry, entry], ["x", "x"])
        overrides = [
            *base,
            *_only(others, "megaface"),
            f"benchmark.megaface.probes={tmp_path / 'bad.txt'}",
            f"benchmark.megaface.probe_root={inside}",
        ]
        with pytest.raises(UnsafePathError, match=r"benchmark\.megaface\.probes .*bad\.txt"):
            run(compose_eval(overrides, tmp_path / "o"))
    write_pose_list(tmp_path / "poses.txt", ["../outside.jpg"], ["x"], [0.0])
    overrides = [
        *base,
        *_only(others, "multipie"),
        f"benchmark.multipie.poses={tmp_path / 'poses.txt'}",
        f"benchmark.multipie.root={inside}",
    ]
    with pytest.raises(UnsafePathError, match=r"benchmark\.multipie\.poses .*'\.\./outside"):
        run(compose_eval(overrides, tmp_path / "p"))


def test_lfw_names_that_leave_the_root_are_refused(tree, tmp_path):
    root = tmp_path / "lfw"
    (root / "images" / "Ann_A").mkdir(parents=True)
    (root / "Bob_B").mkdir()
    face = tree["images"] / "Ann_A" / "Ann_A_0001.jpg"
    for n in (1, 2):
        shutil.copy(face, root / "images" / "Ann_A" / f"Ann_A_{n:04d}.jpg")
    # name '../Bob_B' makes the image path images/../Bob_B/../Bob_B_0001.jpg, beside the root
    shutil.copy(face, root / "Bob_B_0001.jpg")
    (root / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\t../Bob_B\t1\n")
    overrides = [
        f"ckpt_path={tree['checkpoints']['affine2d']}",
        "benchmark=lfw",
        f"benchmark.lfw.pairs={root / 'pairs.txt'}",
        f"benchmark.lfw.root={root / 'images'}",
        f"benchmark.lfw.landmarks={tree['table']}",
    ]
    with pytest.raises(
        UnsafePathError, match=r"benchmark\.lfw\.pairs .*'\.\./Bob_B_0001\.jpg' climbs out"
    ):
        run(compose_eval(overrides, tmp_path / "o"))


def test_landmarks_annotated_on_the_fly_are_cached_and_reused(tree, tmp_path):
    """``benchmark.lfw.landmarks=annotate`` on full-size (256²) HELEN photographs: dlib
    annotates exactly the pair images, the photograph without a detectable face gets the
    fallback box (counted), the points match the hand labels, and a second run reuses them."""
    pytest.importorskip("dlib", reason="the annotate extra (dlib-bin) is not installed")
    from tests.annotate.test_annotate import DETECTED_BOUND, FALLBACK_BOUND, NO_FACE, nme

    images, hand_table, pairs_path = write_lfw_tree(tmp_path / "full", size=256)
    hand = read_landmark_table(hand_table)
    no_face_labels = read_pts(ASSET_HELEN / NO_FACE.replace(".jpg", ".pts")) - 0.5
    pairs = read_lfw_pairs(pairs_path, images)
    keys = [p.relative_to(images).as_posix() for p in pairs.paths]
    no_face = {k for k in keys if np.allclose(hand[k], no_face_labels)}
    assert no_face  # the tree's pairs include copies of that photograph

    def overrides(*extra):
        return [
            f"ckpt_path={tree['checkpoints']['fullalign']}",
            "benchmark=lfw",
            f"benchmark.lfw.pairs={pairs_path}",
            f"benchmark.lfw.root={images}",
            "benchmark.lfw.landmarks=annotate",
            "device=cpu",
            "num_workers=0",
            "annotate.progress=false",
            f"annotate.cache_dir={tmp_path / 'cache'}",
            *extra,
        ]

    first = run(compose_eval(overrides(), tmp_path / "o"))
    report = first["landmarks"]["lfw.landmarks"]
    assert report["source"] == "annotate" and report["images"] == pairs.num_images
    assert (report["annotated"], report["reused"], report["failed"]) == (len(keys), 0, 0)
    assert report["fallback"] == len(no_face)
    assert first["benchmarks"]["lfw"]["num_pairs"] == len(pairs) == 40
    annotated = read_landmark_table(report["table"])
    assert sorted(annotated) == sorted(keys)  # the pair images, not the whole tree
    for key in keys:
        bound = FALLBACK_BOUND if key in no_face else DETECTED_BOUND
        assert nme(annotated[key], hand[key]) < bound, key

    again = run(compose_eval(overrides(), tmp_path / "p"))
    report = again["landmarks"]["lfw.landmarks"]
    assert (report["annotated"], report["reused"], report["table"]) == (
        0,
        len(keys),
        first["landmarks"]["lfw.landmarks"]["table"],
    )
    assert again["benchmarks"]["lfw"] == first["benchmarks"]["lfw"]

    # annotate.fallback=null: the photograph without a face stops the run, named (3 images)
    key = sorted(no_face)[0]
    name, number = key.split("/")[0], key.removesuffix(".jpg").rsplit("_", 1)[1]
    other = next(k for k in keys if not k.startswith(name + "/")).split("/")[0]
    pairs_path.with_name("few.txt").write_text(
        f"1\n{name}\t{int(number)}\t{int(number) % 4 + 1}\n{name}\t{int(number)}\t{other}\t1\n"
    )
    few = [o.replace(str(pairs_path), str(pairs_path.with_name("few.txt"))) for o in overrides()]
    strict = compose_eval([*few, "annotate.fallback=null"], tmp_path / "q")
    with pytest.raises(ValueError, match=rf"no landmarks for 1 of 3 images: {key}"
                       r" \(no face detected\)"):  # fmt: skip
        run(strict)


def test_bin_images_are_annotated_in_memory(tree, tmp_path):
    """``.bin`` images are no files: ``landmarks=annotate`` reads them from the file's decoded
    images (keys ``<stem>/<index>``) and matches the hand labels as on files."""
    pytest.importorskip("dlib", reason="the annotate extra (dlib-bin) is not installed")
    from tests.annotate.test_annotate import DETECTED_BOUND, FALLBACK_BOUND, NO_FACE, nme

    faces = sorted(ASSET_HELEN.glob("*.jpg"))
    write_bin(tmp_path / "helen.bin", [cv2.imread(str(f))[..., ::-1] for f in faces],
              [True, False, True, False], ext=".png")  # fmt: skip
    overrides = [
        f"ckpt_path={tree['checkpoints']['affine2d']}",
        "benchmark=bin",
        f"benchmark.bin.path={tmp_path / 'helen.bin'}",
        "benchmark.bin.n_folds=2",
        "benchmark.bin.landmarks=annotate",
        "device=cpu",
        "num_workers=0",
        "annotate.progress=false",
        f"annotate.cache_dir={tmp_path / 'cache'}",
    ]
    results = run(compose_eval(overrides, tmp_path / "o"))
    report = results["landmarks"]["bin/helen.landmarks"]
    assert (report["annotated"], report["fallback"]) == (8, 1)
    assert results["benchmarks"]["bin/helen"]["num_pairs"] == 4
    table = read_landmark_table(report["table"])
    assert sorted(table) == sorted(f"helen/{i}" for i in range(8))
    for i, face in enumerate(faces):
        hand = read_pts(face.with_suffix(".pts")) - 0.5
        bound = FALLBACK_BOUND if face.name == NO_FACE else DETECTED_BOUND
        assert nme(table[f"helen/{i}"], hand) < bound, face.name
