"""Embedding photographs with a trained model: :class:`FaceEmbedder`.

``FaceEmbedder.from_checkpoint(path)`` rebuilds the model with the one safe checkpoint reader
(:mod:`balanced_align.checkpoints`); ``FaceEmbedder.from_onnx(path)`` runs a file written by
``python -m balanced_align.export`` with onnxruntime instead. Either way, calling it embeds:

- images: a uint8 (H, W, 3) RGB array, an image file path, a list of those, or a float
  (B, 3, H, W) tensor in [−1, 1] at the model's input size;
- landmarks (only for ``align=affine2d|fullalign``, which align each face by them):
  corner-origin pixel coordinates (x, y) of each image as given, (S, 2) per image or
  (B, S, 2), in the model's landmark schema (e.g. 84 points for ``lmk84``).

Arrays and files are prepared exactly as evaluation prepares them
(:func:`~balanced_align.data.transforms.resize_face` to the model input size, no crop, then
:func:`~balanced_align.data.transforms.to_tensor` to [−1, 1]), so give face crops made like
the training images. Landmarks are normalised by the size of the image they were given for
(u = 2x/W − 1), which the resize leaves unchanged.

The result is (B, D) float32 with rows of unit norm. With flip TTA (the default, as in
evaluation) it is the normalised sum of the embeddings of each image and of its mirror; the
mirror's landmarks are mirrored and permuted with the schema's ``flip_permutation``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from balanced_align.core.schema import LandmarkSchema, get_schema
from balanced_align.data.transforms import resize_face, to_tensor
from balanced_align.data.validation import read_image
from balanced_align.geometry.coords import pixel_to_normalized

#: a raw embedding function: images (B, 3, H, W) in [−1, 1], normalised landmarks (B, S, 2)
#: or None -> (B, D) un-normalised embeddings (torch or onnxruntime)
RawEmbed = Callable[[Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to know about a model to feed it (stored in ONNX metadata too).

    input_size: (H, W); embedding_dim: D; method / location: the alignment
    (``align.method``, ``align.location``); schema: landmark schema name; threshold: cosine
    similarity at or above which two faces are called the same person, or None when no
    verification set calibrated one.
    """

    input_size: tuple[int, int]
    embedding_dim: int
    method: str
    location: str
    schema: str
    num_landmarks: int
    tps_grid_size: int | None = None
    threshold: float | None = None

    @property
    def needs_landmarks(self) -> bool:
        from balanced_align.models import LANDMARK_METHODS

        return self.method in LANDMARK_METHODS


@dataclass
class Alignment:
    """What the model's alignment does to a batch, for figures.

    image: (B, 3, H, W) float in [−1, 1], the input warped by the alignment (at ``fmap`` the
        image warped with the grid used on the stage-0 feature map); the input itself without
        an alignment.
    grid: (B, H, W, 2) the sampling grid in normalised source coordinates (where each aligned
        pixel reads from, ``grid_sample`` convention), or None without an alignment.
    params: (B, *param_shape) warp parameters (aligned → source), or None.
    """

    image: Tensor
    grid: Tensor | None
    params: Tensor | None


def info_of_module(model, threshold: float | None = None) -> ModelInfo:
    """:class:`ModelInfo` of a :class:`~balanced_align.module.BalancedAlignModule`."""
    hp = model.hparams
    method = hp.align["method"]
    return ModelInfo(
        input_size=tuple(model.image_size),
        embedding_dim=int(hp.model["embedding_dim"]),
        method=method,
        location=hp.align["location"] if method != "none" else "none",
        schema=str(hp.schema),
        num_landmarks=int(hp.num_landmarks),
        tps_grid_size=int(hp.align["tps_grid_size"]) if method == "tps" else None,
        threshold=threshold,
    )


def flip_landmarks(landmarks: Tensor, schema: LandmarkSchema) -> Tensor:
    """Normalised landmarks (B, S, 2) of the horizontally mirrored images: u → −u, and the
    indices permuted so that "left eye" stays the left eye."""
    perm = list(schema.flip_permutation)
    return landmarks[:, perm] * landmarks.new_tensor([-1.0, 1.0])


def _is_single_image(images) -> bool:
    return isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 3)


class FaceEmbedder:
    """L2-normalised face embeddings from a trained model (module docstring: the inputs).

    Build it with :meth:`from_checkpoint` or :meth:`from_onnx`. Attributes: ``info``
    (:class:`ModelInfo`), ``flip``, ``batch_size``, ``threshold`` (= ``info.threshold``),
    ``model`` (the module; None for ONNX).
    """

    def __init__(
        self,
        raw_embed: RawEmbed,
        info: ModelInfo,
        *,
        flip: bool = True,
        batch_size: int = 64,
        model=None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.raw_embed = raw_embed
        self.info = info
        self.flip = bool(flip)
        self.batch_size = batch_size
        self.model = model
        self.schema = get_schema(info.schema)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | None = "cpu",
        precision: str = "32",
        *,
        flip: bool = True,
        batch_size: int = 64,
        threshold: float | None = None,
    ) -> FaceEmbedder:
        """Embedder of a Lightning checkpoint, read by ``torch.load(weights_only=True)`` only.

        device: "cpu", "cuda", "cuda:1", … or "auto"; precision: "32", "bf16" or "16" (CUDA
        only) autocast (the geometry stays float32); threshold: the cosine decision threshold
        (see ``python -m balanced_align.export --calibrate-lfw``), None if unknown.
        """
        from balanced_align.checkpoints import module_from_checkpoint, read_checkpoint
        from balanced_align.devices import resolve_device, resolve_precision

        dev = resolve_device(device)
        dtype = resolve_precision(precision, dev)
        model = module_from_checkpoint(read_checkpoint(path), path).to(dev)
        return cls.from_module(
            model, dtype=dtype, flip=flip, batch_size=batch_size, threshold=threshold
        )

    @classmethod
    def from_module(
        cls,
        model,
        *,
        dtype: torch.dtype | None = None,
        flip: bool = True,
        batch_size: int = 64,
        threshold: float | None = None,
    ) -> FaceEmbedder:
        """Embedder of a :class:`~balanced_align.module.BalancedAlignModule` (put in eval
        mode; it stays on its device), under autocast to ``dtype`` when given."""
        model.eval()
        device = next(model.parameters()).device
        channels_last = bool(model.hparams.model["channels_last"])

        def raw_embed(images: Tensor, landmarks: Tensor | None) -> Tensor:
            images = images.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if landmarks is not None:
                landmarks = landmarks.to(device)
            autocast = (
                torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            )
            with torch.inference_mode(), autocast:
                return model.recognizer(images, landmarks).embedding.float()

        info = info_of_module(model, threshold)
        return cls(raw_embed, info, flip=flip, batch_size=batch_size, model=model)

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        flip: bool = True,
        batch_size: int = 64,
        providers: Sequence[str] | None = None,
    ) -> FaceEmbedder:
        """Embedder of an ONNX file written by ``python -m balanced_align.export``, run with
        onnxruntime; input size, alignment and threshold come from its metadata."""
        import onnxruntime as ort

        from balanced_align.export import read_metadata

        info = read_metadata(path)
        session = ort.InferenceSession(
            str(path), providers=list(providers or ["CPUExecutionProvider"])
        )

        def raw_embed(images: Tensor, landmarks: Tensor | None) -> Tensor:
            feeds = {"images": images.detach().float().cpu().numpy()}
            if info.needs_landmarks:
                feeds["landmarks"] = landmarks.detach().float().cpu().numpy()
            return torch.from_numpy(session.run(["embedding"], feeds)[0])

        return cls(raw_embed, info, flip=flip, batch_size=batch_size)

    # -- properties ---------------------------------------------------------------------
    @property
    def threshold(self) -> float | None:
        return self.info.threshold

    @property
    def needs_landmarks(self) -> bool:
        return self.info.needs_landmarks

    # -- inputs -------------------------------------------------------------------------
    def prepare(self, images, landmarks=None) -> tuple[Tensor, Tensor | None]:
        """Model inputs: images (B, 3, H, W) float32 in [−1, 1] and, for landmark-driven
        methods, normalised landmarks (B, S, 2) (None otherwise)."""
        if self.needs_landmarks and landmarks is None:
            raise ValueError(
                f"align.method={self.info.method} aligns each face by its landmarks: pass "
                f"landmarks=… ({self.info.num_landmarks} points per image, {self.info.schema})"
            )
        if not self.needs_landmarks:
            landmarks = None
        if torch.is_tensor(images):
            return self._prepare_tensor(images, landmarks)
        if _is_single_image(images):
            images = [images]
            if landmarks is not None:
                landmarks = np.asarray(landmarks, np.float32)[None]
        if not isinstance(images, Sequence) or len(images) == 0:
            raise ValueError(
                "images: expected an (H, W, 3) uint8 array, an image path, a non-empty list of "
                f"those, or a (B, 3, H, W) tensor; got {type(images).__name__}"
            )
        if landmarks is not None and len(landmarks) != len(images):
            raise ValueError(f"landmarks: {len(landmarks)} sets for {len(images)} images")
        tensors, points = [], []
        for i, item in enumerate(images):
            image = self._load(item, i)
            pixels = None
            if landmarks is not None:
                pixels = self._pixel_landmarks(landmarks[i], i)
                points.append(pixel_to_normalized(torch.tensor(pixels), image.shape[:2]))
            resized, _ = resize_face(image, None, self.info.input_size)
            tensors.append(to_tensor(resized)[0])
        return torch.stack(tensors), (torch.stack(points) if points else None)

    def _prepare_tensor(self, images: Tensor, landmarks) -> tuple[Tensor, Tensor | None]:
        size = tuple(self.info.input_size)
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != size:
            raise ValueError(
                f"images: expected a (B, 3, {size[0]}, {size[1]}) tensor in [−1, 1] (the "
                f"model input size), got {tuple(images.shape)}"
            )
        if landmarks is None:
            return images.float(), None
        points = torch.as_tensor(landmarks, dtype=torch.float32)
        if points.shape != (images.shape[0], self.info.num_landmarks, 2):
            raise ValueError(
                f"landmarks: expected ({images.shape[0]}, {self.info.num_landmarks}, 2) pixel "
                f"coordinates, got {tuple(points.shape)}"
            )
        return images.float(), pixel_to_normalized(points, size)

    @staticmethod
    def _load(item, index: int) -> np.ndarray:
        if isinstance(item, (str, Path)):
            return read_image(item)
        image = np.asarray(item)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"images[{index}]: expected an (H, W, 3) uint8 RGB array or a path, got "
                f"{image.shape} {image.dtype}"
            )
        return image

    def _pixel_landmarks(self, points, index: int) -> np.ndarray:
        points = np.asarray(points, np.float32)
        if points.shape != (self.info.num_landmarks, 2) or not np.isfinite(points).all():
            raise ValueError(
                f"landmarks[{index}]: expected ({self.info.num_landmarks}, 2) finite pixel "
                f"coordinates ({self.info.schema}), got shape {points.shape}"
            )
        return points

    # -- embedding ----------------------------------------------------------------------
    def embed_prepared(
        self, images: Tensor, landmarks: Tensor | None = None, flip: bool | None = None
    ) -> Tensor:
        """(B, D) unit-norm float32 embeddings of prepared inputs (see :meth:`prepare`)."""
        flip = self.flip if flip is None else flip
        rows = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size]
            points = None if landmarks is None else landmarks[start : start + self.batch_size]
            emb = self.raw_embed(batch, points).float()
            if flip:
                mirrored = None if points is None else flip_landmarks(points, self.schema)
                emb = emb + self.raw_embed(torch.flip(batch, dims=(-1,)), mirrored).float()
            rows.append(torch.nn.functional.normalize(emb, dim=1).cpu())
        return torch.cat(rows)

    def __call__(
        self, images, landmarks=None, *, flip: bool | None = None, return_alignment: bool = False
    ) -> Tensor | tuple[Tensor, Alignment]:
        """(B, D) unit-norm embeddings (one row per image; B = 1 for a single image).

        ``flip`` overrides the embedder's flip TTA; ``return_alignment`` also returns the
        :class:`Alignment` of the (unflipped) inputs (checkpoint models only).
        """
        tensors, points = self.prepare(images, landmarks)
        embeddings = self.embed_prepared(tensors, points, flip)
        if return_alignment:
            return embeddings, self.alignment(tensors, points)
        return embeddings

    @torch.inference_mode()
    def alignment(self, images: Tensor, landmarks: Tensor | None = None) -> Alignment:
        """:class:`Alignment` of prepared inputs (see :meth:`prepare`), on the CPU."""
        if self.model is None:
            raise ValueError("the aligned image needs the torch model: use from_checkpoint")
        recognizer = self.model.recognizer
        device = next(self.model.parameters()).device
        images = images.to(device)
        landmarks = None if landmarks is None else landmarks.to(device)
        if recognizer.warper is None:
            return Alignment(images.cpu(), None, None)
        params = recognizer.predict_params(images, landmarks).float()
        size = (int(images.shape[-2]), int(images.shape[-1]))
        grid = recognizer.family.grid(params, size)
        aligned = recognizer.aligned_image(images, params=params)
        return Alignment(aligned.float().cpu(), grid.float().cpu(), params.cpu())

    def similarity(self, a, b, landmarks_a=None, landmarks_b=None) -> Tensor:
        """Cosine similarity (B,) of row-paired images ``a`` and ``b`` (same count)."""
        emb_a, emb_b = self(a, landmarks_a), self(b, landmarks_b)
        if emb_a.shape != emb_b.shape:
            raise ValueError(f"a has {emb_a.shape[0]} images, b has {emb_b.shape[0]}")
        return (emb_a * emb_b).sum(dim=1)

    def __repr__(self) -> str:
        return f"FaceEmbedder({json.dumps(self.info.__dict__)}, flip={self.flip})"


__all__ = ["Alignment", "FaceEmbedder", "ModelInfo", "flip_landmarks", "info_of_module"]
