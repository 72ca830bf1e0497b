"""The landmark-driven baselines: exact FullAlign, Affine2D five points, checkpoint restore."""

import torch

from balanced_align.data.schema import LMK84
from balanced_align.models import LandmarkAligner


def _template(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(84, 2, generator=generator) * 1.4 - 0.7


def test_fullalign_maps_template_onto_landmarks():
    template = _template(0)
    aligner = LandmarkAligner("fullalign", template)
    landmarks = template + 0.05 * torch.randn(3, 84, 2)
    params = aligner.predict_params(landmarks)
    warped = aligner.family.warp_points(params, template)
    torch.testing.assert_close(warped, landmarks, atol=1e-4, rtol=0)


def test_affine2d_maps_template_five_points_onto_the_faces():
    template = _template(1)
    aligner = LandmarkAligner("affine2d", template)
    angle = torch.tensor(0.3)
    rotation = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    landmarks = (0.8 * template @ rotation.T + torch.tensor([0.1, -0.05])).unsqueeze(0)
    params = aligner.predict_params(landmarks)
    five = aligner.family.warp_points(params, LMK84.five_points(template))
    torch.testing.assert_close(five, LMK84.five_points(landmarks), atol=1e-5, rtol=0)


def test_fullalign_spline_follows_a_loaded_template():
    saved = LandmarkAligner("fullalign", _template(2))
    restored = LandmarkAligner("fullalign", _template(3))
    restored.load_state_dict(saved.state_dict())
    torch.testing.assert_close(restored.family.control_points, saved.family.control_points)
    landmarks = _template(4).unsqueeze(0)
    torch.testing.assert_close(
        restored.family.warp_points(restored.predict_params(landmarks), restored.template),
        landmarks,
        atol=1e-4,
        rtol=0,
    )
