"""IJB-B/C 1:1 verification on a tiny set written in the published layout.

The expected numbers are computed here independently: each face is aligned by its own five
points, embedded by the test's linear "model" in numpy, pooled per (template, media) and per
template with explicit loops, scored by cosine, and the TARs come from
``sklearn.metrics.roc_curve``.
"""

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve as sk_roc_curve

from balanced_align.core.schema import get_schema
from balanced_align.data.formats import read_ijb, write_ijb
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluation import benchmarks as bm
from balanced_align.evaluation import ijb
from balanced_align.preprocess.affine2d import affine2d_align

SIZE = 24
DIM = 8
IDENTITIES, PER_IDENTITY = 5, 5


def align_to(size: int):
    """Affine2D of a loose crop by its five points onto a ``size`` crop: (crop, points)."""

    def align(image, points):
        crop, aligned, _ = affine2d_align(image, points, schema="five", size=size)
        return crop, aligned

    return align


align = align_to(SIZE)


class Linear:
    """embed(images (B, 3, S, S)) = flattened images @ W; records the batch sizes."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weight = rng.normal(size=(3 * SIZE * SIZE, DIM))
        self.batch_sizes: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(images.shape[0])
        flat = images.reshape(images.shape[0], -1).double()
        return (flat @ torch.from_numpy(self.weight)).float()

    def numpy(self, crop: np.ndarray) -> np.ndarray:
        """Flip-TTA unit embedding of an (S, S, 3) uint8 crop, in numpy."""
        x = crop.astype(np.float64) / 127.5 - 1.0
        chw = x.transpose(2, 0, 1)
        e = chw.reshape(-1) @ self.weight + chw[:, :, ::-1].reshape(-1) @ self.weight
        return e / np.linalg.norm(e)


def write_ijb_fixture(root, image_size: int = 48):
    """IDENTITIES × PER_IDENTITY SynthFaces faces in the IJB-C layout under ``root``; per
    identity two templates: t = 10c (faces 0, 1 in media 7c, face 2 in media 7c + 1) and
    t = 10c + 1 (face 3 in media 7c, the same media id as in the first template, face 4 in
    media 7c + 2). Every pair of templates is a trial. Returns (rows, points, images, pairs)."""
    faces = SynthFaces(IDENTITIES, PER_IDENTITY, image_size=image_size, seed=3)
    schema = get_schema("lmk84")
    rows, points, images = [], [], {}
    for c in range(IDENTITIES):
        layout = [(10 * c, 7 * c), (10 * c, 7 * c), (10 * c, 7 * c + 1)]
        layout += [(10 * c + 1, 7 * c), (10 * c + 1, 7 * c + 2)]
        for k, (template, media) in enumerate(layout):
            record = faces[c * PER_IDENTITY + k]
            name = f"{c * PER_IDENTITY + k + 1}.png"
            images[name] = record.image
            rows.append((name, template, media))
            points.append(schema.five_points(record.landmarks))
    templates = sorted({t for _, t, _ in rows})
    pairs = [
        (a, b, int(a // 10 == b // 10)) for i, a in enumerate(templates) for b in templates[i + 1 :]
    ]
    order = np.random.default_rng(0).permutation(len(rows))  # the file order is not grouped
    rows = [rows[i] for i in order]
    points = np.stack([points[i] for i in order])
    write_ijb(root, "ijbc", rows, points, pairs, scores=np.linspace(0.5, 1, len(rows)))
    for name, image in images.items():
        cv2.imwrite(str(root / "loose_crop" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return rows, points, images, pairs


@pytest.fixture(scope="module")
def ijb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("IJBC")
    return (root, *write_ijb_fixture(root))


def reference(rows, points, images, pairs, model: Linear):
    """Template pair scores (P,) by explicit loops over templates and media."""
    face_emb = {
        name: model.numpy(align(images[name], p)[0]) for (name, _, _), p in zip(rows, points)
    }
    feature = {}
    for template in {t for _, t, _ in rows}:
        media_means = []
        for media in sorted({m for _, t, m in rows if t == template}):
            members = [face_emb[n] for n, t, m in rows if t == template and m == media]
            media_means.append(np.mean(members, axis=0))
        f = np.mean(media_means, axis=0)
        feature[template] = f / np.linalg.norm(f)
    return np.array([feature[a] @ feature[b] for a, b, _ in pairs])


def test_read_ijb_layout(ijb_root):
    root, rows, points, _, pairs = ijb_root
    data = read_ijb(root, "ijbc")
    assert data.names == [r[0] for r in rows]
    np.testing.assert_array_equal(data.templates, [r[1] for r in rows])
    np.testing.assert_array_equal(data.media, [r[2] for r in rows])
    np.testing.assert_allclose(data.landmarks, points, atol=1e-3)
    np.testing.assert_array_equal(data.pairs, [p[:2] for p in pairs])
    np.testing.assert_array_equal(data.labels, [bool(p[2]) for p in pairs])
    np.testing.assert_allclose(data.scores, np.linspace(0.5, 1, len(rows)), atol=1e-5)
    # the published file is in OpenCV's pixel-centre frame: 0.5 px less than ours
    first = (root / "meta" / "ijbc_name_5pts_score.txt").read_text().split()
    assert float(first[1]) == pytest.approx(points[0, 0, 0] - 0.5, abs=1e-3)


@pytest.mark.parametrize("batch_size", [4, 64])
def test_ijb_benchmark_matches_numpy_and_sklearn(ijb_root, tmp_path, batch_size):
    root, rows, _, images, pairs = ijb_root
    data = read_ijb(root, "ijbc")
    model = Linear()
    options = bm.EmbedOptions(image_size=SIZE, batch_size=batch_size, num_workers=1)
    got = ijb.ijb_benchmark(model, data, options, align, roc_path=tmp_path / "roc.csv")

    scores = reference(rows, data.landmarks, images, pairs, model)
    labels = np.array([p[2] for p in pairs])
    fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    for far in ijb.IJB_FARS:
        name = f"tar@far=1e{round(np.log10(far))}"
        assert got[name] == pytest.approx(tpr[fpr <= far].max(), abs=1e-9), name
    from sklearn.metrics import roc_auc_score

    assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert got["num_templates"] == 2 * IDENTITIES
    assert got["num_media"] == 4 * IDENTITIES  # media 7c counts once in each template
    assert got["num_pairs"] == len(pairs)
    # streamed: the embedder never sees more than a batch (twice per batch: flip TTA)
    assert max(model.batch_sizes) <= batch_size
    assert len(model.batch_sizes) == 2 * -(-len(rows) // batch_size)
    saved = np.loadtxt(tmp_path / "roc.csv", delimiter=",", skiprows=1)
    assert saved.shape == (len(ijb.ROC_GRID), 3)
    for far, tar, _ in saved:
        assert tar == pytest.approx(tpr[fpr <= far * (1 + 1e-9)].max(), abs=1e-6)


def test_pooling_keeps_per_media_sums_only():
    """Batches in any order give the numpy pooling; the state is (G, D), not per face."""
    rng = np.random.default_rng(1)
    templates = np.array([5, 5, 5, 9, 9, 2, 2, 2, 2])
    media = np.array([1, 1, 3, 1, 4, 8, 8, 8, 6])
    emb = rng.normal(size=(len(templates), 4))
    keys = sorted(set(zip(templates.tolist(), media.tolist())))
    group = np.array([keys.index(k) for k in zip(templates.tolist(), media.tolist())])
    pooling = ijb.MediaPooling(group, np.array([t for t, _ in keys]))
    order = rng.permutation(len(templates))
    for rows in np.array_split(order, 3):
        pooling.add(rows, emb[rows])
    assert pooling.sums.shape == (len(keys), 4)
    ids, features = pooling.templates()
    np.testing.assert_array_equal(ids, [2, 5, 9])
    for t, f in zip(ids, features):
        means = [
            emb[(templates == t) & (media == m)].mean(0) for m in np.unique(media[templates == t])
        ]
        expected = np.mean(means, axis=0)
        np.testing.assert_allclose(f, expected / np.linalg.norm(expected), atol=1e-6)


def test_roc_curve_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 20, 300) / 20.0
    labels = rng.random(300) < 0.3
    fpr, tpr, thr = ijb.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


def test_bad_files_name_the_file_and_line(ijb_root, tmp_path):
    _, rows, points, _, pairs = ijb_root
    write_ijb(tmp_path, "ijbb", rows, points, [*pairs, (0, 99999, 1)])
    with pytest.raises(ValueError, match=r"ijbb_template_pair_label\.txt.*99999"):
        read_ijb(tmp_path, "ijbb")
    lmk = tmp_path / "meta" / "ijbb_name_5pts_score.txt"
    write_ijb(tmp_path, "ijbb", rows, points, pairs)
    lmk.write_text("\n".join(lmk.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"5-point landmark file.*no row for 1"):
        read_ijb(tmp_path, "ijbb")
    faces = tmp_path / "meta" / "ijbb_face_tid_mid.txt"
    faces.write_text(faces.read_text() + "x.jpg 1\n")
    with pytest.raises(ValueError, match=r"face_tid_mid\.txt.* line \d+: expected 3 fields"):
        read_ijb(tmp_path, "ijbb")
    write_ijb(tmp_path, "ijbb", rows, points, pairs)
    lines = faces.read_text().splitlines()
    faces.write_text("\n".join([*lines[:2], f"{rows[2][0]} ten 1", *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match=r"face_tid_mid\.txt.* line 3: not a number"):
        read_ijb(tmp_path, "ijbb")
    write_ijb(tmp_path, "ijbb", rows, points, pairs)
    lines = lmk.read_text().splitlines()
    name, *values = lines[3].split()
    lmk.write_text("\n".join([*lines[:3], " ".join([name, "nan", *values[1:]]), *lines[4:]]))
    with pytest.raises(ValueError, match=r"5pts_score\.txt' line 4: non-finite"):
        read_ijb(tmp_path, "ijbb")


def test_roc_auc_needs_no_numpy_2(ijb_root, tmp_path, monkeypatch):
    """pyproject allows numpy >= 1.24, which has no ``np.trapezoid``: the AUC must not need
    it (else the run fails after embedding the whole set)."""
    monkeypatch.delattr(np, "trapezoid", raising=False)
    root, rows, _, images, pairs = ijb_root
    data = read_ijb(root, "ijbc")
    model = Linear()
    options = bm.EmbedOptions(image_size=SIZE, batch_size=64, num_workers=1)
    got = ijb.ijb_benchmark(model, data, options, align)
    scores = reference(rows, data.landmarks, images, pairs, model)
    labels = np.array([p[2] for p in pairs], bool)
    # AUC = P(score of a same pair > score of a different pair), ties counting one half
    same, different = scores[labels][:, None], scores[~labels][None, :]
    expected = float(np.mean((same > different) + 0.5 * (same == different)))
    assert got["roc_auc"] == pytest.approx(expected, abs=1e-6)
