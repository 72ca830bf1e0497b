"""Benchmark runs on tiny files in the genuine formats, against direct computations.

Images are flat colour patches: the colour encodes the image's number, and an "oracle"
embedding maps the mean colour back to a known vector E[number]. Flip TTA leaves a flat
patch unchanged, so every benchmark's embedding of image n is E[n] / |E[n]|, and the
expected metrics are computed here from E and the test's own pair lists, by brute force or
by the protocol functions called directly.
"""

import cv2
import numpy as np
import pytest
import torch

from balanced_align.data.formats import (
    read_bin,
    read_distractor_list,
    read_lfw_pairs,
    read_pose_list,
    read_probe_list,
    read_video_pairs,
    write_bin,
    write_distractor_list,
    write_lfw_pairs,
    write_pose_list,
    write_probe_list,
    write_video_pairs,
)
from balanced_align.data.synthfaces import SynthFaces
from balanced_align.evaluation import benchmarks as bm
from balanced_align.evaluation import verification_accuracy

STEP = 30  # colour levels between codes: survives JPEG on flat patches


def colour(n: int) -> np.ndarray:
    return np.array(
        [40 + STEP * (n % 6), 40 + STEP * (n // 6 % 6), 40 + STEP * (n // 36)], np.uint8
    )


def patch(n: int, size: int = 20) -> np.ndarray:
    return np.broadcast_to(colour(n), (size, size, 3)).copy()


def save(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


class Oracle:
    """embed(images) = table[number encoded by each image's mean colour]."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.as_tensor(table, dtype=torch.float32)
        self.batch_sizes: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        assert images.ndim == 4 and images.shape[1] == 3
        assert images.min() >= -1 and images.max() <= 1
        self.batch_sizes.append(images.shape[0])
        rgb = (images.mean(dim=(2, 3)) + 1) * 127.5
        code = ((rgb - 40) / STEP).round().long()
        return self.table[code[:, 0] + 6 * code[:, 1] + 36 * code[:, 2]]


def table(identity_of: np.ndarray, dim: int = 12, noise: float = 0.9, seed: int = 0):
    """E[n] = centre[identity_of[n]] + noise; returns (E, unit-norm E)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(int(identity_of.max()) + 1, dim))
    emb = centres[identity_of] + noise * rng.normal(size=(len(identity_of), dim))
    return emb.astype(np.float32), emb / np.linalg.norm(emb, axis=1, keepdims=True)


OPTIONS = bm.EmbedOptions(image_size=16, batch_size=5, num_workers=2)


def assert_metrics(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def expected_verification(unit, a, b, same, folds) -> dict:
    res = verification_accuracy(unit[a], unit[b], same, folds=folds)
    return {
        "verif_acc": res.accuracy_mean,
        "verif_acc_std": res.accuracy_std,
        "verif_auc": res.roc_auc,
        "tar@far=1e-1": res.tar_at_far[0.1],
    }


def test_lfw_pairs_file_and_tree(tmp_path):
    names = ["Ann_A", "Bob_B", "Cy_C", "Di_D", "Ed_E"]
    number = {(name, k): 4 * c + k - 1 for c, name in enumerate(names) for k in range(1, 5)}
    for (name, k), n in number.items():
        save(tmp_path / "lfw" / name / f"{name}_{k:04d}.jpg", patch(n, 25))
    rng = np.random.default_rng(1)
    sets, a, b, same, folds = [], [], [], [], []
    for s in range(3):
        matched, mismatched = [], []
        for _ in range(3):
            name = names[rng.integers(5)]
            k1, k2 = rng.choice(np.arange(1, 5), 2, replace=False)
            matched.append((name, k1, k2))
        for _ in range(3):
            c1, c2 = rng.choice(5, 2, replace=False)
            k1, k2 = rng.integers(1, 5, 2)
            mismatched.append((names[c1], k1, names[c2], k2))
        sets.append((matched, mismatched))
        for name, k1, k2 in matched:
            a.append(number[name, k1]), b.append(number[name, k2]), same.append(True)
        for n1, k1, n2, k2 in mismatched:
            a.append(number[n1, k1]), b.append(number[n2, k2]), same.append(False)
        folds += [s] * 6
    write_lfw_pairs(tmp_path / "pairs.txt", sets)
    emb, unit = table(np.arange(20) // 4)
    oracle = Oracle(emb)

    pairs = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "lfw")
    got = bm.lfw_benchmark(oracle, pairs, OPTIONS)

    expected = expected_verification(unit, a, b, np.array(same), np.array(folds))
    assert_metrics(got, expected)
    assert got["num_pairs"] == 18 and got["num_folds"] == 3
    # each listed image embedded once (plus its mirror), in batches of at most 5
    assert sum(oracle.batch_sizes) == 2 * pairs.num_images and max(oracle.batch_sizes) <= 5


def test_lfw_view1_file_gets_contiguous_folds(tmp_path):
    for n in range(8):
        save(tmp_path / "lfw" / f"P{n // 2}" / f"P{n // 2}_{n % 2 + 1:04d}.jpg", patch(n))
    matched = [(f"P{c}", 1, 2) for c in range(4)]
    mismatched = [(f"P{c}", 1, f"P{(c + 1) % 4}", 2) for c in range(4)]
    write_lfw_pairs(tmp_path / "dev.txt", [(matched, mismatched)], single_number=True)
    emb, unit = table(np.arange(8) // 2, noise=1.5, seed=3)
    got = bm.lfw_benchmark(
        Oracle(emb), read_lfw_pairs(tmp_path / "dev.txt", tmp_path / "lfw"), OPTIONS, n_folds=4
    )
    a = [0, 2, 4, 6, 0, 2, 4, 6]
    b = [1, 3, 5, 7, 3, 5, 7, 1]
    same = np.array([True] * 4 + [False] * 4)
    assert_metrics(got, expected_verification(unit, a, b, same, np.repeat(np.arange(4), 2)))
    assert got["num_folds"] == 4


def test_bin_file_contiguous_folds(tmp_path):
    rng = np.random.default_rng(2)
    identity = rng.integers(0, 4, 24)
    emb, unit = table(identity, seed=2)
    same = identity[0::2] == identity[1::2]
    write_bin(tmp_path / "tiny.bin", [patch(n) for n in range(24)], same, ext=".png")
    got = bm.bin_benchmark(Oracle(emb), read_bin(tmp_path / "tiny.bin"), OPTIONS, n_folds=4)
    folds = np.repeat(np.arange(4), 3)  # KFold(4) over 12 pairs in file order
    expected = expected_verification(unit, np.arange(0, 24, 2), np.arange(1, 24, 2), same, folds)
    assert_metrics(got, expected)
    assert got["num_pairs"] == 12 and got["num_images"] == 24


def test_embedding_is_flip_tta_of_resized_images(tmp_path):
    """A linear, not mirror-symmetric embed: normalise(W x + W flip(x)) of the resized image."""
    faces = SynthFaces(3, 2, image_size=24, seed=4)
    images = [faces[i].image for i in range(6)]
    write_bin(tmp_path / "faces.bin", images, [True, False, True], ext=".png")
    data = read_bin(tmp_path / "faces.bin")
    w = np.random.default_rng(0).normal(size=(3 * 16 * 16, 8)).astype(np.float32)

    def linear(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1) @ torch.from_numpy(w)

    expected = []
    for image in images:
        small = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1
        e = x.reshape(-1) @ w + x[:, :, ::-1].reshape(-1) @ w
        expected.append(e / np.linalg.norm(e))
    for workers in (0, 2):
        options = bm.EmbedOptions(image_size=16, batch_size=4, num_workers=workers)
        got = bm.embed_all(linear, len(data.images), data.images.__getitem__, options)
        np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)
    plain = bm.embed_all(linear, 6, data.images.__getitem__, bm.EmbedOptions(16, flip=False))
    assert np.abs(plain - np.stack(expected)).max() > 1e-2  # the mirror term matters


def test_video_mean_of_frame_embeddings(tmp_path):
    counts = {"Ann/1": 3, "Ann/2": 2, "Bob/1": 4, "Bob/2": 1, "Cy/1": 2, "Cy/2": 3}
    frame_ids, n = {}, 0
    for video, count in counts.items():
        for k in range(count):
            save(tmp_path / "ytf" / video / f"frame_{k}.png", patch(n))
            frame_ids.setdefault(video, []).append(n)
            n += 1
    identity = np.concatenate([[i // 2] * c for i, c in enumerate(counts.values())])
    emb, unit = table(identity, noise=1.3, seed=5)
    rows = [
        (1, "Ann/1", "Ann/2", True),
        (1, "Bob/1", "Cy/2", False),
        (2, "Bob/1", "Bob/2", True),
        (2, "Ann/2", "Cy/1", False),
        (3, "Cy/1", "Cy/2", True),
        (3, "Ann/1", "Bob/2", False),
    ]
    write_video_pairs(tmp_path / "splits.txt", rows)
    got = bm.video_benchmark(
        Oracle(emb), read_video_pairs(tmp_path / "splits.txt", tmp_path / "ytf"), OPTIONS
    )
    mean = {
        v: unit[ids].mean(0) / np.linalg.norm(unit[ids].mean(0)) for v, ids in frame_ids.items()
    }
    video = np.stack([mean[v] for v in counts])
    index = {v: i for i, v in enumerate(counts)}
    a = [index[r[1]] for r in rows]
    b = [index[r[2]] for r in rows]
    same = np.array([r[3] for r in rows])
    assert_metrics(got, expected_verification(video, a, b, same, np.array([1, 1, 2, 2, 3, 3])))
    assert got["num_videos"] == 6 and got["num_frames"] == 15


def brute_force_cmc(unit, probe_ids, labels, distractor_ids, ranks):
    hits, trials = dict.fromkeys(ranks, 0), 0
    d = unit[distractor_ids]
    for j in range(len(probe_ids)):
        for i in range(len(probe_ids)):
            if i == j or labels[i] != labels[j]:
                continue
            mate = unit[probe_ids[j]] @ unit[probe_ids[i]]
            rank = 1 + int((d @ unit[probe_ids[j]] >= mate).sum())
            trials += 1
            for r in ranks:
                hits[r] += rank <= r
    return {r: hits[r] / trials for r in ranks}, trials


@pytest.fixture
def megaface_files(tmp_path):
    probe_labels = ["id7"] * 3 + ["id2"] * 4 + ["id9"] * 3 + ["solo"]
    probe_paths = [f"{name}/{k}.jpg" for k, name in enumerate(probe_labels)]
    for n, path in enumerate(probe_paths):
        save(tmp_path / "facescrub" / path, patch(n))
    distractor_paths = [f"set {k // 10}/d{k}.png" for k in range(27)]  # a space in the path
    for k, path in enumerate(distractor_paths):
        save(tmp_path / "megaface" / path, patch(11 + k))
    write_probe_list(tmp_path / "probes.txt", probe_paths, probe_labels)
    write_distractor_list(tmp_path / "distractors.txt", distractor_paths)
    identity = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, *list(range(4, 31))])
    emb, unit = table(identity, noise=0.7, seed=6)
    return tmp_path, emb, unit


def test_megaface_rank1_and_cmc(megaface_files, monkeypatch):
    root, emb, unit = megaface_files
    probes = read_probe_list(root / "probes.txt")
    distractors = read_distractor_list(root / "distractors.txt")
    seen = []
    real = bm.megaface_rank1

    def spy(probe_emb, labels, distractor_emb, **kwargs):
        seen.append((type(distractor_emb), kwargs["chunk_size"]))
        return real(probe_emb, labels, distractor_emb, **kwargs)

    monkeypatch.setattr(bm, "megaface_rank1", spy)
    got = bm.megaface_benchmark(
        Oracle(emb),
        probes,
        distractors,
        OPTIONS,
        root / "out" / "features.npy",
        probe_root=root / "facescrub",
        distractor_root=root / "megaface",
        ranks=(1, 3, 5, 100),
        chunk_size=4,
    )
    labels = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3]
    cmc, trials = brute_force_cmc(unit, np.arange(11), labels, np.arange(11, 38), (1, 3, 5))
    assert 0 < cmc[1] < 1  # a non-trivial case
    assert got["rank1"] == pytest.approx(cmc[1]) and got["cmc@3"] == pytest.approx(cmc[3])
    assert got["cmc@5"] == pytest.approx(cmc[5]) and "cmc@100" not in got  # > 27 distractors
    assert got["num_pairs"] == trials == 3 * 2 + 4 * 3 + 3 * 2
    assert got["num_distractors"] == 27 and got["num_probes"] == 11
    # distractors were streamed from the .npy memory map, in chunks
    assert seen == [(np.memmap, 4)]
    features = np.load(root / "out" / "features.npy")
    np.testing.assert_allclose(features, unit[11:38], atol=1e-6)


def test_megaface_faiss_backend_agrees(megaface_files):
    root, emb, _ = megaface_files
    probes = read_probe_list(root / "probes.txt")
    distractors = read_distractor_list(root / "distractors.txt")
    kwargs = {
        "probe_root": root / "facescrub",
        "distractor_root": root / "megaface",
        "ranks": (1, 2, 5, 10),
        "chunk_size": 5,
    }
    builtin = bm.megaface_benchmark(
        Oracle(emb), probes, distractors, OPTIONS, root / "a.npy", backend="builtin", **kwargs
    )
    faiss = bm.megaface_benchmark(
        Oracle(emb), probes, distractors, OPTIONS, root / "b.npy", backend="faiss", **kwargs
    )
    assert faiss == builtin
    assert len({builtin[k] for k in ("rank1", "cmc@2", "cmc@5", "cmc@10")}) > 1
    with pytest.raises(ValueError, match="backend must be one of"):
        bm.megaface_benchmark(
            Oracle(emb), probes, distractors, OPTIONS, root / "c.npy", backend="annoy", **kwargs
        )


def test_faiss_topk_matches_sorting():
    rng = np.random.default_rng(7)
    probes = rng.normal(size=(6, 5)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    distractors = rng.normal(size=(23, 5)).astype(np.float32) * 3
    unit = distractors / np.linalg.norm(distractors, axis=1, keepdims=True)
    expected = -np.sort(-(probes @ unit.T), axis=1)[:, :4]
    np.testing.assert_allclose(
        bm.faiss_topk(probes, distractors, 4, chunk_size=3), expected, atol=1e-6
    )


def test_frontal_gallery_smallest_abs_yaw_first_on_ties():
    labels = np.array([1, 0, 1, 0, 1, 0, 2])
    yaws = np.array([30, -15, -5, 15, 5, 45, -60])
    assert bm.frontal_gallery(labels, yaws).tolist() == [1, 2, 6]


def test_pose_rank1_per_yaw_bin(tmp_path):
    yaws = {
        "A": [-30, 5, 15, -45, 60, 90],
        "B": [15, -15, 30, 45, -60, 75],
        "C": [0, -30, 30, -90, 44, 16],
        "D": [-2, 15, -45, 60, -75, 90],
    }
    paths, names, yaw_list = [], [], []
    for name, values in yaws.items():
        for k, yaw in enumerate(values):
            paths.append(f"{name}/{k}.png")
            names.append(name)
            yaw_list.append(yaw)
    for n, path in enumerate(paths):
        save(tmp_path / "mpie" / path, patch(n))
    write_pose_list(tmp_path / "poses.txt", paths, names, yaw_list)
    identity = np.repeat(np.arange(4), 6)
    emb, unit = table(identity, noise=1.0, seed=8)
    got = bm.pose_benchmark(
        Oracle(emb), read_pose_list(tmp_path / "poses.txt"), OPTIONS, root=tmp_path / "mpie"
    )
    gallery = [1, 6, 12, 18]  # |yaw| 5; 15 (first of the tie with -15); 0; 2
    bins = np.array([15, 30, 45, 60, 75, 90])
    hits, counts = dict.fromkeys(bins, 0), dict.fromkeys(bins, 0)
    for n in set(range(24)) - set(gallery):
        gap = np.abs(abs(yaw_list[n]) - bins)
        if gap.min() > 7.5:
            continue
        b = bins[gap.argmin()]
        counts[b] += 1
        hits[b] += identity[gallery[int(np.argmax(unit[gallery] @ unit[n]))]] == identity[n]
    for b in bins:
        assert got[f"count_yaw{b}"] == counts[b]
        assert got[f"rank1_yaw{b}"] == pytest.approx(hits[b] / counts[b])
    assert got["rank1_mean"] == pytest.approx(np.mean([hits[b] / counts[b] for b in bins]))
    assert 0 < got["rank1_mean"] < 1
    assert got["num_gallery"] == 4 and got["num_probes"] == 20 and got["gallery_max_abs_yaw"] == 15


def test_missing_files_are_named(tmp_path):
    (tmp_path / "root").mkdir()
    save(tmp_path / "root" / "a.png", patch(0))
    bm.check_files(["a.png"], tmp_path / "root", "probes")
    with pytest.raises(FileNotFoundError, match=r"probes: image file\(s\) missing.*b\.png"):
        bm.check_files(["a.png", "b.png"], tmp_path / "root", "probes")
    with pytest.raises(ValueError, match="batch_size"):
        bm.EmbedOptions(image_size=16, batch_size=0)
