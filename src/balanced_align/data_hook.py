"""The one place where the LightningModule's inputs are read from a data module.

:class:`~balanced_align.module.BalancedAlignModule` never reads ``trainer.datamodule``. It
receives explicitly:

- the initial template T: ``template_init=`` at construction, :meth:`set_template`, or
  :meth:`template_from_data` (the mean frontal landmarks of the training data);
- the evaluation protocols: :meth:`set_evaluation_protocols` (``val=``, ``test=``), one
  :class:`~balanced_align.core.protocol.EvaluationProtocol` per evaluation loader, whose rows
  are that loader's dataset indices;
- the per-device training batch for lr scaling: ``optim.batch_size`` (the global batch is
  that × devices × gradient accumulation).

:class:`DataModuleHook` is a Lightning callback that, at ``setup`` (after the data module's
own ``setup``), hands these from a data module to the module. The data module may provide,
each optional:

- ``val_protocol``, ``test_protocol``: the protocols of ``val_dataloader()`` /
  ``test_dataloader()``;
- ``has_landmarks`` (bool) and ``mean_frontal_landmarks()`` -> (S, 2) normalised: the
  template, used only when the module was given none;
- ``batch_size`` (int): the per-device training batch; when fitting it must equal
  ``optim.batch_size``, else the learning rate would be scaled by a batch that is not trained.

:class:`~balanced_align.data.FaceDataModule` provides all of them.
``BalancedAlignModule.configure_callbacks`` returns a ``DataModuleHook``, so
``trainer.fit(module, datamodule=dm)`` needs nothing more; without a data module (e.g.
``trainer.validate(module, dataloaders=…)``) call the setters yourself.
"""

from __future__ import annotations

import lightning as L


class DataModuleHook(L.Callback):
    """Give the module the template, the protocols and a batch-size check from the data module."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        protocols = {
            split: getattr(datamodule, f"{split}_protocol")
            for split in ("val", "test")
            if hasattr(datamodule, f"{split}_protocol")
        }
        if protocols:
            pl_module.set_evaluation_protocols(**protocols)
        pl_module.template_from_data(
            has_landmarks=getattr(datamodule, "has_landmarks", True),
            mean_frontal_landmarks=getattr(datamodule, "mean_frontal_landmarks", None),
        )
        batch_size = getattr(datamodule, "batch_size", None)
        expected = pl_module.hparams.optim["batch_size"]
        if stage == "fit" and batch_size is not None and batch_size != expected:
            raise ValueError(
                f"the data module's batch_size={batch_size} differs from optim.batch_size="
                f"{expected}: the learning rate is scaled by optim.batch_size × devices × "
                "accumulation, so set optim.batch_size to the per-device training batch"
            )
