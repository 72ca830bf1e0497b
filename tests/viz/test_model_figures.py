"""figures_for_module, saving and logging figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from balanced_align.viz import figure_to_array, figures_for_module, log_figures, save_figures
from tests.viz.helpers import batch, tiny_module


@pytest.mark.parametrize(
    ("method", "keys"),
    [
        ("tps", {"aligned_faces", "warp_grid", "alpha", "template"}),
        ("projective", {"aligned_faces", "warp_grid", "alpha", "template"}),
        ("none", {"aligned_faces"}),
    ],
)
def test_figures_for_module_keys(method, keys):
    figures = figures_for_module(tiny_module(method), batch(2))
    assert set(figures) == keys
    faces = figures["aligned_faces"]
    assert [ax.get_title() for ax in faces.axes[:2]] == ["yaw +0°", "yaw +30°"]


def test_batch_without_landmarks_and_bad_batch():
    data = batch(2)
    data["has_landmarks"][1] = False
    figures = figures_for_module(tiny_module("tps"), data)
    assert not any(c.get_gid() == "landmarks" for c in figures["aligned_faces"].axes[0].collections)
    with pytest.raises(ValueError, match="batch"):
        figures_for_module(tiny_module("tps"), {"images": data["image"]})


def test_save_figures_writes_pngs(tmp_path):
    figures = figures_for_module(tiny_module("affine"), batch(2))
    paths = save_figures(figures, tmp_path / "figs")
    assert set(paths) == set(figures)
    for name, path in paths.items():
        with Image.open(path) as image:
            assert image.format == "PNG"
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.shape[0] > 150 and pixels.shape[1] > 150
        assert pixels.std() > 10, name  # not a blank canvas


class _Experiment:
    def __init__(self):
        self.figures = []

    def add_figure(self, tag, figure, global_step=None, close=True):
        self.figures.append((tag, global_step, close))


class TensorBoardLogger:  # named like Lightning's: log_figures dispatches on the class name
    def __init__(self):
        self.experiment = _Experiment()


class WandbLogger:
    def __init__(self):
        self.images = []

    def log_image(self, key, images, step=None):
        self.images.append((key, images[0].shape, step))


class CSVLogger:
    pass


def test_log_figures_dispatch():
    figures = figures_for_module(tiny_module("none"), batch(1))
    tensorboard, wandb, csv = TensorBoardLogger(), WandbLogger(), CSVLogger()
    used = log_figures(figures, [tensorboard, wandb, csv], step=7)
    assert used == ["TensorBoardLogger", "WandbLogger"]
    assert tensorboard.experiment.figures == [("figures/aligned_faces", 7, False)]
    array = figure_to_array(figures["aligned_faces"])
    assert wandb.images == [("figures/aligned_faces", array.shape, 7)]
    assert array.dtype == np.uint8 and array.shape[-1] == 4


def test_landmark_baselines_are_drawn_with_their_warp():
    """Affine2D / FullAlign warp from landmarks: the figures show their alignment too."""
    import torch as _torch

    from balanced_align import BalancedAlignModule
    from balanced_align.viz import figures_for_module

    generator = _torch.Generator().manual_seed(0)
    template = _torch.rand(84, 2, generator=generator) * 1.2 - 0.6
    for method in ("affine2d", "fullalign"):
        module = BalancedAlignModule(
            num_classes=3,
            model={"width": 0.125, "input_size": 48, "embedding_dim": 16},
            align={"method": method, "location": "input"},
            loss={"lambda": 0.0},
            template_init=template,
        )
        batch = {
            "image": _torch.rand(2, 3, 48, 48, generator=generator) * 2 - 1,
            "landmarks": template + 0.02 * _torch.randn(2, 84, 2, generator=generator),
        }
        figures = figures_for_module(module, batch)
        assert {"aligned_faces", "warp_grid"} <= set(figures)
        assert len(figures["aligned_faces"].axes) == 4  # input row and aligned row
        name = {"affine2d": "Affine2D@input", "fullalign": "FullAlign@input"}[method]
        assert name in figures["warp_grid"].texts[0].get_text()  # the suptitle names it
