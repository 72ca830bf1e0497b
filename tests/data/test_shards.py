"""Tar shards: exact round trip, exactly-once splits over ranks × workers, epochs, errors, CLI."""

import json
import math
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from balanced_align.data.record import FaceRecord
from balanced_align.data.shards import (
    ShardError,
    ShardIndex,
    ShardLoader,
    ShardStream,
    convert_to_shards,
    main,
    write_shards,
)
from balanced_align.data.sources import write_landmark_table


def _tiny_records(count: int, seed: int = 0) -> list[FaceRecord]:
    rng = np.random.default_rng(seed)
    return [
        FaceRecord(
            image=rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
            landmarks=rng.uniform(0, 5, (5, 2)).astype(np.float32),
            label=i % 4,
            source=f"tiny/{i}",
        )
        for i in range(count)
    ]


def _write(tmp_path: Path, count: int, per_shard: int) -> Path:
    out = tmp_path / f"shards_{count}_{per_shard}"
    write_shards(_tiny_records(count), out, samples_per_shard=per_shard, image_format="png")
    return out


def _keys(items) -> list[int]:
    return [int(record.meta["key"]) for record in items]


def test_png_round_trip_is_exact_and_index_describes_the_set(tmp_path):
    from balanced_align.data.synthfaces import SynthFaces

    synth = SynthFaces(3, 3, image_size=32, seed=4)
    records = [synth[i] for i in range(len(synth))]
    records[4].yaw = float("nan")  # unknown pose survives as NaN
    paths = write_shards(records, tmp_path, samples_per_shard=4, image_format="png")
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    index = json.loads((tmp_path / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [4, 4, 1]
    assert index["total"] == 9 and index["num_classes"] == 3
    assert index["schema"] == "lmk84" and index["num_points"] == 84
    # WebDataset layout: KEY.png then KEY.json, keys in writing order
    with tarfile.open(paths[0]) as tar:
        names = tar.getnames()
    assert names[:4] == ["000000000.png", "000000000.json", "000000001.png", "000000001.json"]

    stream = ShardStream(tmp_path, shuffle_shards=False, shuffle_buffer=0)
    back = list(stream)
    assert len(back) == len(stream) == 9
    for original, read in zip(records, back):
        np.testing.assert_array_equal(read.image, original.image)
        assert read.landmarks.dtype == np.float32
        np.testing.assert_array_equal(read.landmarks, original.landmarks)
        assert read.label == original.label and read.source == original.source
        for name in ("yaw", "pitch", "roll"):
            np.testing.assert_equal(getattr(read, name), getattr(original, name))
        assert read.meta["expression"] == original.meta["expression"]


def test_jpeg_round_trip_keeps_landmarks_exact_and_pixels_close(tmp_path):
    from balanced_align.data.synthfaces import SynthFaces

    synth = SynthFaces(2, 2, image_size=64, seed=1)
    convert_to_shards(synth, tmp_path, samples_per_shard=3, quality=95, shuffle=False)
    back = list(ShardStream(tmp_path, shuffle_shards=False, shuffle_buffer=0))
    for i, read in enumerate(back):
        original = synth[i]
        np.testing.assert_array_equal(read.landmarks, original.landmarks)
        # the pixels are those of OpenCV's own quality-95 JPEG of the image
        bgr = cv2.cvtColor(original.image, cv2.COLOR_RGB2BGR)
        _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        np.testing.assert_array_equal(read.image, cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
        assert not np.array_equal(read.image, original.image)  # lossy indeed


@pytest.mark.parametrize(
    ("total", "per_shard"),
    [(20, 5), (23, 5), (7, 5), (23, 1), (4, 10)],
    ids=["4-shards-divide", "5-shards-uneven", "2-shards-4-readers", "23-shards", "1-shard"],
)
def test_two_ranks_two_workers_read_every_sample_exactly_once(tmp_path, total, per_shard):
    root = _write(tmp_path, total, per_shard)
    world, workers = 2, 2
    per_rank, batches_per_rank = [], []
    seen, seen_batched = [], []
    for rank in range(world):
        rank_keys = []
        rank_batches = 0
        for worker in range(workers):
            ids = dict(rank=rank, world_size=world, worker_id=worker, num_workers=workers)
            stream = ShardStream(root, shuffle_buffer=3, seed=7, **ids)
            rank_keys += _keys(stream)
            batched = ShardStream(root, shuffle_buffer=3, seed=7, batch_size=3, **ids)
            for batch in batched:
                assert 1 <= len(batch) <= 3
                seen_batched += _keys(batch)
                rank_batches += 1
            assert len(stream) == stream.num_samples and len(batched) == batched.num_batches()
        assert len(rank_keys) == len(stream)  # len: this rank's sample count
        assert rank_batches == len(batched)  # len: this rank's batch count
        per_rank.append(len(rank_keys))
        batches_per_rank.append(rank_batches)
        seen += rank_keys
    # disjoint and complete: every sample exactly once over the 2 x 2 readers
    assert sorted(seen) == list(range(total))
    assert sorted(seen_batched) == list(range(total))
    assert max(per_rank) - min(per_rank) <= 1
    # DDP ranks stay in step: the same number of batches on every rank
    assert batches_per_rank == [math.ceil(math.ceil(total / world) / 3)] * world


def test_dataloader_workers_per_simulated_rank_partition_the_set(tmp_path):
    root = _write(tmp_path, 23, 4)

    def as_index(record, index, epoch):
        return {"index": torch.tensor(index), "label": torch.tensor(record.label)}

    seen, lengths, counts = [], [], []
    for rank in range(2):
        stream = ShardStream(root, as_index, seed=3, batch_size=4, rank=rank, world_size=2)
        loader = ShardLoader(stream, num_workers=2)
        batches = list(loader)
        lengths.append(len(loader))
        counts.append(len(batches))
        seen += torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(seen) == list(range(23))
    assert lengths == counts == [3, 3]


def test_epoch_reshuffle_changes_the_order_not_the_set(tmp_path):
    root = _write(tmp_path, 40, 5)
    stream = ShardStream(root, seed=11, shuffle_buffer=8)
    first, again = _keys(stream), _keys(stream)
    assert first == again  # deterministic given (seed, epoch)
    stream.set_epoch(1)
    second = _keys(stream)
    assert second != first and sorted(second) == sorted(first) == list(range(40))
    assert list(stream.shard_order(0)) != list(stream.shard_order(1))
    assert _keys(ShardStream(root, seed=11, shuffle_buffer=8, epoch=1)) == second
    # without any shuffling the order is the writing order, whatever the epoch
    plain = ShardStream(root, shuffle_shards=False, shuffle_buffer=0, epoch=5)
    assert _keys(plain) == list(range(40))


def test_set_epoch_reaches_persistent_workers_through_lightnings_sampler_call(tmp_path):
    from lightning.fabric.utilities.data import _set_sampler_epoch

    root = _write(tmp_path, 24, 3)

    def as_index(record, index, epoch):
        return {"index": torch.tensor(index)}

    def order(loader):
        return torch.cat([b["index"] for b in loader]).tolist()

    stream = ShardStream(root, as_index, seed=5, shuffle_buffer=4, batch_size=4)
    loader = ShardLoader(stream, num_workers=2, persistent_workers=True)
    epoch0 = order(loader)
    _set_sampler_epoch(loader, 1)  # what Lightning's fit loop calls at each epoch start
    assert stream.epoch == 1
    epoch1 = order(loader)
    fresh = ShardStream(root, as_index, seed=5, shuffle_buffer=4, batch_size=4, epoch=1)
    assert epoch1 == order(ShardLoader(fresh, num_workers=2))
    assert epoch1 != epoch0 and sorted(epoch1) == sorted(epoch0) == list(range(24))


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ShardStream(tmp_path / "nowhere")
    root = _write(tmp_path, 10, 4)
    with pytest.raises(ValueError, match="give rank and world_size together"):
        ShardStream(root, rank=0)
    with pytest.raises(ValueError, match=r"worker_id 2 is not in \[0, num_workers=2\)"):
        ShardStream(root, worker_id=2, num_workers=2)
    with pytest.raises(ValueError, match="rank must be an integer"):
        ShardStream(root, rank=0.5, world_size=2)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_shards(_tiny_records(3), root)
    records = _tiny_records(3)
    records[1].image = records[1].image.astype(np.float32)
    with pytest.raises(ValueError, match=r"record 1 \(tiny/1\).*uint8"):
        write_shards(records, tmp_path / "bad")
    records = _tiny_records(3)
    records[2].landmarks = None
    with pytest.raises(ValueError, match=r"record 2.*one layout"):
        write_shards(records, tmp_path / "mixed")
    # a truncated shard is found and named when read
    shard = root / "shard-000001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"shard-000001\.tar"):
        list(ShardStream(root, shuffle_shards=False))
    (root / "shard-000002.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-000002\.tar"):
        ShardIndex.load(root / "index.json")


def test_cli_converts_an_identity_folder_tree_with_landmark_table(tmp_path):
    rng = np.random.default_rng(0)
    tree, table = tmp_path / "tree", {}
    for person in ("ann", "bob", "cy"):
        (tree / person).mkdir(parents=True)
        for k in range(3):
            rel = f"{person}/{k}.png"
            cv2.imwrite(str(tree / rel), rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
            table[rel] = rng.uniform(1, 9, (5, 2)).astype(np.float32)
    write_landmark_table(tmp_path / "lmk.csv", table)
    out = tmp_path / "shards"
    argv = ["--from-folder", str(tree), "--landmarks", str(tmp_path / "lmk.csv")]
    argv += ["--out", str(out), "--format", "png", "--samples-per-shard", "4"]
    assert main(argv) == 0
    index = ShardIndex.load(out)
    assert (index.total, index.num_classes, index.schema, index.counts) == (9, 3, "five", (4, 4, 1))
    records = list(ShardStream(out, shuffle_shards=False, shuffle_buffer=0))
    labels = {"ann": 0, "bob": 1, "cy": 2}
    for record in records:
        rel = record.meta["path"]
        bgr = cv2.imread(str(tree / rel))
        np.testing.assert_array_equal(record.image, bgr[:, :, ::-1])
        np.testing.assert_array_equal(record.landmarks, table[rel])
        assert record.label == labels[rel.split("/")[0]]
    written = [r.meta["path"] for r in records]
    assert sorted(written) == sorted(table) and written != sorted(table)  # shuffled order
    assert main(argv) == 2  # refuses to overwrite without --overwrite


def _index_only(record, index, epoch):
    return {"index": torch.tensor(index)}


def _index_and_epoch(record, index, epoch):
    return {"index": torch.tensor(index), "epoch": torch.tensor(epoch)}


def test_a_resumed_runs_first_iterator_follows_the_later_set_epoch(tmp_path):
    """Lightning creates a resumed run's first iterator, then calls set_epoch(e): with 2
    persistent workers the batches are still epoch e's, and the transform is told e."""
    from lightning.fabric.utilities.data import _set_sampler_epoch

    root = _write(tmp_path, 24, 3)
    kw = dict(seed=5, shuffle_buffer=4, batch_size=4)
    fresh = ShardStream(root, _index_and_epoch, epoch=1, **kw)
    epoch1 = list(ShardLoader(fresh, num_workers=2))
    assert all(b["epoch"].tolist() == [1] * len(b["epoch"]) for b in epoch1)
    epoch0 = list(ShardLoader(ShardStream(root, _index_and_epoch, **kw), num_workers=2))
    assert [b["index"].tolist() for b in epoch0] != [b["index"].tolist() for b in epoch1]

    resumed = ShardStream(root, _index_and_epoch, **kw)  # epoch 0 until Lightning says
    loader = ShardLoader(resumed, num_workers=2, persistent_workers=True)
    iterator = iter(loader)  # while restoring
    time.sleep(1.0)  # restoring takes a while: workers started by iter() would read epoch 0
    _set_sampler_epoch(loader, 1)
    got = list(iterator)
    assert [b["index"].tolist() for b in got] == [b["index"].tolist() for b in epoch1]
    assert all(b["epoch"].tolist() == [1] * len(b["epoch"]) for b in got)


def _ddp_rank(rank: int, world: int, root: str, rendezvous: str, results: str) -> None:
    import pickle

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    stream = ShardStream(root, _index_only, seed=2, batch_size=4)  # rank/world from the group
    # forked workers inherit the group (spawned ones get the pickled stream, checked below)
    loader = ShardLoader(stream, num_workers=2, multiprocessing_context="fork")
    indices = [b["index"].tolist() for b in loader]
    out = {"indices": indices, "len": len(loader)}
    frozen = pickle.loads(pickle.dumps(stream))  # what a spawned worker receives
    dist.destroy_process_group()
    out["frozen"] = list(frozen.rank_and_world())  # still (rank, 2) without the group
    out["live"] = list(stream.rank_and_world())  # (0, 1): this stream asks the group
    Path(results, f"{rank}.json").write_text(json.dumps(out))


def test_rank_and_world_come_from_an_initialised_process_group(tmp_path):
    root = _write(tmp_path, 19, 4)
    torch.multiprocessing.spawn(
        _ddp_rank,
        args=(2, str(root), str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    batches = [r["indices"] for r in results]
    assert [len(b) for b in batches] == [r["len"] for r in results] == [3, 3]  # in step
    assert sorted(i for b in batches for batch in b for i in batch) == list(range(19))
    assert [r["frozen"] for r in results] == [[0, 2], [1, 2]]
    assert [r["live"] for r in results] == [[0, 1], [0, 1]]
