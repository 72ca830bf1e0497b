"""``sample``: memory format of its result, against ``grid_sample`` on the NCHW tensor."""

import pytest
import torch
from torch.nn import functional as F

from balanced_align.geometry import sample


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_channels_last_in_channels_last_out_same_values_and_gradients(padding_mode):
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(2, 5, 7, 6, generator=generator)
    grid = torch.rand(2, 4, 3, 2, generator=generator) * 2.4 - 1.2  # some points outside
    weights = torch.randn(2, 5, 4, 3, generator=generator)

    nchw = tensor.clone().requires_grad_(True)
    nhwc = tensor.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    reference = F.grid_sample(
        nchw, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
    out = sample(nhwc, grid, padding_mode=padding_mode)

    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    (grad_ref,) = torch.autograd.grad((reference * weights).sum(), nchw)
    (grad,) = torch.autograd.grad((out * weights).sum(), nhwc)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-5)


def test_nchw_stays_nchw():
    out = sample(torch.randn(1, 3, 5, 5), torch.zeros(1, 4, 4, 2))
    assert out.is_contiguous()
