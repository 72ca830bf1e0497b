"""``eval.py benchmark=ijbc`` on a tiny set in the published layout (untrained checkpoint)."""

import numpy as np
import pytest
import torch

from balanced_align.data.formats import read_ijb
from balanced_align.evaluating import load_checkpoint, make_embed, run
from balanced_align.evaluation import benchmarks as bm
from balanced_align.evaluation.ijb import ijb_benchmark
from balanced_align.input_errors import InputError
from balanced_align.module import BalancedAlignModule
from tests.evaluation.test_ijb import align_to, write_ijb_fixture
from tests.training.test_eval_entry import SMALL, compose_eval


def _checkpoint(tmp_path, method: str = "none", **landmarks):
    torch.manual_seed(0)
    model = BalancedAlignModule(
        num_classes=3, model=SMALL, align={"method": method}, loss={"lambda": 0.0}, **landmarks
    )
    path = tmp_path / f"{method}{landmarks.get('num_landmarks', '')}.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def test_eval_ijbc_writes_tars_and_roc(tmp_path):
    root = tmp_path / "IJBC"
    write_ijb_fixture(root, image_size=40)
    ckpt = _checkpoint(tmp_path)
    overrides = [f"ckpt_path={ckpt}", "benchmark=ijbc", f"benchmark.ijbc.root={root}"]
    results = run(compose_eval([*overrides, "batch_size=4", "num_workers=0"], tmp_path / "out"))
    got = results["benchmarks"]["ijbc"]
    assert (tmp_path / "out" / "ijbc_roc.csv").is_file()
    assert "| ijbc | tar@far=1e-4 |" in (tmp_path / "out" / "results.md").read_text()

    model = load_checkpoint(ckpt)
    options = bm.EmbedOptions(image_size=32, batch_size=7)
    embed = make_embed(model, torch.device("cpu"), None)
    expected = ijb_benchmark(embed, read_ijb(root, "ijbc"), options, align_to(32))
    for key in ("tar@far=1e-6", "tar@far=1e-1", "roc_auc", "num_templates", "num_media"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    assert 0.0 <= got["tar@far=1e-2"] <= got["tar@far=1e-1"] <= 1.0 and np.isfinite(got["roc_auc"])


def test_eval_ijbc_errors_name_the_key(tmp_path):
    ckpt = _checkpoint(tmp_path)
    cfg = compose_eval([f"ckpt_path={ckpt}", "benchmark=ijbb"], tmp_path / "a")
    with pytest.raises(ValueError, match=r"benchmark\.ijbb\.root is required"):
        run(cfg)
    cfg = compose_eval(
        [f"ckpt_path={ckpt}", "benchmark=ijbb", f"benchmark.ijbb.root={tmp_path}"], tmp_path / "b"
    )
    with pytest.raises(FileNotFoundError, match=r"loose_crop"):
        run(cfg)
    root = tmp_path / "IJBC"
    write_ijb_fixture(root, image_size=40)
    pair_file = root / "meta" / "ijbc_template_pair_label.txt"
    lines = pair_file.read_text().splitlines()
    cfg = compose_eval(
        [f"ckpt_path={ckpt}", "benchmark=ijbc", f"benchmark.ijbc.root={root}"], tmp_path / "c"
    )
    pair_file.write_text("\n".join([*lines[:2], "10 x 1", *lines[3:]]) + "\n")
    with pytest.raises(InputError, match=r"ijbc_template_pair_label\.txt' line 3: not a number"):
        run(cfg)  # before any face is embedded
    pair_file.write_text("\n".join(line for line in lines if line.endswith(" 1")) + "\n")
    with pytest.raises(InputError, match=r"ijbc_template_pair_label\.txt': every pair has label 1"):
        run(cfg)


def test_landmark_aligned_checkpoints_get_the_five_points(tmp_path):
    root = tmp_path / "IJBC"
    write_ijb_fixture(root, image_size=40)
    five = _checkpoint(tmp_path, "affine2d", num_landmarks=5, schema="five")
    overrides = ["benchmark=ijbc", f"benchmark.ijbc.root={root}", "num_workers=0"]
    results = run(compose_eval([f"ckpt_path={five}", *overrides], tmp_path / "five"))
    assert np.isfinite(results["benchmarks"]["ijbc"]["roc_auc"])
    lmk84 = _checkpoint(tmp_path, "affine2d")
    with pytest.raises(ValueError, match=r"benchmark\.ijbc: IJB provides five points.*84"):
        run(compose_eval([f"ckpt_path={lmk84}", *overrides], tmp_path / "84"))
