"""Flip TTA: sum of the embeddings of an image and its mirror, L2-normalised."""

import pytest
import torch

from balanced_align.evaluation import flip_tta_embeddings


def test_linear_embedding_closed_form_and_flip_invariance():
    torch.manual_seed(0)
    images = torch.randn(5, 3, 6, 8)
    weight = torch.randn(3 * 6 * 8, 4)

    def embed(x):
        return x.flatten(1) @ weight

    out = flip_tta_embeddings(embed, images)
    mirrored = images[..., torch.arange(7, -1, -1)]  # mirror by explicit column reversal
    ref = (images + mirrored).flatten(1) @ weight
    ref = ref / ref.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))
    # the TTA embedding of a mirrored image is the same
    torch.testing.assert_close(flip_tta_embeddings(embed, mirrored), out)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="images"):
        flip_tta_embeddings(lambda x: x.flatten(1), torch.zeros(3, 6, 8))
    with pytest.raises(ValueError, match="embed_fn"):
        flip_tta_embeddings(lambda x: x, torch.zeros(2, 3, 6, 8))
