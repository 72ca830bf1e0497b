"""SynthFaces: determinism, identity/image separation, geometry against closed forms, knobs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation

from balanced_align.data.record import FaceRecord
from balanced_align.data.schema import LMK84
from balanced_align.data.synthfaces import REGION, SynthFaces
from balanced_align.data.synthfaces.mesh import face_mesh, missing_required_edges, signed_area2
from balanced_align.data.synthfaces.params import Knobs, sample_scene
from balanced_align.data.synthfaces.shape import (
    EXPRESSION_MODES,
    IDENTITY_MODES,
    MEAN_VERTICES,
    VERTEX_FLIP,
    layout_vertices,
    mirror,
    unwrap,
)

# A frontal, neutral, unjittered, evenly lit configuration.
STILL = dict(
    yaw_range=(0, 0),
    pitch_range=(0, 0),
    roll_range=(0, 0),
    expression_strength=0.0,
    scale_jitter=0.0,
    shift_jitter=0.0,
)
# ...that is also mirror-symmetric: mean shape, shared texture, no light, flat background.
SYMMETRIC = dict(
    STILL,
    geometry_strength=0.0,
    texture_strength=0.0,
    lighting=0.0,
    background="flat",
    blur=0.0,
    noise=0.0,
)


def posed(yaw=0.0, pitch=0.0, roll=0.0, **kw) -> dict:
    return {**STILL, "yaw_range": (yaw, yaw), "pitch_range": (pitch, pitch),
            "roll_range": (roll, roll), **kw}  # fmt: skip


# -- records and determinism -------------------------------------------------------------


def test_record_layout_and_labels():
    ds = SynthFaces(3, 4, image_size=64, seed=2, identity_offset=10, image_offset=100)
    assert len(ds) == 12
    np.testing.assert_array_equal(ds.identity_ids, [10, 11, 12])
    rec = ds[7]  # c = 1, k = 3
    assert isinstance(rec, FaceRecord)
    assert rec.image.shape == (64, 64, 3) and rec.image.dtype == np.uint8
    assert rec.landmarks.shape == (84, 2) and rec.landmarks.dtype == np.float32
    assert rec.label == 1
    assert rec.meta["identity"] == 11 and rec.meta["image"] == 103
    assert all(np.isfinite([rec.yaw, rec.pitch, rec.roll]))
    np.testing.assert_array_equal(ds.labels, np.repeat([0, 1, 2], 4))
    with pytest.raises(IndexError):
        ds[12]
    with pytest.raises(ValueError, match="identity"):
        ds.render(3, 0)  # a global id outside this set


@pytest.mark.parametrize("background", ["noise", "gradient", "flat"])
def test_backgrounds_give_contiguous_images(background):
    rec = SynthFaces(1, 1, image_size=40, background=background)[0]
    assert rec.image.flags.c_contiguous and rec.image.shape == (40, 40, 3)
    assert rec.image.std() > 0


def test_same_seed_identity_image_gives_identical_bytes():
    a = SynthFaces(3, 4, image_size=64, seed=5)[6]
    b = SynthFaces(3, 4, image_size=64, seed=5)[6]
    c = SynthFaces(3, 4, image_size=64, seed=6)[6]
    assert a.image.tobytes() == b.image.tobytes()
    assert a.landmarks.tobytes() == b.landmarks.tobytes()
    assert (a.yaw, a.pitch, a.roll) == (b.yaw, b.pitch, b.roll)
    assert not np.array_equal(a.image, c.image)


def test_access_order_and_worker_copies_do_not_change_items():
    ds = SynthFaces(4, 3, image_size=48, seed=7, cache_identities=2)
    forward = [ds[i] for i in range(len(ds))]
    order = np.random.default_rng(0).permutation(len(ds))
    # two "workers": pickled copies (as DataLoader workers get them) rendering interleaved
    workers = [pickle.loads(pickle.dumps(ds)) for _ in range(2)]
    shuffled = {int(i): workers[n % 2][int(i)] for n, i in enumerate(order)}
    fresh = SynthFaces(4, 3, image_size=48, seed=7, cache_identities=0)
    for i, rec in enumerate(forward):
        assert rec.image.tobytes() == shuffled[i].image.tobytes()
        assert rec.image.tobytes() == fresh[i].image.tobytes()
        np.testing.assert_array_equal(rec.landmarks, shuffled[i].landmarks)


def test_images_of_one_identity_differ_but_share_identity_parameters():
    ds = SynthFaces(3, 5, image_size=64, seed=11)
    recs = [ds.render(1, k) for k in range(3)]
    assert not np.array_equal(recs[0].image, recs[1].image)
    assert recs[0].yaw != recs[1].yaw
    # a frontal-only gallery instance with other images shows the same people
    gallery = SynthFaces(3, 1, image_size=64, seed=11, image_offset=50, background="flat", **STILL)
    for c in range(3):
        a, b = ds.identity(c), gallery.identity(c)
        pa, pb = a.params(), b.params()
        assert pa.keys() == pb.keys()
        for key in pa:
            np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.texture, b.texture)
    other = ds.identity(2).params()
    assert not np.array_equal(ds.identity(1).params()["shape.coefficients"],
                              other["shape.coefficients"])  # fmt: skip


# -- geometry -----------------------------------------------------------------------------


def reference_rotation(yaw, pitch, roll) -> np.ndarray:
    """Independent rotation: scipy, intrinsic Z-X-Y = Rz(roll) Rx(pitch) Ry(yaw)."""
    return Rotation.from_euler("ZXY", [roll, pitch, yaw], degrees=True).as_matrix()


@pytest.mark.parametrize("pose", [(0, 0, 0), (35, -12, 8), (-70, 20, -15), (90, 0, 0)])
def test_landmarks_are_the_rotated_and_scaled_model_points(pose):
    ds = SynthFaces(2, 1, image_size=96, seed=3, **posed(*pose))
    rec = ds[1]
    expected = rec.meta["scale_px_per_mm"] * (ds.identity(1).vertices @ reference_rotation(*pose).T)
    expected = expected[:84, :2]

    def centred(p):
        return p - 0.5 * (p.min(0) + p.max(0))

    np.testing.assert_allclose(centred(rec.landmarks), centred(expected), atol=1e-3)
    # the landmark box is centred in the image
    np.testing.assert_allclose(0.5 * (rec.landmarks.min(0) + rec.landmarks.max(0)), 48, atol=1e-3)


def test_nose_tip_moves_right_with_yaw_as_the_projection_predicts():
    yaws = np.linspace(-90, 90, 13)
    measured, predicted = [], []
    for yaw in yaws:
        ds = SynthFaces(1, 1, image_size=64, seed=4, **posed(yaw))
        rec = ds[0]
        ears = rec.landmarks[[82, 83]].mean(0)
        measured.append(rec.landmarks[30, 0] - ears[0])
        v = ds.identity(0).vertices
        rotated = v @ reference_rotation(yaw, 0, 0).T
        predicted.append(
            rec.meta["scale_px_per_mm"] * (rotated[30, 0] - rotated[[82, 83], 0].mean())
        )
    assert np.all(np.diff(measured) > 0)
    np.testing.assert_allclose(measured, predicted, atol=1e-3)
    assert measured[0] < 0 < measured[-1]


def test_pitch_and_roll_signs():
    up = SynthFaces(1, 1, image_size=64, **posed(pitch=30))[0].landmarks
    level = SynthFaces(1, 1, image_size=64, **posed())[0].landmarks
    assert up[30, 1] - up[82, 1] < level[30, 1] - level[82, 1]  # nose rises relative to ears
    cw = SynthFaces(1, 1, image_size=64, **posed(roll=20))[0].landmarks
    assert cw[69, 1] > cw[68, 1]  # clockwise: the image-right pupil goes down


def test_geometry_strength_zero_gives_everyone_the_mean_frontal_landmarks():
    same = SynthFaces(5, 1, image_size=64, geometry_strength=0.0, **STILL)
    lmk = np.stack([same[i].landmarks for i in range(5)])
    np.testing.assert_allclose(lmk, np.broadcast_to(lmk[0], lmk.shape), atol=1e-4)
    varied = SynthFaces(5, 1, image_size=64, **STILL)
    lmk = np.stack([varied[i].landmarks for i in range(5)])
    assert np.abs(lmk - lmk[0]).max() > 1.0


def test_texture_strength_zero_gives_everyone_the_same_texture():
    same = SynthFaces(3, 1, image_size=48, texture_strength=0.0)
    np.testing.assert_array_equal(same.identity(0).texture, same.identity(2).texture)
    varied = SynthFaces(3, 1, image_size=48)
    assert not np.array_equal(varied.identity(0).texture, varied.identity(2).texture)


def test_frontal_symmetric_face_is_mirror_symmetric():
    rec = SynthFaces(2, 1, image_size=112, **SYMMETRIC)[1]
    np.testing.assert_allclose(LMK84.flip(rec.landmarks, 112), rec.landmarks, atol=1e-3)
    diff = np.abs(rec.image[:, ::-1].astype(int) - rec.image.astype(int)).max(-1)
    assert diff.mean() < 1.0
    assert (diff > 30).mean() < 0.01


@pytest.mark.parametrize("yaw", [25.0, 60.0, 85.0])
def test_flipped_image_and_landmarks_match_the_mirrored_pose(yaw):
    right = SynthFaces(1, 1, image_size=96, **{**SYMMETRIC, **posed(yaw)})[0]
    left = SynthFaces(1, 1, image_size=96, **{**SYMMETRIC, **posed(-yaw)})[0]
    np.testing.assert_allclose(LMK84.flip(right.landmarks, 96), left.landmarks, atol=1e-3)
    diff = np.abs(right.image[:, ::-1].astype(int) - left.image.astype(int)).max(-1)
    assert diff.mean() < 1.0
    assert (diff > 30).mean() < 0.01
    # and the turned face is not itself symmetric (the test can tell)
    assert np.abs(LMK84.flip(right.landmarks, 96) - right.landmarks).max() > 5.0


def test_eye_landmarks_fall_inside_the_rendered_eyes():
    hits = total = 0
    for yaw in (-25.0, 0.0, 25.0):
        ds = SynthFaces(6, 2, image_size=96, seed=1, yaw_range=(yaw, yaw))
        for c in range(6):
            for k in range(2):
                rec = ds.render(c, k, debug_regions=True)
                regions = rec.meta["regions"]
                assert regions.shape == (96, 96)
                for eye, pupil, name in ((LMK84.left_eye, 68, "left_eye"),
                                         (LMK84.right_eye, 69, "right_eye")):  # fmt: skip
                    label = REGION[name]
                    j, i = rec.landmarks[pupil].astype(int)
                    assert regions[i, j] == label  # the pupil is well inside
                    for p in eye:
                        j, i = rec.landmarks[p].astype(int)
                        hits += regions[i, j] == label
                        total += 1
                        assert (regions[i - 1 : i + 2, j - 1 : j + 2] == label).any()
    assert hits / total > 0.97


def test_regions_cover_the_face_parts():
    rec = SynthFaces(1, 1, image_size=96, **STILL).render(0, 0, debug_regions=True)
    regions = rec.meta["regions"]
    assert set(np.unique(regions)) >= {REGION[n] for n in rec.meta["region_names"]} - {
        REGION["hair"]
    }
    j, i = rec.landmarks[30].astype(int)
    assert regions[i, j] == REGION["nose"]
    j, i = rec.landmarks[[51, 57]].mean(0).astype(int)
    assert regions[i, j] == REGION["mouth"]
    assert regions[0, 0] == REGION["background"] or regions[0, 0] == REGION["hair"]


def test_landmarks_finite_and_inside_the_image_for_moderate_poses():
    ds = SynthFaces(6, 4, image_size=64, seed=9, yaw_range=(-45, 45))
    for i in range(len(ds)):
        lmk = ds[i].landmarks
        assert np.isfinite(lmk).all()
        assert (lmk >= 0).all() and (lmk <= 64).all()
    extreme = SynthFaces(2, 2, image_size=48, yaw_range=(-90, 90), pitch_range=(-45, 45),
                         roll_range=(-90, 90), expression_strength=2.0)  # fmt: skip
    for i in range(len(extreme)):
        rec = extreme[i]
        assert np.isfinite(rec.landmarks).all() and rec.image.shape == (48, 48, 3)


# -- model internals ----------------------------------------------------------------------


def test_mesh_is_symmetric_manifold_and_keeps_eye_and_lip_outlines():
    mesh = face_mesh()
    assert missing_required_edges(mesh) == []
    assert (signed_area2(unwrap(layout_vertices()), mesh.triangles) > 0).all()
    tris = {tuple(sorted(t)) for t in mesh.triangles.tolist()}
    assert {tuple(sorted(VERTEX_FLIP[list(t)])) for t in tris} == tris
    edges: dict[tuple[int, int], int] = {}
    for t in mesh.triangles.tolist():
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            edges[(min(a, b), max(a, b))] = edges.get((min(a, b), max(a, b)), 0) + 1
    assert max(edges.values()) == 2


def test_mean_shape_and_modes_are_mirror_symmetric():
    np.testing.assert_allclose(mirror(MEAN_VERTICES), MEAN_VERTICES, atol=1e-12)
    for modes in (IDENTITY_MODES, EXPRESSION_MODES):
        np.testing.assert_allclose(mirror(modes), modes, atol=1e-12)
    # the frontal mean face faces the camera: nose tip in front of the eyes and ears
    assert MEAN_VERTICES[30, 2] > MEAN_VERTICES[[36, 45, 82, 83], 2].max()
    assert MEAN_VERTICES[36, 0] < 0 < MEAN_VERTICES[45, 0]  # left = smaller x


def test_pose_distributions():
    uni = Knobs(yaw_range=(-60, 60))
    yaws = [sample_scene(0, 0, k, uni, 64).yaw for k in range(3000)]
    assert stats.kstest(yaws, stats.uniform(-60, 120).cdf).pvalue > 1e-3
    normal = Knobs(yaw_range=(-60, 60), pose_distribution="normal")
    yaws = np.array([sample_scene(0, 0, k, normal, 64).yaw for k in range(3000)])
    assert (np.abs(yaws) <= 60).all()
    reference = stats.truncnorm(-2, 2, loc=0, scale=30)
    assert stats.kstest(yaws, reference.cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"geometry_strength": -1.0}, "geometry_strength"),
        ({"texture_strength": 5.0}, "texture_strength"),
        ({"yaw_range": (10, -10)}, "yaw_range"),
        ({"yaw_range": (-100, 0)}, "yaw_range"),
        ({"yaw_range": 30}, "yaw_range"),
        ({"pitch_range": (0, 60)}, "pitch_range"),
        ({"roll_range": ("a", 1)}, "roll_range"),
        ({"pose_distribution": "gauss"}, "pose_distribution"),
        ({"expression_strength": float("nan")}, "expression_strength"),
        ({"scale_jitter": -0.1}, "scale_jitter"),
        ({"shift_jitter": 1.0}, "shift_jitter"),
        ({"lighting": 2.0}, "lighting"),
        ({"background": "photo"}, "background"),
        ({"blur": -1.0}, "blur"),
        ({"noise": True}, "noise"),
        ({"landmark_noise": -0.5}, "landmark_noise"),
        ({"landmark_noise": float("inf")}, "landmark_noise"),
        ({"num_identities": 0}, "num_identities"),
        ({"images_per_identity": 2.5}, "images_per_identity"),
        ({"image_size": 8}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_knobs_raise_naming_the_knob(kwargs, name):
    args = {"num_identities": 2, "images_per_identity": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        SynthFaces(**args)


def test_landmark_noise_perturbs_labels_only_with_the_stated_sd():
    """The image is the exact one; the labels are the exact landmarks plus an error that is
    fixed per image, zero-mean, with sd landmark_noise * size / 112 (chi-square bounds)."""
    size, sd_112 = 64, 3.0
    exact = SynthFaces(6, 4, image_size=size, seed=3)
    noisy = SynthFaces(6, 4, image_size=size, seed=3, landmark_noise=sd_112)
    errors = []
    for index in range(len(exact)):
        a, b = exact[index], noisy[index]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(b.meta["landmarks_exact"], a.landmarks)
        assert b.landmarks.dtype == np.float32
        np.testing.assert_array_equal(noisy[index].landmarks, b.landmarks)  # fixed per image
        errors.append(b.landmarks - a.landmarks)
    errors = np.concatenate(errors).ravel().astype(np.float64)
    sd = sd_112 * size / 112
    n = errors.size  # 24 images x 84 landmarks x 2 coordinates
    assert abs(errors.mean()) < 4 * sd / np.sqrt(n)
    low, high = stats.chi2.ppf([1e-4, 1 - 1e-4], n)
    assert low <= (errors**2).sum() / sd**2 <= high
    assert "landmarks_exact" not in exact[0].meta
    # different images get different errors
    assert not np.allclose(errors[: 84 * 2], errors[84 * 2 : 2 * 84 * 2])
