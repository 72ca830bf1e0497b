"""``eval.py`` end to end on a tiny trained checkpoint, and the safe checkpoint loading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from balanced_align import run_result
from balanced_align.data.formats import (
    write_bin,
    write_distractor_list,
    write_lfw_pairs,
    write_pose_list,
    write_probe_list,
    write_video_pairs,
)
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluating import UnsafeCheckpointError, load_checkpoint, make_embed, run
from balanced_align.module import BalancedAlignModule
from balanced_align.training import run as train
from tests.test_run_result import _Killed, _OsThatDiesInFsync
from tests.training_helpers import CONF_DIR, TINY, compose_train

REPO = Path(__file__).resolve().parents[2]
SMALL = {"width": 0.125, "input_size": 32, "embedding_dim": 16}

#: records instances rebuilt by unpickling (there must be none)
UNPICKLED: list = []


class Payload:
    """A custom object: not on torch's weights_only allowlist."""

    def __init__(self) -> None:
        self.note = "rebuilt"

    def __setstate__(self, state):
        UNPICKLED.append(state)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    cfg = compose_train([*TINY, "test=false", "+trainer.limit_train_batches=2"], output_dir=out)
    train(cfg)
    return out / "checkpoints" / "last.ckpt"


def _save(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return str(path)


def write_benchmarks(root: Path) -> list[str]:
    """One tiny set of files per benchmark kind (SynthFaces images); returns the overrides."""
    faces = SynthFaces(6, 4, image_size=40, seed=11, yaw_range=(-60.0, 60.0))
    image = {(c, k): faces[4 * c + k].image for c in range(6) for k in range(4)}
    names = [f"Person_{c}" for c in range(6)]
    for (c, k), img in image.items():
        _save(root / "lfw" / names[c] / f"{names[c]}_{k + 1:04d}.jpg", img)
        _save(root / "ytf" / names[c] / str(k // 2) / f"{k % 2}.jpg", img)
    sets = [
        ([(names[s], 1, 2), (names[s + 1], 3, 4)], [(names[s], 1, names[s + 2], 1)] * 2)
        for s in range(2)
    ]
    write_lfw_pairs(root / "pairs.txt", sets)
    write_bin(
        root / "agedb.bin",
        [image[c, k] for c in range(4) for k in (0, 1, 2, 3)] * 2,
        [True, False] * 8,
    )
    write_video_pairs(
        root / "splits.txt",
        [(s + 1, f"{names[s]}/0", f"{names[s]}/1", True) for s in range(3)]
        + [(s + 1, f"{names[s]}/0", f"{names[s + 1]}/1", False) for s in range(3)],
    )
    write_probe_list(
        root / "probes.txt",
        [f"lfw/{names[c]}/{names[c]}_000{k + 1}.jpg" for c in range(3) for k in range(3)],
        [names[c] for c in range(3) for _ in range(3)],
    )
    write_distractor_list(
        root / "distractors.txt",
        [f"{names[c]}/{names[c]}_000{k + 1}.jpg" for c in (3, 4, 5) for k in range(4)],
    )
    poses = [
        (f"{names[c]}/{names[c]}_000{k + 1}.jpg", names[c], faces[4 * c + k].yaw)
        for c in range(6)
        for k in range(4)
    ]
    write_pose_list(root / "poses.txt", *zip(*poses))
    return [
        "benchmark=[lfw,bin,ytf,megaface,multipie]",
        f"benchmark.lfw.pairs={root / 'pairs.txt'}",
        f"benchmark.lfw.root={root / 'lfw'}",
        f"benchmark.bin.path={root / 'agedb.bin'}",
        "benchmark.bin.n_folds=4",
        f"benchmark.ytf.splits={root / 'splits.txt'}",
        f"benchmark.ytf.root={root / 'ytf'}",
        f"benchmark.megaface.probes={root / 'probes.txt'}",
        f"benchmark.megaface.probe_root={root}",
        f"benchmark.megaface.distractors={root / 'distractors.txt'}",
        f"benchmark.megaface.distractor_root={root / 'lfw'}",
        "benchmark.megaface.chunk_size=5",
        "benchmark.megaface.backend=faiss",
        f"benchmark.multipie.poses={root / 'poses.txt'}",
        f"benchmark.multipie.root={root / 'lfw'}",
        "benchmark.multipie.tolerance=15",
    ]


def test_eval_entry_point_writes_results(checkpoint, tmp_path):
    overrides = write_benchmarks(tmp_path / "data")
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "eval.py",
        f"ckpt_path={checkpoint}",
        *overrides,
        "batch_size=7",
        "num_workers=2",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # like the test process (conftest)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["checkpoint"] == str(checkpoint.resolve())
    assert results["model"]["method"] == "tps" and results["model"]["location"] == "fmap"
    assert results["model"]["lambda"] == 3.0 and results["model"]["tps_grid_size"] == 8
    benchmarks = results["benchmarks"]
    assert set(benchmarks) == {"lfw", "bin/agedb", "ytf", "megaface", "multipie"}
    verification = {"verif_acc", "verif_acc_std", "verif_auc", "tar@far=1e-2", "num_pairs"}
    for name in ("lfw", "bin/agedb", "ytf"):
        assert verification <= set(benchmarks[name]), name
        assert 0 <= benchmarks[name]["verif_acc"] <= 1
    assert benchmarks["lfw"]["num_folds"] == 2 and benchmarks["bin/agedb"]["num_folds"] == 4
    assert benchmarks["ytf"]["num_videos"] == 7 and benchmarks["ytf"]["num_folds"] == 3
    mega = benchmarks["megaface"]
    assert {"rank1", "cmc@5", "cmc@10"} <= set(mega) and mega["num_pairs"] == 3 * 3 * 2
    assert mega["num_distractors"] == 12
    assert np.load(run_dir / "megaface_distractors.npy").shape == (12, 32)
    assert {"rank1_yaw15", "count_yaw15", "rank1_mean"} <= set(benchmarks["multipie"])
    assert benchmarks["multipie"]["num_gallery"] == 6
    table = (run_dir / "results.md").read_text()
    assert "| lfw | verif_acc |" in table and "| megaface | rank1 |" in table
    assert "benchmark" in done.stdout and "verif_acc" in done.stdout  # the printed table


def compose_eval(overrides, output_dir: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def test_checkpoint_with_custom_object_is_refused(tmp_path):
    model = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "none"}, loss={"lambda": 0.0}
    )
    path = tmp_path / "evil.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "extra": Payload(),
        },
        path,
    )
    with pytest.raises(
        UnsafeCheckpointError, match=r"cannot be loaded safely.*Payload.*never falls back"
    ):
        load_checkpoint(path)
    cfg = compose_eval(
        [f"ckpt_path={path}", "benchmark=bin", "benchmark.bin.path=x.bin"], tmp_path / "out"
    )
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.ckpt"):
        run(cfg)
    assert UNPICKLED == []  # refused before anything was rebuilt


def test_loaded_checkpoint_reproduces_the_model(tmp_path):
    torch.manual_seed(0)
    model = BalancedAlignModule(
        num_classes=3,
        model=SMALL,
        align={"method": "tps", "tps_grid_size": 3, "locnet_input_size": 16},
    )
    with torch.no_grad():  # move the STN off identity so its weights matter
        for p in model.recognizer.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    loaded = load_checkpoint(path)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(images), model(images), atol=1e-5)
        fp32 = make_embed(loaded, torch.device("cpu"), None)(images)
        bf16 = make_embed(loaded, torch.device("cpu"), torch.bfloat16)(images)
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=1)
    assert fp32.dtype == bf16.dtype == torch.float32 and bool((cosine > 0.98).all())


def test_landmark_checkpoint_and_missing_paths_are_errors(tmp_path):
    model = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "affine2d"}, loss={"lambda": 0.0}
    )
    path = tmp_path / "affine2d.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    cfg = compose_eval(
        [f"ckpt_path={path}", "benchmark=lfw", "benchmark.lfw.pairs=p.txt", "benchmark.lfw.root=."],
        tmp_path / "a",
    )
    with pytest.raises(ValueError, match=r"align\.method=affine2d.*benchmark\.lfw\.landmarks"):
        run(cfg)
    plain = tmp_path / "plain.ckpt"
    model = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "none"}, loss={"lambda": 0.0}
    )
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, plain)
    cfg = compose_eval(
        [f"ckpt_path={plain}", "benchmark=lfw", "benchmark.lfw.pairs=p.txt"], tmp_path / "b"
    )
    with pytest.raises(ValueError, match=r"benchmark\.lfw\.root is required"):
        run(cfg)
    cfg = compose_eval(
        [f"ckpt_path={plain}", "benchmark=megaface", "precision=fp8"], tmp_path / "c"
    )
    with pytest.raises(ValueError, match="precision must be one of"):
        run(cfg)


def _plain_bin_eval(tmp_path: Path) -> list[str]:
    """An untrained plain-backbone checkpoint and a 4-pair .bin set: eval.py overrides."""
    model = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": "none"}, loss={"lambda": 0.0}
    )
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    write_bin(tmp_path / "cfp.bin", images, [True, False, True, False])
    overrides = [f"ckpt_path={path}", "benchmark=bin", f"benchmark.bin.path={tmp_path / 'cfp.bin'}"]
    return [*overrides, "benchmark.bin.n_folds=2", "num_workers=0"]


def test_metrics_go_to_the_configured_logger(tmp_path):
    overrides = [*_plain_bin_eval(tmp_path), "logger=csv", "precision=bf16"]
    results = run(compose_eval(overrides, tmp_path / "out"))
    (metrics_file,) = (tmp_path / "out" / "csv").rglob("metrics.csv")
    header, row = metrics_file.read_text().splitlines()[:2]
    logged = dict(zip(header.split(","), row.split(",")))
    acc = results["benchmarks"]["bin/cfp"]["verif_acc"]
    assert float(logged["bin/cfp/verif_acc"]) == pytest.approx(acc)
    assert results["precision"] == "bf16" and (tmp_path / "out" / "results.md").is_file()


def test_results_json_killed_before_the_rename_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """eval.py writes results.json (and results.md) through a temporary file and a rename:
    stopped once the new text is written but before the rename, the previous results stay
    whole and no temporary file is left."""
    cfg = compose_eval(_plain_bin_eval(tmp_path), tmp_path / "out")
    results_path = Path(run(cfg)["results_path"])
    before = results_path.read_bytes()
    json.loads(before)
    monkeypatch.setattr(run_result, "os", _OsThatDiesInFsync())
    with pytest.raises(_Killed):
        run(cfg)
    assert results_path.read_bytes() == before
    assert not [p.name for p in results_path.parent.iterdir() if p.name.endswith(".tmp")]
