"""insightface verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, …).

Layout: one pickle of ``(bins, issame_list)``. ``bins`` is a list of encoded image files
(JPEG or PNG bytes), two per pair in order: images ``2k`` and ``2k + 1`` form pair ``k``;
``issame_list`` holds one bool per pair. The files published with insightface were
written by Python 2 (protocol 2, images as ``str``), so they are read with
``encoding="bytes"``; files written by Python 3 use ``bytes`` directly (protocol >= 3) or,
with protocol <= 2, ``_codecs.encode(text, "latin1")`` calls.

Safety: a pickle can call any importable function while loading, so these files are
never read with plain ``pickle.load``. :class:`RestrictedUnpickler` resolves *no* global
except one: ``_codecs.encode``, which Python 3 needs to rebuild ``bytes`` in protocol 0–2
pickles, and even that is replaced by a function that only accepts ``(str, "latin1")``
and returns ``str.encode("latin-1")``. Lists, tuples, bytes, str, bool and int need no
globals. Everything else (``os.system``, ``builtins.open``, ``numpy`` arrays, …) raises
:class:`UnsafePickleError` before anything is called.

The 10 verification folds of these files are contiguous in file order (insightface uses
``KFold(10, shuffle=False)``), which is :func:`~balanced_align.core.protocol.contiguous_folds`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balanced_align.core.protocol import EvaluationProtocol, contiguous_folds
from balanced_align.data.formats._images import decode_image, encode_image
from balanced_align.data.record import FaceRecord

_LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")


class UnsafePickleError(ValueError):
    """A pickle that asks for a global (a class or function) this reader does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except a guarded ``_codecs.encode``.

    ``source`` names the file in errors. Nothing the pickle names is imported or called.
    """

    def __init__(self, file, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_encode
        raise UnsafePickleError(
            f"{self.source}: the pickle asks for the global {module}.{name}, which this "
            "reader refuses (only lists, tuples, bytes, str, bool and int are allowed); "
            "nothing was executed"
        )

    def _latin1_encode(self, *args):
        if (
            len(args) == 2
            and isinstance(args[0], str)
            and isinstance(args[1], str)
            and args[1].lower() in _LATIN1
        ):
            return args[0].encode("latin-1")
        shown = [type(a).__name__ if not isinstance(a, str) or len(a) > 20 else a for a in args]
        raise UnsafePickleError(
            f"{self.source}: the pickle calls _codecs.encode{tuple(shown)!r}; only "
            "(str, 'latin1'), the form Python uses for bytes, is allowed"
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: the pickle uses persistent ids; refused")


def safe_load(path: str | Path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; errors name the file."""
    path = Path(path)
    where = f"insightface .bin {str(path)!r}"
    if path.is_dir():
        raise IsADirectoryError(f"{where} is a directory; give the .bin file itself")
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, where).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # any malformed pickle: EOFError, UnpicklingError, …
        raise ValueError(
            f"{where}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None


class EncodedImages(Sequence):
    """Lazily decoded images: ``images[i]`` is (H, W, 3) uint8 RGB, decoded on access."""

    def __init__(self, data: list[bytes], source: str) -> None:
        self.data = data
        self.source = source

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.source}: image {index} out of range for {len(self)}")
        index %= len(self)
        return decode_image(self.data[index], f"{self.source}: image {index}")

    def encoded(self, index: int) -> bytes:
        """The stored bytes of image ``index`` (JPEG/PNG file contents)."""
        return self.data[index]


@dataclass
class BinPairs:
    """A verification ``.bin``: ``images`` (lazy, 2 per pair), pairs and labels.

    images: :class:`EncodedImages` (or a list of arrays with ``decode=True``).
    issame: (P,) bool. pairs_a, pairs_b: (P,) int64 = 0, 2, 4, … and 1, 3, 5, ….
    """

    source: Path
    images: Sequence
    issame: np.ndarray
    pairs_a: np.ndarray
    pairs_b: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)

    def folds(self, n_folds: int = 10) -> np.ndarray:
        """(P,) fold id per pair: ``n_folds`` contiguous folds, as insightface evaluates."""
        return contiguous_folds(len(self), n_folds)

    def record(self, index: int) -> FaceRecord:
        """Image ``index`` as a FaceRecord (label −1: the file has no identities)."""
        return FaceRecord(
            image=np.asarray(self.images[index]),
            landmarks=None,
            label=-1,
            source=f"{self.source}#{index}",
            meta={"pair": index // 2, "side": "ab"[index % 2]},
        )

    def protocol(self, n_folds: int = 10) -> EvaluationProtocol:
        """An :class:`~balanced_align.core.protocol.EvaluationProtocol` over ``images``."""
        return EvaluationProtocol(
            pairs_a=self.pairs_a,
            pairs_b=self.pairs_b,
            issame=self.issame,
            pair_folds=self.folds(n_folds),
        )


def read_bin(path: str | Path, decode: bool = False) -> BinPairs:
    """Read an insightface verification ``.bin`` safely (see module docstring).

    ``decode=True`` decodes every image now (errors at once, naming the image index);
    by default images decode on access. Raises :class:`UnsafePickleError` for a
    pickle that needs a refused global, ValueError naming the file for any other
    deviation from ``(list of 2P image bytes, list of P bools)``.
    """
    path = Path(path)
    where = f"insightface .bin {str(path)!r}"
    content = safe_load(path)
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise ValueError(f"{where}: expected a pickled (bins, issame_list) pair")
    bins, issame = content
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise ValueError(
            f"{where}: bins and issame_list must be lists, got {type(bins).__name__} and "
            f"{type(issame).__name__}"
        )
    for i, value in enumerate(issame):
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise ValueError(f"{where}: issame_list[{i}] is {value!r}, expected a bool")
    if not issame:
        raise ValueError(f"{where}: no pairs (an empty issame_list); nothing to evaluate")
    if len(bins) != 2 * len(issame):
        raise ValueError(
            f"{where}: {len(bins)} images for {len(issame)} pairs; expected 2 per pair"
        )
    for i, data in enumerate(bins):
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ValueError(
                f"{where}: bins[{i}] is {type(data).__name__} of length "
                f"{len(data) if hasattr(data, '__len__') else '?'}; expected image bytes"
            )
    images = EncodedImages([bytes(b) for b in bins], where)
    num_pairs = len(issame)
    return BinPairs(
        source=path,
        images=[images[i] for i in range(len(images))] if decode else images,
        issame=np.array([bool(v) for v in issame], bool),
        pairs_a=np.arange(0, 2 * num_pairs, 2, dtype=np.int64),
        pairs_b=np.arange(1, 2 * num_pairs, 2, dtype=np.int64),
    )


def write_bin(
    path: str | Path,
    images: Sequence,
    issame: Sequence[bool],
    ext: str = ".jpg",
    quality: int = 95,
    protocol: int = pickle.HIGHEST_PROTOCOL,
) -> None:
    """Write a verification ``.bin``: ``images`` are (H, W, 3) uint8 RGB arrays (encoded
    as ``ext``) or already-encoded bytes, 2 per pair; ``issame`` one bool per pair."""
    issame = [bool(v) for v in issame]
    if len(images) != 2 * len(issame):
        raise ValueError(
            f"write_bin({str(path)!r}): {len(images)} images for {len(issame)} pairs; "
            "expected 2 per pair"
        )
    bins = [
        bytes(image) if isinstance(image, (bytes, bytearray)) else encode_image(image, ext, quality)
        for image in images
    ]
    with open(path, "wb") as handle:
        pickle.dump((bins, issame), handle, protocol=protocol)
