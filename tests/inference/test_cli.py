"""The embed, compare and export commands on tiny checkpoints and SynthFaces photographs."""

import csv
import io
from contextlib import redirect_stdout

import cv2
import numpy as np
import pytest

from balanced_align import FaceEmbedder, compare, embed, export
from balanced_align.data.formats import write_lfw_pairs
from balanced_align.data.sources import read_landmark_table, write_landmark_table
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.export import read_metadata
from balanced_align.safe_paths import UnsafePathError
from tests.inference.tiny_models import save_checkpoint, tiny_module


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/<person>/<k>.png for 3 people × 2 images, and their landmark table."""
    root = tmp_path_factory.mktemp("faces") / "root"
    data = SynthFaces(3, 2, image_size=40, seed=5)
    table = {}
    for i in range(6):
        key = f"p{i // 2}/{i % 2}.png"
        _write(root / key, data[i].image)
        table[key] = data[i].landmarks
    table_path = root.parent / "landmarks.csv"
    write_landmark_table(table_path, table)
    return root, table_path


def test_embed_writes_row_aligned_rows(tmp_path, tree):
    root, _ = tree
    ckpt = save_checkpoint(tiny_module("stn_tps2", "fmap"), tmp_path / "m.ckpt")
    out = tmp_path / "out" / "emb.npy"
    embed.main([str(root), "--ckpt", str(ckpt), "--out", str(out), "--batch-size", "4"])
    rows = np.load(out)
    paths = (out.parent / "paths.txt").read_text().splitlines()
    assert paths == sorted(f"p{i}/{k}.png" for i in range(3) for k in range(2))
    expected = FaceEmbedder.from_checkpoint(ckpt)([str(root / p) for p in paths])
    np.testing.assert_allclose(rows, expected.numpy(), atol=1e-6)


def test_embed_landmark_method_uses_the_table(tmp_path, tree):
    root, table = tree
    ckpt = save_checkpoint(tiny_module("fullalign", "input"), tmp_path / "m.ckpt")
    out = tmp_path / "emb.npy"
    args = [str(root), "--ckpt", str(ckpt), "--out", str(out), "--quiet"]
    with pytest.raises(ValueError, match="--landmarks"):
        embed.main(args)
    embed.main([*args, "--landmarks", str(table)])
    paths = (tmp_path / "paths.txt").read_text().splitlines()
    points = read_landmark_table(table)
    embedder = FaceEmbedder.from_checkpoint(ckpt)
    expected = embedder([str(root / p) for p in paths], [points[p] for p in paths])
    np.testing.assert_allclose(np.load(out), expected.numpy(), atol=1e-6)


def test_embed_refuses_unsafe_keys_and_outputs(tmp_path, tree):
    root, _ = tree
    ckpt = save_checkpoint(tiny_module("fullalign", "input"), tmp_path / "m.ckpt")
    bad = tmp_path / "bad.csv"
    write_landmark_table(bad, {"../outside.png": np.zeros((84, 2), np.float32)})
    with pytest.raises(UnsafePathError, match=r"outside\.png"):
        embed.main(
            [
                str(root),
                "--ckpt",
                str(ckpt),
                "--out",
                str(tmp_path / "e.npy"),
                "--landmarks",
                str(bad),
            ]
        )
    with pytest.raises(UnsafePathError, match="inside the input tree"):
        embed.main([str(root), "--ckpt", str(ckpt), "--out", str(root / "e.npy")])
    with pytest.raises(UnsafePathError, match="input file"):
        embed.main(
            [str(root), "--ckpt", str(ckpt), "--out", str(tmp_path / "e.npy"), "--paths", str(ckpt)]
        )


def test_export_calibrates_and_compare_decides(tmp_path, tree):
    root, _ = tree
    model = tiny_module("stn_affine", "input")
    ckpt = save_checkpoint(model, tmp_path / "m.ckpt")
    # an LFW tree of the same faces: person_k/person_k_000n.jpg, two sets
    lfw = tmp_path / "lfw"
    for i in range(3):
        for k in range(2):
            image = cv2.cvtColor(cv2.imread(str(root / f"p{i}/{k}.png")), cv2.COLOR_BGR2RGB)
            _write(lfw / f"P{i}" / f"P{i}_{k + 1:04d}.jpg", image)
    sets = [([("P0", 1, 2)], [("P0", 1, "P1", 1)]), ([("P1", 1, 2)], [("P1", 2, "P2", 1)])]
    write_lfw_pairs(tmp_path / "pairs.txt", sets)
    out = tmp_path / "m.onnx"
    export.main(
        [
            "--ckpt",
            str(ckpt),
            "--out",
            str(out),
            "--calibrate-lfw",
            str(tmp_path / "pairs.txt"),
            str(lfw),
        ]
    )
    info = read_metadata(out)
    # the threshold is a cosine the protocol picked: between -1 and 1
    assert info.threshold is not None and -1.0 <= info.threshold <= 1.0
    a, b = root / "p0/0.png", root / "p1/0.png"
    similarity = float(
        (
            FaceEmbedder.from_checkpoint(ckpt)(str(a)) * FaceEmbedder.from_checkpoint(ckpt)(str(b))
        ).sum()
    )
    printed = io.StringIO()
    with redirect_stdout(printed):
        compare.main([str(a), str(b), "--onnx", str(out)])
    verdict = "same" if similarity >= info.threshold else "different"
    assert f"cosine {similarity:.4f}: {verdict}" in printed.getvalue()
    with redirect_stdout(printed := io.StringIO()):
        compare.main([str(a), str(b), "--ckpt", str(ckpt), "--threshold", "-1"])
    assert "same (threshold -1.0000)" in printed.getvalue()
    # two folders: every pair, as CSV
    scores = tmp_path / "scores.csv"
    compare.main(
        [
            str(root / "p0"),
            str(root / "p1"),
            "--ckpt",
            str(ckpt),
            "--threshold",
            "2",
            "--out",
            str(scores),
        ]
    )
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 4 and {r["decision"] for r in rows} == {"different"}
    with pytest.raises(UnsafePathError, match="input file"):
        export.main(["--ckpt", str(ckpt), "--out", str(ckpt)])
