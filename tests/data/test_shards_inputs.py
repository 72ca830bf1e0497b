"""The shards converter never writes into its input tree nor reads outside it, and a shard
member that claims too many pixels is refused by name before it is decoded."""

import io
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from balanced_align.data.record import FaceRecord
from balanced_align.data.shards import ShardError, ShardStream, main, write_shards
from balanced_align.data.sources import write_landmark_table
from tests.data.forged_images import png_claiming


def _tree(root: Path) -> dict[str, np.ndarray]:
    rng, table = np.random.default_rng(0), {}
    for person in ("ann", "bob"):
        (root / person).mkdir(parents=True)
        for k in range(2):
            rel = f"{person}/{k}.png"
            cv2.imwrite(str(root / rel), rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
            table[rel] = rng.uniform(1, 9, (5, 2))
    return table


def _files(folder: Path) -> dict[str, bytes]:
    paths = [Path(d) / n for d, _, names in os.walk(folder) for n in names]
    return {str(path): path.read_bytes() for path in paths}


def test_out_inside_the_input_tree_is_refused_before_anything_is_written(tmp_path, capsys):
    tree = tmp_path / "tree"
    write_landmark_table(tmp_path / "lmk.csv", _tree(tree))
    before = _files(tmp_path)
    argv = ["--from-folder", str(tree), "--landmarks", str(tmp_path / "lmk.csv")]
    assert main([*argv, "--out", str(tree / "shards")]) == 2
    assert "inside the input tree" in capsys.readouterr().err
    assert _files(tmp_path) == before and not (tree / "shards").exists()


@pytest.mark.parametrize("key", ["../secret.png", "/etc/hostname"])
def test_table_key_leaving_the_tree_stops_the_conversion_naming_it(tmp_path, capsys, key):
    tree = tmp_path / "tree"
    table = _tree(tree)
    cv2.imwrite(str(tmp_path / "secret.png"), np.zeros((12, 10, 3), np.uint8))
    table[key] = np.full((5, 2), 4.0)
    write_landmark_table(tmp_path / "lmk.csv", table)
    argv = ["--from-folder", str(tree), "--landmarks", str(tmp_path / "lmk.csv")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "out" / "index.json").exists()
    # under skip the key is reported and the rest is converted, the outside file is not
    assert main([*argv, "--out", str(tmp_path / "out"), "--on-bad-sample", "skip"]) == 0
    sources = [r.source for r in ShardStream(tmp_path / "out", shuffle_shards=False)]
    assert len(sources) == 4 and all(str(tree) in s for s in sources)


def test_a_shard_member_claiming_20000_squared_pixels_is_named_not_decoded(tmp_path):
    record = FaceRecord(image=np.zeros((6, 5, 3), np.uint8), landmarks=None, label=0, source="x")
    out = tmp_path / "shards"
    write_shards([record], out, image_format="png")
    shard = out / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    bomb = png_claiming(20000, 20000)
    members = {n: (bomb if n.endswith(".png") else d) for n, d in members.items()}
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ShardError, match=r"shard-000000\.tar.*pixels"):
        list(ShardStream(out, shuffle_shards=False))
