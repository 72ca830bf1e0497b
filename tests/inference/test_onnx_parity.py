"""onnxruntime runs the exported recognizer (STN included) like torch, for every method."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from balanced_align.export import export_onnx, read_metadata, similarity_closed_form
from balanced_align.geometry import estimate_similarity
from tests.inference.tiny_models import METHODS, SIZE, landmarks_for, tiny_module


def _run(session, images, landmarks):
    feeds = {"images": images.numpy()}
    if landmarks is not None:
        feeds["landmarks"] = landmarks.numpy()
    return torch.from_numpy(session.run(["embedding"], feeds)[0])


@pytest.mark.parametrize("location", ["input", "fmap"])
@pytest.mark.parametrize("name", list(METHODS))
def test_onnxruntime_matches_torch(name, location):
    model = tiny_module(name, location)
    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    needs_landmarks = model.landmark_aligned
    for batch in (1, 7):
        images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        images = images * 2 - 1
        landmarks = landmarks_for(model, batch, seed=batch) if needs_landmarks else None
        with torch.no_grad():
            reference = model.recognizer(images, landmarks).embedding
        onnx_emb = _run(session, images, landmarks)
        assert onnx_emb.shape == reference.shape == (batch, 16)
        cosine = torch.nn.functional.cosine_similarity(onnx_emb, reference, dim=1)
        assert float(cosine.min()) >= 0.99999
        diff = torch.nn.functional.normalize(onnx_emb, dim=1) - torch.nn.functional.normalize(
            reference, dim=1
        )
        assert float(diff.abs().max()) <= 1e-4
        if needs_landmarks or name == "none":
            continue
        # the warp is far from the identity, so a broken warp could not pass the test
        with torch.no_grad():
            model.recognizer.stn.locnet.fc.weight.zero_()
            identity = model.recognizer(images).embedding
        model = tiny_module(name, location)
        assert float((identity - reference).abs().max()) > 1e-2


def test_landmark_methods_warp_by_their_landmarks():
    """Different landmarks give a different ONNX embedding (the input is really used)."""
    model = tiny_module("fullalign", "input")
    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    images = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    a = _run(session, images, landmarks_for(model, 2, seed=0))
    b = _run(session, images, landmarks_for(model, 2, seed=5))
    assert float((a - b).abs().max()) > 1e-2


def test_closed_form_similarity_equals_umeyama():
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(6, 5, 2, generator=generator)
    target = torch.randn(6, 5, 2, generator=generator)
    np.testing.assert_allclose(
        similarity_closed_form(source, target).numpy(),
        estimate_similarity(source, target).numpy(),
        atol=1e-5,
    )


def test_metadata_and_dynamic_batch(tmp_path):
    model = tiny_module("stn_tps8", "fmap")
    path = tmp_path / "m.onnx"
    export_onnx(model, path, threshold=0.42, extra_metadata={"checkpoint": "x.ckpt"})
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version >= 16
    assert any(node.op_type == "GridSample" for node in proto.graph.node)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["input_size"] == f"{SIZE},{SIZE}"
    assert props["method"] == "tps" and props["location"] == "fmap"
    assert props["tps_grid_size"] == "8" and props["embedding_size"] == "16"
    assert "127.5" in props["normalisation"] and props["checkpoint"] == "x.ckpt"
    info = read_metadata(path)
    assert info.threshold == pytest.approx(0.42) and info.input_size == (SIZE, SIZE)
    assert not info.needs_landmarks
    assert [i.name for i in proto.graph.input] == ["images"]


def test_landmark_methods_have_a_landmarks_input():
    proto = onnx.load_from_string(export_onnx(tiny_module("affine2d", "fmap")))
    names = [i.name for i in proto.graph.input]
    assert names == ["images", "landmarks"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["threshold"] == "" and props["num_landmarks"] == "84"


def test_low_opset_for_affine_is_refused():
    with pytest.raises(ValueError, match="opset >= 20"):
        export_onnx(tiny_module("stn_affine", "input"), opset=17)
