"""arcface_torch-named IR-ResNet state dicts load into our backbone with identical outputs."""

from __future__ import annotations

import os
import pickle
import re

import pytest
import torch

from balanced_align.models.insightface import load_insightface_weights
from balanced_align.models.iresnet import iresnet18
from balanced_align.models.safe_load import UnsafeCheckpointError

#: our key prefix -> arcface_torch's (written here by hand, from their iresnet.py layout)
THEIR_NAMES = [
    (r"^stage0\.0\.", "conv1."),
    (r"^stage0\.1\.", "bn1."),
    (r"^stage0\.2\.", "prelu."),
    (r"^stage([1-4])\.(\d+)\.shortcut\.", r"layer\1.\2.downsample."),
    (r"^stage([1-4])\.", r"layer\1."),
    (r"^output_layer\.0\.", "bn2."),
    (r"^output_layer\.3\.", "fc."),
    (r"^output_layer\.4\.", "features."),
]


def _theirs(state: dict, prefix: str = "") -> dict:
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in THEIR_NAMES:
            key, hits = re.subn(pattern, replacement, key)
            if hits:
                break
        renamed[prefix + key] = value
    return renamed


def _trained_like(seed: int):
    """A small backbone with random weights and BN statistics (so every tensor matters)."""
    torch.manual_seed(seed)
    net = iresnet18(width=0.25, input_size=32, embedding_dim=16)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else
                             torch.randn_like(tensor) * 0.1)  # fmt: skip
    return net.eval()


def test_their_names_load_with_identical_outputs(tmp_path):
    source = _trained_like(0)
    state = _theirs(source.state_dict(), prefix="module.")  # a DDP-wrapped save
    assert {"conv1.weight", "prelu.weight", "layer1.0.downsample.0.weight", "fc.weight"} <= {
        k.removeprefix("module.") for k in state
    }
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    target = _trained_like(1)
    images = torch.randn(3, 3, 32, 32)
    assert not torch.allclose(target(images), source(images))
    report = load_insightface_weights(target, path)
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(target(images), source(images), rtol=0, atol=0)


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    state = _theirs(_trained_like(0).state_dict())
    del state["layer2.1.conv2.weight"]
    state["fc_extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "partial.pth")
    report = load_insightface_weights(_trained_like(1), tmp_path / "partial.pth")
    assert report.missing == ["stage2.1.conv2.weight"]
    assert report.unexpected == ["fc_extra.weight"]


def test_a_pickled_object_and_a_wrong_shape_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Payload()}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r"model\.pretrained .*evil\.pth"):
        load_insightface_weights(_trained_like(1), evil)
    wide = iresnet18(width=0.5, input_size=32, embedding_dim=16)
    torch.save(_theirs(wide.state_dict()), tmp_path / "wide.pth")
    with pytest.raises(ValueError, match=r"wide\.pth.*'conv1\.weight' has shape \(32, 3, 3, 3\)"):
        load_insightface_weights(_trained_like(1), tmp_path / "wide.pth")


def test_unreadable_pretrained_files_name_the_file_and_why(tmp_path):
    """A folder, an empty file, a raw pickle with code: each names the file; nothing runs."""
    backbone = _trained_like(1)
    with pytest.raises(IsADirectoryError, match=r"model\.pretrained .* is a directory"):
        load_insightface_weights(backbone, tmp_path)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth' is not a readable torch file"):
        load_insightface_weights(backbone, tmp_path / "empty.pth")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"conv1.weight": Payload()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_insightface_weights(backbone, tmp_path / "evil.pth")
    # the reason is torch's (the refused global or opcode), not its "please file an issue"
    assert "evil.pth" in str(info.value) and "file an issue" not in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_the_module_loads_model_pretrained(tmp_path):
    from balanced_align.module import BalancedAlignModule

    source = _trained_like(0)
    torch.save(_theirs(source.state_dict()), tmp_path / "backbone.pth")
    model = {"width": 0.25, "input_size": 32, "embedding_dim": 16, "channels_last": False}
    module = BalancedAlignModule(
        num_classes=3,
        model={**model, "pretrained": str(tmp_path / "backbone.pth")},
        align={"method": "none"},
        loss={"lambda": 0.0},
    ).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(module(images), source(images), rtol=0, atol=0)
    # its checkpoint rebuilds without the weights file (the state holds them)
    from balanced_align.checkpoints import module_from_checkpoint

    (tmp_path / "backbone.pth").unlink()
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    rebuilt = module_from_checkpoint(checkpoint, tmp_path / "run.ckpt")
    torch.testing.assert_close(rebuilt(images), source(images), rtol=0, atol=0)
