"""The SynthFaces data set: index i = c * images_per_identity + k -> a rendered FaceRecord.

Image k of identity c is a pure function of (seed, identity_offset + c, image_offset + k)
and the knobs, so items can be rendered in any order, by any number of workers, or cached.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from balanced_align.core.schema import LMK84

from ..record import FaceRecord
from .params import (
    TAG_TEXTURE,
    Knobs,
    SceneParams,
    ShapeParams,
    annotation_error,
    pixel_rng,
    sample_scene,
    sample_shape_params,
)
from .render import OVERSAMPLE, Renderer
from .shape import EXPRESSION_MODE_NAMES, apply_expression, identity_shape
from .texture import (
    REGION_NAMES,
    TextureParams,
    paint_regions,
    paint_texture,
    sample_texture_params,
)

#: Half-width, in image pixels, of the band around each eye contour that the debug region map
#: counts as eye (the lid line), so contour landmarks fall inside the eye region.
EYE_BAND = 1.5


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


@dataclass(frozen=True)
class Identity:
    """One identity: its parameters, 3D vertices (V, 3) in mm and texture (Ht, Wt, 3) uint8."""

    identity: int
    shape: ShapeParams
    texture_params: TextureParams
    vertices: np.ndarray
    texture: np.ndarray

    def params(self) -> dict[str, np.ndarray]:
        """All identity parameters as arrays (shape and texture), for comparisons."""
        out = {f"shape.{k}": v for k, v in self.shape.as_dict().items()}
        out.update({f"texture.{k}": v for k, v in self.texture_params.as_dict().items()})
        return out


class SynthFaces:
    """Synthetic faces with 84 landmarks, identities in 3D shape and texture (docs/design.md §4).

    Args:
        num_identities: number of identities (labels 0 .. num_identities - 1).
        images_per_identity: images per identity; item i = c * images_per_identity + k.
        image_size: side of the square RGB images (16 .. 1024).
        seed: data set seed; identities and images are pure functions of it.
        identity_offset: global id of local identity 0 (disjoint splits use disjoint ranges).
        image_offset: global index of local image 0 (e.g. a gallery with other images).
        cache_identities: how many identities' textures to keep (LRU).
        **knobs: see :class:`~.params.Knobs` (geometry_strength, texture_strength, yaw_range,
            pitch_range, roll_range, pose_distribution, expression_strength, scale_jitter,
            shift_jitter, lighting, background, blur, noise, landmark_noise).

    With ``landmark_noise > 0`` the record's landmarks are the exact projections plus a fixed
    annotation error per image (the same every time the item is read), and
    ``meta["landmarks_exact"]`` holds the exact ones (in the record's pixel frame: the
    training transforms do not carry it, so batches and ANME see the noisy labels).
    """

    #: Landmark schema of every record.
    schema = LMK84

    def __init__(
        self,
        num_identities: int,
        images_per_identity: int,
        image_size: int = 112,
        seed: int = 0,
        identity_offset: int = 0,
        image_offset: int = 0,
        cache_identities: int = 256,
        **knobs,
    ) -> None:
        self.num_identities = _count("num_identities", num_identities, 1)
        self.images_per_identity = _count("images_per_identity", images_per_identity, 1)
        self.image_size = _count("image_size", image_size, 16)
        if self.image_size > 1024:
            raise ValueError(f"image_size must be <= 1024, got {image_size}")
        self.seed = _count("seed", seed, 0)
        self.identity_offset = _count("identity_offset", identity_offset, 0)
        self.image_offset = _count("image_offset", image_offset, 0)
        self.cache_identities = _count("cache_identities", cache_identities, 0)
        self.knobs = Knobs.from_mapping(knobs)
        self._renderer: Renderer | None = None
        self._cache: OrderedDict[int, Identity] = OrderedDict()

    # -- sizes and ids ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    @property
    def identity_ids(self) -> np.ndarray:
        """Global identity ids (num_identities,) of labels 0 .. num_identities - 1."""
        return np.arange(self.num_identities) + self.identity_offset

    @property
    def labels(self) -> np.ndarray:
        """Label of every item (len,), without rendering."""
        return np.repeat(np.arange(self.num_identities), self.images_per_identity)

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = Renderer(self.image_size)
        return self._renderer

    def __getstate__(self):  # workers rebuild caches
        state = self.__dict__.copy()
        state["_renderer"], state["_cache"] = None, OrderedDict()
        return state

    # -- parameters -------------------------------------------------------------------------
    def identity(self, identity: int) -> Identity:
        """The identity with global id ``identity`` (cached)."""
        identity = _count("identity", identity, 0)
        found = self._cache.get(identity)
        if found is not None:
            self._cache.move_to_end(identity)
            return found
        k = self.knobs
        shape = sample_shape_params(self.seed, identity, k.geometry_strength)
        rng = np.random.default_rng([self.seed, identity, TAG_TEXTURE])
        tex_params = sample_texture_params(rng, k.texture_strength)
        item = Identity(
            identity=identity,
            shape=shape,
            texture_params=tex_params,
            vertices=identity_shape(shape.coefficients, shape.asymmetry),
            texture=paint_texture(tex_params, self.renderer.canvas),
        )
        if self.cache_identities:
            self._cache[identity] = item
            while len(self._cache) > self.cache_identities:
                self._cache.popitem(last=False)
        return item

    def scene(self, identity: int, image: int) -> SceneParams:
        """Image parameters of image ``image`` of identity ``identity`` (global ids)."""
        return sample_scene(self.seed, identity, image, self.knobs, self.image_size)

    # -- items ------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> FaceRecord:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"SynthFaces index must be an integer, got {index!r}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"SynthFaces index {index} out of range for length {n}")
        c, k = divmod(int(index) % n, self.images_per_identity)
        return self.render(self.identity_offset + c, self.image_offset + k)

    def render(self, identity: int, image: int, debug_regions: bool = False) -> FaceRecord:
        """Render image ``image`` of identity ``identity`` (global ids).

        With ``debug_regions`` the record's ``meta["regions"]`` is an (H, W) uint8 label map
        (see ``meta["region_names"]``: background, skin, left/right eye, brows, nose, mouth,
        hair).
        """
        identity = _count("identity", identity, 0)
        if not 0 <= identity - self.identity_offset < self.num_identities:
            raise ValueError(
                f"identity {identity} is not in this set's global ids "
                f"[{self.identity_offset}, {self.identity_offset + self.num_identities})"
            )
        image = _count("image", image, 0)
        ident = self.identity(identity)
        scene = self.scene(ident.identity, image)
        regions = None
        if debug_regions:
            canvas = self.renderer.canvas
            regions = paint_regions(ident.texture_params, canvas, EYE_BAND * OVERSAMPLE)
        vertices = apply_expression(ident.vertices, scene.expression)
        img, lmk, region_map, proj = self.renderer.render(
            vertices, ident.texture, scene, pixel_rng(self.seed, ident.identity, image), regions
        )
        meta = {
            "identity": ident.identity,
            "image": image,
            "seed": self.seed,
            "expression": dict(zip(EXPRESSION_MODE_NAMES, scene.expression.tolist())),
            "scale_px_per_mm": proj.scale,
        }
        if debug_regions:
            meta["regions"] = region_map
            meta["region_names"] = REGION_NAMES
        if self.knobs.landmark_noise > 0:
            meta["landmarks_exact"] = lmk
            lmk = lmk + annotation_error(
                self.seed, ident.identity, image, self.knobs, self.image_size, len(lmk)
            )
        return FaceRecord(
            image=img,
            landmarks=lmk,
            label=ident.identity - self.identity_offset,
            yaw=scene.yaw,
            pitch=scene.pitch,
            roll=scene.roll,
            source=f"synthfaces:{self.seed}/{ident.identity}/{image}",
            meta=meta,
        )

    def __repr__(self) -> str:
        return (
            f"SynthFaces(num_identities={self.num_identities}, "
            f"images_per_identity={self.images_per_identity}, image_size={self.image_size}, "
            f"seed={self.seed}, identity_offset={self.identity_offset}, "
            f"image_offset={self.image_offset}, {self.knobs})"
        )
