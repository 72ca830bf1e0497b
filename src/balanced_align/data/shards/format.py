"""Shard format constants and the error type shared by writer and reader.

The index file name, the ``format``/``version`` stamp of ``index.json``, the image formats
the writer can encode and the image extensions the reader accepts, the number of digits of
a sample key, and :class:`ShardError` (a shard set or shard that does not read as written).
The layout itself is described in the package docstring (:mod:`balanced_align.data.shards`).
"""

INDEX_NAME = "index.json"
FORMAT_NAME = "balanced-align-shards"
FORMAT_VERSION = 1
IMAGE_FORMATS = ("jpg", "png")
_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm")
_KEY_DIGITS = 9


class ShardError(ValueError):
    """A shard set or shard that cannot be read as written; the message names the file."""
