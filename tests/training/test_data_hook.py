"""The module gets the template, the protocols and the batch size explicitly; the one callback
that reads a data module (DataModuleHook) hands over exactly what the data module provides."""

import ast
import inspect
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from balanced_align import module as module_file
from balanced_align.core import EvaluationProtocol
from balanced_align.data import FaceDataModule
from balanced_align.data_hook import DataModuleHook
from balanced_align.module import BalancedAlignModule
from tests.data.test_datamodule import SYNTH
from tests.viz.helpers import SIZE, face_template

TINY_DATA = {**SYNTH, "image_size": SIZE, "batch_size": 4}  # 32×32, like the tiny module


def _module(template_init=None, batch_size=4, **loss) -> BalancedAlignModule:
    torch.manual_seed(0)
    return BalancedAlignModule(
        num_classes=4,
        model={"width": 0.125, "input_size": SIZE, "embedding_dim": 16},
        align={"method": "tps", "tps_grid_size": 4, "locnet_input_size": 16, "locnet_width": 0.25},
        loss={"lambda": 3.0, **loss},
        optim={"batch_size": batch_size},
        template_init=template_init,
    )


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )


def test_module_never_reads_the_data_module():
    tree = ast.parse(inspect.getsource(module_file))
    reads = [
        n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "datamodule"
    ]
    assert not reads, f"module.py reads .datamodule at lines {reads}"


def test_hook_hands_over_the_template_and_the_protocols():
    template = face_template()
    val, test = EvaluationProtocol(pairs_a=np.array([0])), EvaluationProtocol()
    datamodule = SimpleNamespace(
        val_protocol=val,
        test_protocol=test,
        has_landmarks=True,
        mean_frontal_landmarks=lambda: template.numpy(),
        batch_size=4,
    )
    module = _module()
    assert not bool(module.template_ready)
    DataModuleHook().setup(SimpleNamespace(datamodule=datamodule), module, "fit")
    assert torch.equal(module.template, template) and bool(module.template_ready)
    assert module._protocols == {"val": val, "test": test}
    module.setup("fit")  # the template is there: no error


def test_without_a_template_setup_names_the_fix():
    with pytest.raises(ValueError, match="no template_init was given"):
        _module().setup("fit")
    hook, no_landmarks = DataModuleHook(), SimpleNamespace(has_landmarks=False)
    free = _module(learn_template=False, **{"lambda": 0.0})
    hook.setup(SimpleNamespace(datamodule=no_landmarks), free, "fit")
    free.setup("fit")  # λ = 0 on data without landmarks: T is never used, nothing to raise


def test_a_data_batch_other_than_optim_batch_size_is_refused_when_fitting():
    module = _module(template_init=face_template(), batch_size=16)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=8))
    with pytest.raises(ValueError, match=r"batch_size=8 differs from optim\.batch_size=16"):
        DataModuleHook().setup(trainer, module, "fit")
    DataModuleHook().setup(trainer, module, "validate")  # no lr involved


@pytest.mark.slow
def test_explicit_protocols_give_the_metrics_of_the_data_module_path():
    datamodule = FaceDataModule(**TINY_DATA)
    datamodule.setup("validate")
    template = torch.as_tensor(datamodule.mean_frontal_landmarks())

    through_hook = _trainer().validate(_module(), datamodule=datamodule)[0]

    module = _module(template_init=template)
    with pytest.raises(RuntimeError, match="no evaluation protocol"):
        _trainer().validate(module, dataloaders=datamodule.val_dataloader())
    module.set_evaluation_protocols(val=datamodule.val_protocol)
    explicit = _trainer().validate(module, dataloaders=datamodule.val_dataloader())[0]
    assert "val/rank1" in explicit and "val/verif_acc" in explicit
    assert explicit == pytest.approx(through_hook, nan_ok=True)
