"""The preprocessing baselines' alignment strength on SynthFaces (paper §3, Fig. 2–3)."""

import pytest
import torch

from balanced_align import BalancedAlignModule
from balanced_align.data import FaceDataModule
from balanced_align.data.source_kinds import SynthFacesSource
from balanced_align.evaluation import anme


@pytest.fixture(scope="module")
def evaluation_batch():
    source = SynthFacesSource(
        num_train_identities=20,
        train_images_per_identity=4,
        val_identities=12,
        eval_images_per_identity=6,
        val_distractor_identities=4,
        val_num_pairs=20,
    )
    datamodule = FaceDataModule(
        source, image_size=48, num_workers=0, batch_size=8, eval_batch_size=200
    )
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    return datamodule, batch


def _aligned_anme(datamodule, batch, method):
    module = BalancedAlignModule(
        num_classes=datamodule.num_classes,
        model={"width": 0.125, "input_size": 48, "embedding_dim": 16},
        align={"method": method, "location": "input"},
        loss={"lambda": 0.0},
        template_init=datamodule.mean_frontal_landmarks(),
    )
    landmarks = batch["landmarks"]
    params = None
    if method != "none":
        params = module.recognizer.predict_params(batch["image"], landmarks)
    aligned, converged, _ = module.aligned_landmarks(params, landmarks)
    assert bool(converged.all())
    return anme(aligned, "lmk84"), aligned, module


def test_fullalign_puts_every_face_on_the_template(evaluation_batch):
    datamodule, batch = evaluation_batch
    value, aligned, module = _aligned_anme(datamodule, batch, "fullalign")
    assert value < 1e-5
    template = module.template.expand_as(aligned)
    torch.testing.assert_close(aligned, template, atol=1e-5, rtol=0)


def test_affine2d_lies_between_fullalign_and_no_alignment(evaluation_batch):
    datamodule, batch = evaluation_batch
    none, _, _ = _aligned_anme(datamodule, batch, "none")
    affine, aligned, module = _aligned_anme(datamodule, batch, "affine2d")
    full, _, _ = _aligned_anme(datamodule, batch, "fullalign")
    assert full < affine < none
    # the five points themselves land near the template's five points
    five = module.schema.five_points(aligned)
    target = module.schema.five_points(module.template)
    assert float((five - target).norm(dim=-1).mean()) < 0.15
