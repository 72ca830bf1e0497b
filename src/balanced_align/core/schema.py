"""Landmark schemas: which index is which point, and how a horizontal flip permutes them.

Sides are named as seen in the image of a frontal face: ``left`` is the side with the
smaller x (the subject's right). So in iBUG-68, the ``left_eye`` is points 36–41.
A horizontal flip mirrors x *and* must permute indices with ``flip_permutation``
(new[i] = old[perm[i]]); otherwise the point called "left eye" ends on the right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# iBUG-68 flip permutation (mirror pairs; self-symmetric points map to themselves).
_IBUG68_PAIRS = (
    [(i, 16 - i) for i in range(8)]  # jaw 0..16
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # nose bottom
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer mouth
    + [(60, 64), (61, 63), (65, 67)]  # inner mouth
)

IBUG68_NAMES = (
    [f"jaw_{i}" for i in range(17)]
    + [f"left_brow_{i}" for i in range(5)]
    + [f"right_brow_{i}" for i in range(5)]
    + [f"nose_bridge_{i}" for i in range(4)]
    + [f"nose_bottom_{i}" for i in range(5)]
    + [f"left_eye_{i}" for i in range(6)]
    + [f"right_eye_{i}" for i in range(6)]
    + [f"mouth_outer_{i}" for i in range(12)]
    + [f"mouth_inner_{i}" for i in range(8)]
)

#: The 16 points the project's 84-point layout adds after iBUG-68 (indices 68–83),
#: as (name, mirror partner name or None).
LMK84_EXTRA = (
    ("left_pupil", "right_pupil"),  # 68
    ("right_pupil", "left_pupil"),  # 69
    ("left_temple", "right_temple"),  # 70: hairline at the side of the forehead
    ("left_forehead", "right_forehead"),  # 71
    ("forehead_centre", None),  # 72: top of the forehead on the midline
    ("right_forehead", "left_forehead"),  # 73
    ("right_temple", "left_temple"),  # 74
    ("glabella", None),  # 75: between the brows
    ("left_infraorbital", "right_infraorbital"),  # 76: below the eye, on the cheekbone
    ("right_infraorbital", "left_infraorbital"),  # 77
    ("left_cheek", "right_cheek"),  # 78: cheek centre
    ("right_cheek", "left_cheek"),  # 79
    ("left_nasolabial", "right_nasolabial"),  # 80: fold beside the nose wing
    ("right_nasolabial", "left_nasolabial"),  # 81
    ("left_ear", "right_ear"),  # 82: tragus; hidden at large yaw, kept all the same
    ("right_ear", "left_ear"),  # 83
)


def _pairs_to_perm(n: int, pairs) -> tuple[int, ...]:
    perm = list(range(n))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


@dataclass(frozen=True)
class LandmarkSchema:
    """Names and semantics of a landmark layout.

    Attributes:
        name: schema id (``"lmk84"``, ``"ibug68"``, ``"five"``).
        num_points: S.
        left_eye / right_eye: indices of each eye's contour (image-left / image-right);
            the pupil is the mean of the contour.
        five_point_spec: for each of the five Affine2D points (left eye, right eye, nose
            tip, mouth left, mouth right), the indices averaged to get it.
        flip_permutation: new[i] = old[perm[i]] after a horizontal flip.
        point_names: one name per index.
    """

    name: str
    num_points: int
    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]
    five_point_spec: tuple[tuple[int, ...], ...]
    flip_permutation: tuple[int, ...]
    point_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if sorted(self.flip_permutation) != list(range(self.num_points)):
            raise ValueError(f"{self.name}: flip_permutation is not a permutation")
        perm = np.asarray(self.flip_permutation)
        if not np.array_equal(perm[perm], np.arange(self.num_points)):
            raise ValueError(f"{self.name}: flip_permutation is not an involution")
        if len(self.five_point_spec) != 5:
            raise ValueError(f"{self.name}: five_point_spec needs 5 entries")

    def check(self, landmarks, where: str = "landmarks") -> None:
        """Raise ValueError naming ``where`` if landmarks are not (..., S, 2) and finite."""
        shape = tuple(landmarks.shape)
        if len(shape) < 2 or shape[-1] != 2 or shape[-2] != self.num_points:
            raise ValueError(
                f"{where}: expected {self.num_points} landmarks of schema '{self.name}' "
                f"as (..., {self.num_points}, 2), got shape {shape}"
            )
        finite = (
            torch.isfinite(landmarks).all()
            if torch.is_tensor(landmarks)
            else (np.isfinite(landmarks).all())
        )
        if not bool(finite):
            raise ValueError(f"{where}: landmarks contain NaN or infinite values")

    def _gather_mean(self, landmarks, index_sets):
        lib = torch if torch.is_tensor(landmarks) else np
        pts = [landmarks[..., list(ix), :].mean(-2) for ix in index_sets]
        return lib.stack(pts, -2) if lib is torch else np.stack(pts, -2)

    def eye_centres(self, landmarks):
        """(..., S, 2) -> (..., 2, 2): left and right pupil as contour means."""
        return self._gather_mean(landmarks, (self.left_eye, self.right_eye))

    def interocular(self, landmarks):
        """(..., S, 2) -> (...,): distance between the pupils."""
        eyes = self.eye_centres(landmarks)
        diff = eyes[..., 0, :] - eyes[..., 1, :]
        return (diff**2).sum(-1) ** 0.5

    def five_points(self, landmarks):
        """(..., S, 2) -> (..., 5, 2): left eye, right eye, nose tip, mouth left, mouth right."""
        return self._gather_mean(landmarks, self.five_point_spec)

    def flip(self, landmarks, width: float):
        """Mirror (..., S, 2) pixel landmarks of an image of ``width`` and permute indices.

        In the corner-origin pixel frame a mirrored x is ``width - x``.
        """
        perm = list(self.flip_permutation)
        flipped = landmarks[..., perm, :]
        if torch.is_tensor(flipped):
            flipped = flipped.clone()
        else:
            flipped = flipped.copy()
        flipped[..., 0] = width - flipped[..., 0]
        return flipped


IBUG68 = LandmarkSchema(
    name="ibug68",
    num_points=68,
    left_eye=tuple(range(36, 42)),
    right_eye=tuple(range(42, 48)),
    five_point_spec=(tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,)),
    flip_permutation=_pairs_to_perm(68, _IBUG68_PAIRS),
    point_names=tuple(IBUG68_NAMES),
)

FIVE = LandmarkSchema(
    name="five",
    num_points=5,
    left_eye=(0,),
    right_eye=(1,),
    five_point_spec=((0,), (1,), (2,), (3,), (4,)),
    flip_permutation=(1, 0, 2, 4, 3),
    point_names=("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right"),
)


def _lmk84_perm() -> tuple[int, ...]:
    names = [n for n, _ in LMK84_EXTRA]
    pairs = list(_IBUG68_PAIRS)
    for i, (_, partner) in enumerate(LMK84_EXTRA):
        if partner is not None:
            j = names.index(partner)
            if i < j:
                pairs.append((68 + i, 68 + j))
    return _pairs_to_perm(84, pairs)


LMK84 = LandmarkSchema(
    name="lmk84",
    num_points=84,
    left_eye=tuple(range(36, 42)),
    right_eye=tuple(range(42, 48)),
    five_point_spec=IBUG68.five_point_spec,
    flip_permutation=_lmk84_perm(),
    point_names=tuple(IBUG68_NAMES) + tuple(n for n, _ in LMK84_EXTRA),
)

SCHEMAS = {s.name: s for s in (LMK84, IBUG68, FIVE)}


def get_schema(name: str | LandmarkSchema) -> LandmarkSchema:
    """Look a schema up by name (``lmk84``, ``ibug68``, ``five``)."""
    if isinstance(name, LandmarkSchema):
        return name
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError(f"unknown landmark schema '{name}'; known: {sorted(SCHEMAS)}") from None


def schema_for_count(num_points: int) -> LandmarkSchema:
    """The schema with ``num_points`` points (84, 68 or 5)."""
    for schema in SCHEMAS.values():
        if schema.num_points == num_points:
            return schema
    raise ValueError(f"no landmark schema has {num_points} points; known: 84, 68, 5")


def lmk84_to_ibug68(landmarks):
    """(..., 84, 2) -> (..., 68, 2): the first 68 points are iBUG-68."""
    LMK84.check(landmarks)
    return landmarks[..., :68, :]


def to_five(landmarks, schema: str | LandmarkSchema):
    """(..., S, 2) in ``schema`` -> (..., 5, 2) in the ``five`` schema."""
    return get_schema(schema).five_points(landmarks)
