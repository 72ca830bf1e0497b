"""Device and precision names of eval.py and FaceEmbedder (balanced_align.devices)."""

import pytest
import torch

from balanced_align.devices import PRECISIONS, resolve_device, resolve_precision


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_names_the_device():
    with pytest.raises(ValueError, match="device='cuda:1'"):
        resolve_device("cuda:1")


@pytest.mark.parametrize(
    ("name", "dtype"),
    [(32, None), ("32-true", None), ("bf16", torch.bfloat16), ("bf16-mixed", torch.bfloat16)],
)
def test_precision_names_on_cpu(name, dtype):
    assert resolve_precision(name, torch.device("cpu")) is dtype


def test_float16_needs_cuda_and_unknown_names_fail():
    assert PRECISIONS["16"] is torch.float16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))
