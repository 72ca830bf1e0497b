"""``eval.py`` with a landmark table: Affine2D / FullAlign checkpoints on LFW-style pairs."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from balanced_align.data.formats import read_lfw_pairs, write_lfw_pairs
from balanced_align.data.sources import write_landmark_table
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluating import load_checkpoint, make_embed, run
from balanced_align.evaluation import benchmarks as bm
from balanced_align.geometry.coords import pixel_to_normalized
from balanced_align.module import BalancedAlignModule
from tests.training.test_eval_entry import compose_eval

SIZE = 32
SMALL = {"width": 0.125, "input_size": SIZE, "embedding_dim": 16}


@pytest.fixture(scope="module")
def lfw(tmp_path_factory) -> dict:
    """6 people × 4 SynthFaces images in an LFW tree, their pairs and landmark table."""
    root = tmp_path_factory.mktemp("lfw")
    faces = SynthFaces(6, 4, image_size=SIZE, seed=3, yaw_range=(-30.0, 30.0))
    names = [f"Person_{c}" for c in range(6)]
    table, records = {}, {}
    for c in range(6):
        for k in range(4):
            face = faces[4 * c + k]
            key = f"{names[c]}/{names[c]}_{k + 1:04d}.png"
            (root / "images" / names[c]).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / key), cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR))
            table[key] = face.landmarks
            records[key] = face
    sets = [
        ([(names[s], 1, 2), (names[s + 1], 3, 4)], [(names[s], 1, names[s + 2], 1)] * 2)
        for s in range(2)
    ]
    write_lfw_pairs(root / "pairs.txt", sets)
    write_landmark_table(root / "landmarks.csv", table)
    template = np.mean(
        [
            pixel_to_normalized(torch.as_tensor(f.landmarks), (SIZE, SIZE)).numpy()
            for f in records.values()
        ],
        axis=0,
    )
    return {"root": root, "records": records, "template": template}


def checkpoint(path: Path, method: str, template) -> Path:
    model = BalancedAlignModule(
        num_classes=3,
        model=SMALL,
        align={"method": method},
        loss={"lambda": 0.0},
        template_init=torch.as_tensor(template).tolist(),
    )
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def overrides(lfw, ckpt, *extra) -> list[str]:
    root = lfw["root"]
    return [
        f"ckpt_path={ckpt}",
        "benchmark=lfw",
        f"benchmark.lfw.pairs={root / 'pairs.txt'}",
        f"benchmark.lfw.root={root / 'images'}",
        "benchmark.lfw.ext=png",
        "device=cpu",
        "num_workers=0",
        *extra,
    ]


@pytest.mark.parametrize("method", ["affine2d", "fullalign"])
def test_landmark_checkpoints_evaluate_with_a_table(lfw, tmp_path, method):
    ckpt = checkpoint(tmp_path / f"{method}.ckpt", method, lfw["template"])
    table = lfw["root"] / "landmarks.csv"
    cfg = compose_eval(overrides(lfw, ckpt, f"benchmark.lfw.landmarks={table}"), tmp_path / "o")
    metrics = run(cfg)["benchmarks"]["lfw"]
    assert metrics["num_pairs"] == 8 and metrics["num_images"] > 0
    assert 0.0 <= metrics["verif_acc"] <= 1.0
    cfg = compose_eval(overrides(lfw, ckpt), tmp_path / "p")
    with pytest.raises(ValueError, match=r"benchmark\.lfw\.landmarks=TABLE\.csv"):
        run(cfg)


def test_eval_embeddings_equal_the_validation_step(lfw, tmp_path):
    """The benchmark path (table -> resize -> normalised landmarks -> flip TTA with mirrored,
    permuted landmarks) gives the embeddings of the module's own validation step."""
    ckpt = checkpoint(tmp_path / "a.ckpt", "affine2d", lfw["template"])
    model = load_checkpoint(ckpt, map_location="cpu")
    model.eval()
    root = lfw["root"]
    pairs = read_lfw_pairs(root / "pairs.txt", root / "images", ext="png")
    keys = [Path(p).relative_to(pairs.root).as_posix() for p in pairs.paths]
    points = np.stack([lfw["records"][k].landmarks for k in keys])
    options = bm.EmbedOptions(SIZE, batch_size=4, flip_permutation=model.schema.flip_permutation)
    load = bm._path_loader(pairs.paths, landmarks=points)
    ours = bm.embed_all(make_embed(model, torch.device("cpu"), None), len(keys), load, options)

    captured = {}

    class Collector:
        def update(self, indices, embedding, **extras):
            captured["embedding"] = embedding

    images = torch.stack(
        [
            torch.from_numpy(lfw["records"][k].image).permute(2, 0, 1).float() / 127.5 - 1
            for k in keys
        ]
    )
    batch = {
        "image": images,
        "landmarks": pixel_to_normalized(torch.as_tensor(points), (SIZE, SIZE)),
        "has_landmarks": torch.ones(len(keys), dtype=torch.bool),
        "label": torch.zeros(len(keys), dtype=torch.long),
        "yaw": torch.zeros(len(keys)),
        "index": torch.arange(len(keys)),
    }
    with torch.no_grad():
        model._evaluation_step(batch, Collector())
    np.testing.assert_allclose(ours, captured["embedding"].numpy(), atol=1e-4)


def test_table_errors_name_the_key(lfw, tmp_path):
    ckpt = checkpoint(tmp_path / "a.ckpt", "affine2d", lfw["template"])
    records = lfw["records"]
    partial = {k: r.landmarks for k, r in list(records.items())[1:]}
    write_landmark_table(tmp_path / "partial.csv", partial)
    cfg = compose_eval(
        overrides(lfw, ckpt, f"benchmark.lfw.landmarks={tmp_path / 'partial.csv'}"), tmp_path / "o"
    )
    with pytest.raises(ValueError, match=r"benchmark\.lfw\.landmarks: table .* no row"):
        run(cfg)
    five = {k: r.landmarks[:5] for k, r in records.items()}
    write_landmark_table(tmp_path / "five.csv", five)
    cfg = compose_eval(
        overrides(lfw, ckpt, f"benchmark.lfw.landmarks={tmp_path / 'five.csv'}"), tmp_path / "p"
    )
    with pytest.raises(ValueError, match=r"5 points per image.*trained with 84"):
        run(cfg)
