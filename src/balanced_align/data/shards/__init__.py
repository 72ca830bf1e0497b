"""Streaming tar shards for multi-node training (docs/design.md §4): writer, reader,
IterableDataset.

Format (WebDataset layout, written with the standard library's :mod:`tarfile`)::

    out_dir/index.json
    out_dir/shard-000000.tar   000000000.jpg  000000000.json  000000001.jpg  000000001.json …
    out_dir/shard-000001.tar   …

Each sample is two consecutive tar members sharing a key (the member name up to its first
dot): ``KEY.jpg`` or ``KEY.png`` (the RGB image, encoded) and ``KEY.json``::

    {"label": 3, "landmarks": [[x0, y0], …] or null, "yaw": 12.5 or null, "pitch": …,
     "roll": …, "source": "…", "meta": {…}}

Landmarks are corner-origin pixels of the stored image (docs/design.md §2), the float32
values of the record written as JSON numbers (they read back bit-exact); an unknown pose is ``null``
(NaN on reading); ``meta`` keeps the record's JSON-serialisable meta entries. Keys are the
sample's 9-digit position in writing order. ``index.json`` lists the shards in order with
their sample counts, the total, ``num_classes``, the landmark schema's name (or null),
``num_points``, ``has_landmarks`` and ``image_format``; it is written last, so a directory
with an ``index.json`` holds a complete set.

Why plain tar and no new dependency: a shard is a file any tool can list (``tar tf``),
copy or stream, and the ``webdataset`` package reads these shards as they are. But
``webdataset`` splits work at shard granularity, while :class:`ShardStream` needs a split at
the *sample* level (below) and a per-sample index; the reader for that is a few dozen lines
over :mod:`tarfile` (random access over local or network-mounted files: headers are read,
the data of skipped members is seeked over). ``litdata`` declares torchvision, which cannot
be installed beside this project's torch. So nothing is added to the dependencies.

Splitting (:class:`ShardStream`): in an epoch the shards are put in an order drawn from
``(seed, epoch)`` and their samples concatenated into one global sequence of ``total``
samples. Rank r of ``world_size`` reads the contiguous slice ``[r·total//world,
(r+1)·total//world)`` of that sequence (so ranks differ by at most one sample) and each of
its DataLoader workers a contiguous part of that slice. A slice may start or end inside a
shard; the reader then skips to the sample it needs. Every sample is thus read exactly
once per epoch by exactly one (rank, worker) pair, whatever the number of shards.

Keeping DDP ranks in step (``batch_size`` given; what :class:`ShardLoader` uses): every rank
yields the same number of batches, ``K = ceil(ceil(total/world) / batch_size)``, and its
``n_r`` samples are spread over these K batches as evenly as possible (sizes
``floor(n_r/K)`` or ``ceil(n_r/K)``, never above ``batch_size``). So no rank waits for a batch
that another rank does not have, and no sample is repeated or dropped: a rank with one
sample fewer has one batch one sample smaller. Workers own whole batches (batch j of the
rank belongs to worker ``j·W//K``). Without ``batch_size`` the stream yields samples, and
``len`` is this rank's sample count; fine for one process, but under DDP let the stream
batch (a DataLoader that batches per worker would give ranks different batch counts).

Epochs: :meth:`ShardStream.set_epoch` writes the epoch into a one-element tensor in shared
memory, so DataLoader workers, persistent ones included, read the new value when the next
epoch's iteration starts. :class:`ShardLoader`'s sampler relays Lightning's per-epoch
``sampler.set_epoch`` call to the stream, so a Lightning run needs no callback, and the
loader starts an epoch's iteration at its first batch, after that call (a resumed run
creates its first iterator before it). The transform gets ``(record, index=key,
epoch=epoch)``, ``key`` the sample's writing position: augmentation keyed by ``(seed,
epoch, key)`` (``FaceTransform``) is then the same whichever reader draws the sample and
whatever ran before. So epoch e's batches are a pure function of ``(seed, e)`` and the
rank, world and worker counts, and a run resumed at an epoch boundary sees the same ones.

CLI::

    python -m balanced_align.data.shards --from-folder ROOT --landmarks TABLE --out DIR
    python -m balanced_align.data.shards --from-pts ROOT --out DIR
    python -m balanced_align.data.shards --from-synthfaces 100 20 --image-size 112 --out DIR
"""

from balanced_align.data.shards.cli import main
from balanced_align.data.shards.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGE_FORMATS,
    INDEX_NAME,
    ShardError,
)
from balanced_align.data.shards.reader import ShardIndex, decode_sample, iter_shard
from balanced_align.data.shards.stream import ShardLoader, ShardStream
from balanced_align.data.shards.writer import convert_to_shards, write_shards

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGE_FORMATS",
    "INDEX_NAME",
    "ShardError",
    "ShardIndex",
    "ShardLoader",
    "ShardStream",
    "convert_to_shards",
    "decode_sample",
    "iter_shard",
    "main",
    "write_shards",
]
