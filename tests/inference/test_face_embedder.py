"""FaceEmbedder: safe checkpoint loading, evaluation's preprocessing, flip TTA, alignment."""

import cv2
import numpy as np
import pytest
import torch

from balanced_align import FaceEmbedder
from balanced_align.checkpoints import UnsafeCheckpointError
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluation.benchmarks import EmbedOptions, embed_all
from balanced_align.export import export_onnx
from balanced_align.geometry.base import sample
from tests.inference.tiny_models import SIZE, save_checkpoint, tiny_module


@pytest.fixture(scope="module")
def faces():
    """Four 48 px SynthFaces records (larger than the model: the embedder resizes)."""
    data = SynthFaces(2, 2, image_size=48, seed=3)
    return [data[i] for i in range(4)]


def test_arrays_are_embedded_like_evaluation(tmp_path, faces):
    model = tiny_module("stn_tps8", "fmap")
    embedder = FaceEmbedder.from_checkpoint(save_checkpoint(model, tmp_path / "m.ckpt"))
    images = [f.image for f in faces]
    ours = embedder(images)
    with torch.no_grad():
        theirs = embed_all(lambda x: model(x), 4, images.__getitem__, EmbedOptions(SIZE))
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)
    np.testing.assert_allclose(ours.norm(dim=1).numpy(), 1.0, atol=1e-5)
    # one array, a file path and a prepared tensor give the same row
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(images[0], cv2.COLOR_RGB2BGR))
    np.testing.assert_allclose(embedder(images[0]).numpy(), ours[:1].numpy(), atol=1e-6)
    np.testing.assert_allclose(embedder(str(path)).numpy(), ours[:1].numpy(), atol=1e-6)
    tensors, _ = embedder.prepare(images)
    np.testing.assert_allclose(embedder(tensors).numpy(), ours.numpy(), atol=1e-6)
    # without flip TTA: the normalised raw embedding
    with torch.no_grad():
        plain = torch.nn.functional.normalize(model(tensors), dim=1)
    np.testing.assert_allclose(embedder(images, flip=False).numpy(), plain.numpy(), atol=1e-5)


def test_flip_tta_mirrors_and_permutes_landmarks(tmp_path, faces):
    model = tiny_module("affine2d", "input")
    embedder = FaceEmbedder.from_checkpoint(save_checkpoint(model, tmp_path / "m.ckpt"))
    images = [f.image for f in faces]
    pixels = [f.landmarks for f in faces]  # lmk84, corner-origin pixels of the 48 px image
    ours = embedder(images, pixels)
    # reference: mirror the images and landmarks in pixels (schema.flip), then resize
    width = images[0].shape[1]
    with torch.no_grad():
        embedded = []
        for image, points in zip(images, pixels):
            rows = []
            for img, pts in ((image, points), (image[:, ::-1], model.schema.flip(points, width))):
                small = cv2.resize(
                    np.ascontiguousarray(img), (SIZE, SIZE), interpolation=cv2.INTER_AREA
                )
                x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 127.5 - 1
                u = torch.from_numpy(np.asarray(pts, np.float32))[None] * 2 / width - 1
                rows.append(model.recognizer(x, u).embedding)
            embedded.append(torch.nn.functional.normalize(rows[0] + rows[1], dim=1))
    np.testing.assert_allclose(ours.numpy(), torch.cat(embedded).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="landmarks"):
        embedder(images)
    with pytest.raises(ValueError, match=r"landmarks\[0\]"):
        embedder(images[:1], [pixels[0][:5]])


def test_alignment_is_what_the_backbone_sees(tmp_path, faces):
    model = tiny_module("stn_proj", "input")
    embedder = FaceEmbedder.from_module(model)
    emb, alignment = embedder([f.image for f in faces], flip=False, return_alignment=True)
    images, _ = embedder.prepare([f.image for f in faces])
    assert alignment.image.shape == images.shape and alignment.grid.shape == (4, SIZE, SIZE, 2)
    np.testing.assert_allclose(
        alignment.image.numpy(), sample(images, alignment.grid).numpy(), atol=1e-6
    )
    assert float((alignment.image - images).abs().max()) > 0.05  # not the identity
    with torch.no_grad():
        direct = torch.nn.functional.normalize(model.recognizer.backbone(alignment.image), dim=1)
    np.testing.assert_allclose(emb.numpy(), direct.numpy(), atol=1e-5)


def test_onnx_embedder_matches_checkpoint(tmp_path, faces):
    model = tiny_module("fullalign", "fmap")
    path = tmp_path / "m.onnx"
    export_onnx(model, path, threshold=0.5)
    onnx_embedder = FaceEmbedder.from_onnx(path)
    assert onnx_embedder.threshold == 0.5 and onnx_embedder.needs_landmarks
    images, pixels = [f.image for f in faces], [f.landmarks for f in faces]
    torch_emb = FaceEmbedder.from_module(model)(images, pixels)
    np.testing.assert_allclose(onnx_embedder(images, pixels).numpy(), torch_emb.numpy(), atol=1e-4)


class Payload:
    """Not on torch's weights_only allowlist."""


def test_checkpoint_is_read_safely(tmp_path):
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload()}}, path)
    with pytest.raises(UnsafeCheckpointError):
        FaceEmbedder.from_checkpoint(path)


def test_bad_inputs_are_named(tmp_path):
    embedder = FaceEmbedder.from_module(tiny_module("none"))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        embedder(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"images\[1\]"):
        embedder([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        embedder(str(tmp_path / "nothere.png"))


def test_bf16_precision_stays_close_to_float32(tmp_path, faces):
    ckpt = save_checkpoint(tiny_module("stn_tps8", "fmap"), tmp_path / "m.ckpt")
    images = [f.image for f in faces]
    full = FaceEmbedder.from_checkpoint(ckpt)(images)
    half = FaceEmbedder.from_checkpoint(ckpt, precision="bf16")(images)
    assert half.dtype == torch.float32
    cosine = (full * half).sum(dim=1)
    assert float(cosine.min()) > 0.98 and not torch.equal(full, half)
    with pytest.raises(ValueError, match="precision=16 needs a CUDA"):
        FaceEmbedder.from_checkpoint(ckpt, precision="16")
