"""Flip TTA in evaluation: a landmark-aligned model sees the mirrored face with its landmarks
mirrored *and* permuted (left eye stays the image-left eye), exactly as the data transform's
flip (hflip_face, checked on real HELEN faces in tests/data/test_transforms.py) makes them."""

import numpy as np
import pytest
import torch

from balanced_align import BalancedAlignModule
from balanced_align.data.schema import IBUG68
from balanced_align.data.sources import read_pts, to_corner
from balanced_align.data.transforms import hflip_face, resize_face, to_tensor
from balanced_align.data.validation import read_image
from tests.data_paths import ASSET_HELEN

SIZE = 64


def _helen_batch(names):
    images, points = [], []
    for name in names:
        image, pts = resize_face(
            read_image(ASSET_HELEN / f"{name}.jpg"),
            to_corner(read_pts(ASSET_HELEN / f"{name}.pts"), "one_based"),
            (SIZE, SIZE),
        )
        images.append(image)
        points.append(pts)
    tensors = [to_tensor(i, p) for i, p in zip(images, points)]
    batch = {
        "image": torch.stack([t[0] for t in tensors]),
        "landmarks": torch.stack([t[1] for t in tensors]),
        "has_landmarks": torch.ones(len(names), dtype=torch.bool),
        "label": torch.arange(len(names)),
        "yaw": torch.zeros(len(names)),
        "index": torch.arange(len(names)),
    }
    return batch, images, points


@pytest.mark.parametrize("method", ["affine2d", "fullalign"])
def test_the_flipped_branch_gets_the_mirrored_face_and_its_flipped_landmarks(method):
    torch.manual_seed(0)
    module = BalancedAlignModule(
        num_classes=4,
        model={"width": 0.125, "input_size": SIZE, "embedding_dim": 16},
        align={"method": method, "location": "input"},
        loss={"lambda": 0.0},
        num_landmarks=68,
        schema="ibug68",
    ).eval()
    names = ["2968560214_1", "296814969_3"]  # near-frontal faces
    batch, images, points = _helen_batch(names)
    seen = []
    forward = module.recognizer.forward

    def recording(images, landmarks=None):
        seen.append((images.clone(), None if landmarks is None else landmarks.clone()))
        return forward(images, landmarks)

    module.recognizer.forward = recording
    with torch.no_grad():
        module._evaluation_step(batch, module.val_collector)
    assert len(seen) == 2
    (plain_images, plain_points), (flip_images, flip_points) = seen
    torch.testing.assert_close(plain_points, batch["landmarks"])
    torch.testing.assert_close(flip_images, torch.flip(plain_images, dims=[3]))
    for i, (image, pts) in enumerate(zip(images, points)):
        expected = to_tensor(*hflip_face(image, pts, IBUG68))[1]
        torch.testing.assert_close(flip_points[i], expected, atol=1e-5, rtol=0)
        # the image-left eye of the mirrored face is still left of its nose
        left, right, nose = IBUG68.five_points(flip_points[i].numpy())[[0, 1, 2], 0]
        assert left < nose < right
    assert not np.allclose(flip_points.numpy(), plain_points.numpy() * [-1.0, 1.0])
