"""The one safe way to read a checkpoint: ``torch.load(weights_only=True)``, never more.

Every Lightning checkpoint this library opens itself (the best checkpoint tested after
training, ``eval.py``, ``report --faces``, the inference API) goes through
:func:`read_checkpoint`, which reads with the one ``torch.load`` of the library
(:func:`~balanced_align.models.safe_load.load_weights_only`; T_fix† templates and
``model.pretrained`` weights are read by it too). A file that needs any pickle global beyond
tensors and plain containers raises :class:`UnsafeCheckpointError` and is not loaded at all.
Resuming (``ckpt_path``) is Lightning's own load, called with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from balanced_align.models.safe_load import UnsafeCheckpointError, load_weights_only
from balanced_align.module import BalancedAlignModule


def load_checkpoint(path: str | Path, map_location="cpu") -> BalancedAlignModule:
    """Rebuild the :class:`BalancedAlignModule` of a Lightning checkpoint, in eval mode.

    The file is read safely by :func:`read_checkpoint`; the module is built by
    :func:`module_from_checkpoint`.
    """
    return module_from_checkpoint(read_checkpoint(path, map_location), path)


def read_checkpoint(path: str | Path, map_location="cpu") -> Mapping:
    """A Lightning checkpoint's contents, read with ``torch.load(weights_only=True)``.

    Tensors, plain containers and numbers only: nothing in the file is executed. A file that
    needs anything else raises :class:`UnsafeCheckpointError` and is not loaded at all; a file
    that is not a torch file, or lacks ``state_dict`` / ``hyper_parameters``, raises
    ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path {str(path)!r} does not exist")
    checkpoint = load_weights_only(path, map_location, what="checkpoint")
    if not isinstance(checkpoint, Mapping) or not {"state_dict", "hyper_parameters"} <= set(
        checkpoint
    ):
        keys = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(
            f"checkpoint {str(path)!r}: expected a Lightning checkpoint with 'state_dict' and "
            f"'hyper_parameters', got {keys}"
        )
    return checkpoint


def module_from_checkpoint(checkpoint: Mapping, path: str | Path) -> BalancedAlignModule:
    """The module of a checkpoint read by :func:`read_checkpoint` (``path`` names it in
    errors), in eval mode.

    Built from the ``hyper_parameters``; the ``state_dict`` is loaded strictly. A T_fix†
    template file or ``model.pretrained`` weights named in the hyperparameters are not read:
    the state holds them.
    """
    hparams = dict(checkpoint["hyper_parameters"])
    loss = dict(hparams.get("loss") or {})
    if loss.get("template_checkpoint"):  # the frozen template comes with the state dict
        loss.update(template_checkpoint=None, learn_template=False)
        hparams["loss"] = loss
    model_group = dict(hparams.get("model") or {})
    if model_group.get("pretrained"):  # the published weights were the start; the state has all
        hparams["model"] = {**model_group, "pretrained": None}
    try:
        model = BalancedAlignModule(**hparams)
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(path)!r}: bad hyper_parameters: {error}") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"checkpoint {str(path)!r}: state_dict does not fit the model: {error}"
        ) from None
    if model.landmark_aligned:  # rebuild the aligner's spline from the loaded template
        model.set_template(model.template.detach().clone())
    return model.eval()


__all__ = [
    "UnsafeCheckpointError",
    "load_checkpoint",
    "module_from_checkpoint",
    "read_checkpoint",
]
