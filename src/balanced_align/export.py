"""ONNX export of a trained recognizer, STN included: ``python -m balanced_align.export``.

::

    python -m balanced_align.export --ckpt last.ckpt --out model.onnx
    python -m balanced_align.export --ckpt last.ckpt --out model.onnx \\
        --calibrate-lfw /data/lfw/pairs.txt /data/lfw/aligned      # stores a threshold
    python -m balanced_align.export --ckpt last.ckpt --out model.onnx --threshold 0.31

The graph is the recognizer of ``BalancedAlignModule.forward``: LocNet, the TPS / projective
/ affine sampling grid and ``grid_sample`` (at the input or on the stage-0 feature map), and
the backbone. Inputs and output:

- ``images``: (B, 3, H, W) float32 RGB in [−1, 1] (x / 127.5 − 1), B dynamic;
- ``landmarks`` (only ``align=affine2d|fullalign``): (B, S, 2) float32, each image's
  landmarks in normalised source coordinates u = 2x/W − 1, v = 2y/H − 1 (corner-origin x, y);
- ``embedding``: (B, D) float32, the raw (not normalised, no flip) embedding.

The metadata (``metadata_props``) say how to feed the file: ``input_size`` "H,W",
``normalisation``, ``embedding_size``, ``method``, ``location``, ``tps_grid_size``,
``schema``, ``num_landmarks``, ``flip_permutation`` (for flip TTA with landmarks) and
``threshold``: the cosine similarity at or above which two flip-TTA embeddings are called
the same person (empty when not calibrated). ``--calibrate-lfw`` picks it on LFW-style pairs
as the verification protocol does (the best-accuracy threshold of each fold, then their
median) and also stores the accuracy it reached (``threshold_source``).

``affine2d`` exports its 5-point similarity in closed form (the 2-D least-squares similarity,
the same optimum Umeyama's SVD finds), because ONNX has no SVD.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from balanced_align.inference import FaceEmbedder, ModelInfo, info_of_module

log = logging.getLogger(__name__)

#: ``affine_grid`` (the affine STN and Affine2D) is in ONNX from opset 20; GridSample from 16
DEFAULT_OPSET = 20
NORMALISATION = "RGB, NCHW, x / 127.5 - 1 (uint8 0..255 -> [-1, 1])"


def similarity_closed_form(source: Tensor, target: Tensor) -> Tensor:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source``
    (B, P, 2) onto ``target`` (B, P, 2): (B, 2, 3). Plain arithmetic (exportable).

    With centred points s, t the optimum linear part is [[a, −b], [b, a]] with
    a = Σ s·t / Σ|s|², b = Σ (sₓt_y − s_yt_x) / Σ|s|² (complex least squares).
    """
    mu_s, mu_t = source.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    s, t = source - mu_s, target - mu_t
    variance = (s * s).sum(dim=(1, 2))
    a = (s * t).sum(dim=(1, 2)) / variance
    b = (s[..., 0] * t[..., 1] - s[..., 1] * t[..., 0]).sum(dim=1) / variance
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], dim=1)
    translation = mu_t.transpose(1, 2) - linear @ mu_s.transpose(1, 2)
    return torch.cat([linear, translation], dim=2)


class ExportableRecognizer(nn.Module):
    """``BalancedAlignModule.forward`` as one traceable module.

    ``forward(images (B, 3, H, W)[, landmarks (B, S, 2) normalised]) -> (B, D)``.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.recognizer = model.recognizer
        self.channels_last = bool(model.hparams.model["channels_last"])
        aligner = self.recognizer.aligner
        self.affine2d = aligner is not None and aligner.method == "affine2d"

    def _params(self, images: Tensor, landmarks: Tensor | None) -> Tensor:
        if self.affine2d:
            aligner = self.recognizer.aligner
            template = aligner.schema.five_points(aligner.template).unsqueeze(0)
            five = aligner.schema.five_points(landmarks.float())
            return similarity_closed_form(template.expand_as(five), five)
        return self.recognizer.predict_params(images, landmarks)

    def forward(self, images: Tensor, landmarks: Tensor | None = None) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        recognizer = self.recognizer
        backbone, warper = recognizer.backbone, recognizer.warper
        if warper is None:
            return backbone(images)
        params = self._params(images, landmarks)
        if recognizer.location == "input":
            return backbone(warper.warp(images, params))
        return backbone.body(warper.warp(backbone.stem(images), params))


def metadata(info: ModelInfo, schema_flip: Sequence[int], extra: dict | None = None) -> dict:
    """The ``metadata_props`` of an export (all values strings)."""
    height, width = info.input_size
    props = {
        "producer": "balanced-align",
        "input_size": f"{height},{width}",
        "normalisation": NORMALISATION,
        "embedding_size": str(info.embedding_dim),
        "embedding": "raw (not L2-normalised, no flip TTA); compare L2-normalised embeddings",
        "method": info.method,
        "location": info.location,
        "tps_grid_size": "" if info.tps_grid_size is None else str(info.tps_grid_size),
        "schema": info.schema,
        "num_landmarks": str(info.num_landmarks),
        "landmarks_input": (
            "(B, S, 2) normalised u = 2x/W - 1, v = 2y/H - 1 (corner-origin pixels)"
            if info.needs_landmarks
            else ""
        ),
        "flip_permutation": json.dumps(list(schema_flip)),
        "threshold": "" if info.threshold is None else repr(float(info.threshold)),
        "threshold_metric": "cosine similarity of flip-TTA embeddings; same person if >=",
    }
    props.update({k: str(v) for k, v in (extra or {}).items()})
    return props


def read_metadata(path: str | Path) -> ModelInfo:
    """:class:`ModelInfo` from the metadata of an ONNX file written by :func:`export_onnx`."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("producer") != "balanced-align":
        raise ValueError(f"ONNX file {str(path)!r} was not written by balanced_align.export")
    height, width = (int(v) for v in props["input_size"].split(","))
    return ModelInfo(
        input_size=(height, width),
        embedding_dim=int(props["embedding_size"]),
        method=props["method"],
        location=props["location"],
        schema=props["schema"],
        num_landmarks=int(props["num_landmarks"]),
        tps_grid_size=int(props["tps_grid_size"]) if props.get("tps_grid_size") else None,
        threshold=float(props["threshold"]) if props.get("threshold") else None,
    )


def export_onnx(
    model,
    out: str | Path | None = None,
    *,
    threshold: float | None = None,
    opset: int = DEFAULT_OPSET,
    extra_metadata: dict | None = None,
) -> bytes:
    """Export a :class:`~balanced_align.module.BalancedAlignModule` (moved to the CPU, eval
    mode) to ONNX; writes ``out`` when given and returns the file's bytes."""
    import onnx

    if opset < 16:
        raise ValueError(f"--opset must be >= 16 (GridSample), got {opset}")
    if opset < 20 and model.hparams.align["method"] in ("affine", "affine2d"):
        raise ValueError(f"the affine warp needs --opset >= 20 (affine_grid), got {opset}")
    model = model.cpu().eval()
    info = info_of_module(model, threshold)
    wrapper = ExportableRecognizer(model).eval()
    height, width = info.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, height, width, generator=generator) * 2 - 1
    args: tuple = (images,)
    names = ["images"]
    if info.needs_landmarks:
        template = model.template.detach().float()
        args = (images, template.expand(2, -1, -1).clone())
        names.append("landmarks")
    dynamic = {name: {0: "batch"} for name in [*names, "embedding"]}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # tracing warns about shape checks turning into constants: the size is fixed
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            buffer,
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    wrapper.eval()  # the exporter restores the wrapper's (training) mode on exit
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(info, model.schema.flip_permutation, extra_metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if out is not None:
        Path(out).write_bytes(data)
    return data


def calibrate_lfw(embedder: FaceEmbedder, pairs_file: str | Path, root: str | Path) -> dict:
    """Cosine threshold from LFW-style ``pairs.txt`` over ``root``: the verification
    protocol's best-accuracy squared-distance threshold of each fold, their median d²,
    as cosine 1 − d²/2. Returns ``{"threshold", "accuracy", "accuracy_std", "pairs"}``."""
    from balanced_align.data.formats import read_lfw_pairs
    from balanced_align.evaluation.verification import verification_accuracy

    if embedder.needs_landmarks:
        raise ValueError(
            f"--calibrate-lfw: align.method={embedder.info.method} needs landmarks, which LFW "
            "pairs do not carry; give --threshold instead"
        )
    pairs = read_lfw_pairs(pairs_file, root)  # every listed image must exist
    folds = pairs.folds
    if np.unique(folds).size < 2:
        # a one-set (View 1) file lists all matched pairs before the mismatched ones:
        # contiguous folds would each hold one kind only, so deal the pairs round-robin
        folds = np.arange(len(pairs.issame)) % 10
    rows = []
    for start in range(0, pairs.num_images, embedder.batch_size):
        rows.append(embedder([str(p) for p in pairs.paths[start : start + embedder.batch_size]]))
    emb = torch.cat(rows).numpy()
    result = verification_accuracy(
        emb[pairs.pairs_a], emb[pairs.pairs_b], pairs.issame, folds=folds
    )
    squared = float(np.median(result.thresholds))
    return {
        "threshold": 1.0 - squared / 2.0,
        "accuracy": float(result.accuracy_mean),
        "accuracy_std": float(result.accuracy_std),
        "pairs": len(pairs.issame),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m balanced_align.export",
        description="Export a checkpoint's recognizer (STN included) to ONNX.",
    )
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="cosine decision threshold to store")
    group.add_argument(
        "--calibrate-lfw",
        nargs=2,
        metavar=("PAIRS", "ROOT"),
        help="pick the threshold on LFW-style pairs.txt over the image ROOT",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--batch-size", type=int, default=64, help="for --calibrate-lfw")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from balanced_align.safe_paths import refuse_overwriting_inputs

    out = Path(args.out)
    inputs = [args.ckpt, *(args.calibrate_lfw[:1] if args.calibrate_lfw else [])]
    refuse_overwriting_inputs([out], inputs, what="--out")
    if out.suffix.lower() != ".onnx":
        parser.error(f"--out {args.out!r}: expected a .onnx file name")
    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be a cosine similarity in [-1, 1], got {args.threshold}")
    embedder = FaceEmbedder.from_checkpoint(args.ckpt, batch_size=args.batch_size)
    threshold, extra = args.threshold, {"checkpoint": Path(args.ckpt).name}
    if args.threshold is not None:
        extra["threshold_source"] = "given (--threshold)"
    if args.calibrate_lfw:
        calibration = calibrate_lfw(embedder, *args.calibrate_lfw)
        threshold = calibration["threshold"]
        extra["threshold_source"] = (
            f"LFW pairs {Path(args.calibrate_lfw[0]).name}: {calibration['pairs']} pairs, "
            f"10-fold accuracy {calibration['accuracy']:.4f} ± {calibration['accuracy_std']:.4f}"
        )
        log.info("threshold %.4f (%s)", threshold, extra["threshold_source"])
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(embedder.model, out, threshold=threshold, opset=args.opset, extra_metadata=extra)
    info = info_of_module(embedder.model, threshold)
    log.info(
        "wrote %s: %s at %s, input %s, embedding %d, threshold %s",
        out,
        info.method,
        info.location,
        "x".join(map(str, info.input_size)),
        info.embedding_dim,
        "none" if threshold is None else f"{threshold:.4f}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
