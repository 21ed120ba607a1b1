"""CIFAR-10: the real downloader (the official python tarball) and the generated stand-in.

The full set is the official ``cifar-10-python.tar.gz``: downloaded once, sha256-checked,
and its six batch files extracted into the cache. Without a network (or with
``source="offline"``) the loader uses the generated stand-in of
`rtb_lab.domains.cifar10.standin` instead, and says so.

The batch files are pickles (protocol 2, written by Python 2 with numpy arrays), and
unpickling runs whatever callables a file names. So they are read with a restricted
unpickler that resolves only the few numpy globals an array needs and refuses every
other global, and what comes out is checked (keys, dtype, sizes, labels) before use.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from rtb_lab.config import cache_dir
from rtb_lab.domains.cifar10.standin import make_standin
from rtb_lab.domains.images.data import DatasetError, ImageSet, Source, Split, download

try:  # numpy >= 2 moved the array internals to numpy._core (numpy.core warns on access)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

CLASS_NAMES_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# sha256 of the official tarball (170,498,071 bytes), as pinned by Keras/TensorFlow's
# keras.datasets.cifar10 loader; it is the file whose MD5 the dataset page publishes
# (c58f30108f718f92721af3b95e74349a).
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"  # the folder inside the tarball, and in our cache
BATCH_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
OFFLINE = "source='offline' (the generated stand-in, rtb_lab.domains.cifar10.standin)"
IMAGE_SIZE = 32
PIXELS = 3 * IMAGE_SIZE * IMAGE_SIZE  # one row of a batch: the R, G and B planes


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Stand-in for ``_codecs.encode``, which Python 3 uses to pickle bytes at protocol 2.

    Only the latin-1 round trip of bytes is allowed: other codecs (zlib, base64, ...)
    are never needed by a batch file.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {type(text).__name__}, "
                                     f"{encoding!r} is not the pickling of bytes")
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    """Stand-in for ``bytes``, which Python 3 calls with no arguments to pickle b"" at
    protocol 2; any argument (``bytes(10**12)`` would allocate a terabyte) is refused."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments is not the pickling of b''")
    return b""


# Every global a batch may name: what numpy needs to rebuild an array (with both module
# spellings: numpy 1 / Python 2 files say numpy.core, numpy 2 writes numpy._core), and
# how Python 3 pickles bytes at protocol 2 (for batches re-saved by Python 3 tools).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,  # pickle's Python 2 name for builtins.bytes
    ("builtins", "bytes"): _empty_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS`, so a file cannot run code."""

    def __init__(self, handle: Any, path: Path) -> None:
        # encoding="bytes": Python 2 str (the keys, the raw pixels) become bytes.
        super().__init__(handle, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self.path} names the global {module}.{name}, which a CIFAR-10 batch "
                "never needs (it holds only numpy arrays, lists and bytes); refusing to "
                "load it: it is not a CIFAR-10 batch file, or it has been tampered with"
            ) from None


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file (``data_batch_1`` ... ``test_batch``).

    Args:
        path: the batch file, a pickled dict with b"data" (uint8 [N, 3072], the R, G
            and B planes of each 32 x 32 image) and b"labels" (N ints in 0..9).

    Returns:
        (images uint8 [N, 32, 32, 3], labels int64 [N]).

    Raises:
        DatasetError: the file is missing, truncated or corrupt, names a forbidden
            global, or does not hold a well-formed batch (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CIFAR-10 batch not found: {path}")
    try:
        with open(path, "rb") as handle:
            batch = _BatchUnpickler(handle, path).load()
    except DatasetError:
        raise
    except Exception as error:  # pickle raises many types for damaged input; all mean corrupt
        raise DatasetError(f"{path} is not a readable CIFAR-10 batch (truncated or corrupt: "
                           f"{type(error).__name__}: {error}); delete it to fetch it "
                           "again") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        found = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' "
                           f"and b'labels', found {found}")
    data, labels = batch[b"data"], batch[b"labels"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != PIXELS or len(data) == 0):
        found = (f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DatasetError(f"{path}: b'data' must be uint8 [N, {PIXELS}] with N > 0 "
                           f"(3 x 32 x 32 images), found {found}")
    # Labels are a list of ints; check the elements' types before numpy could coerce them.
    if not isinstance(labels, list | np.ndarray) or not all(
            isinstance(label, int | np.integer) and not isinstance(label, bool)
            for label in labels):
        raise DatasetError(f"{path}: b'labels' must be a list of ints")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise DatasetError(f"{path} has {len(data):,} images but {len(labels):,} labels")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES_CIFAR10):
        raise DatasetError(f"{path}: labels must be in 0..{len(CLASS_NAMES_CIFAR10) - 1}, "
                           f"found {labels.min()}..{labels.max()}")
    # Rows are channel-major (1024 R, then G, then B values, each plane row by row).
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _cifar10_dir() -> Path:
    return cache_dir() / "cifar10"


def _extracted(split: Split) -> list[Path]:
    return [_cifar10_dir() / CIFAR10_DIR / name for name in BATCH_FILES[split]]


def _extract_batches(archive: Path) -> None:
    """Extract the six batch files (only those) from the official tarball into the cache.

    Members are matched by exact name and must be regular files; each is written to a
    path we build from our own constants, never from the archive, so a crafted archive
    cannot write elsewhere (no path traversal, no links). Writes are atomic.
    """
    wanted = {f"{CIFAR10_DIR}/{name}" for names in BATCH_FILES.values() for name in names}
    out_dir = _cifar10_dir() / CIFAR10_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    found = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.name not in wanted or member.name in found:
                    continue
                if not member.isfile():
                    raise DatasetError(f"{archive}: {member.name} is not a regular file")
                source = tar.extractfile(member)
                if source is None:
                    raise DatasetError(f"{archive}: cannot read {member.name}")
                dest = out_dir / member.name.rsplit("/", 1)[1]
                tmp = dest.with_suffix(".part")
                with source, open(tmp, "wb") as out:
                    while block := source.read(1 << 20):
                        out.write(block)
                tmp.replace(dest)
                found.add(member.name)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{archive} is not a readable CIFAR-10 tarball ({error}); "
                           "delete it to download it again") from error
    if missing := sorted(wanted - found):
        raise DatasetError(f"{archive} lacks {', '.join(missing)}: not the official "
                           "CIFAR-10 python tarball")


def _full_cifar10(split: Split, timeout: float) -> ImageSet:
    paths = _extracted(split)
    if not all(path.is_file() for path in paths):
        # `download` returns at once when the verified tarball is already cached.
        archive = download(CIFAR10_URL, _cifar10_dir() / CIFAR10_ARCHIVE, CIFAR10_SHA256,
                           timeout, offline=OFFLINE)
        _extract_batches(archive)
    batches = [read_batch(path) for path in paths]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return ImageSet(images, labels, f"full CIFAR-10 {split} set ({len(labels):,} images)")


def load_cifar10(split: Split = "train", source: Source = "auto", *, timeout: float = 30.0,
                 verbose: bool = True) -> ImageSet:
    """CIFAR-10 (or its generated stand-in) as uint8 [N, 32, 32, 3] with labels.

    Args:
        split: "train" or "test".
        source: "full" downloads the official CIFAR-10 (cached, sha256-checked; 50,000
            train / 10,000 test images, classes `CLASS_NAMES_CIFAR10`); "offline" uses
            the generated stand-in (20,000 train / 2,000 test images, classes
            `standin.CLASS_NAMES`); "auto" uses the full set when it is already
            cached, else the stand-in.
        timeout: seconds before a download attempt gives up.
        verbose: print which source is used.

    Raises:
        ValueError: an unknown split or source.
        DatasetError: "full" could not be downloaded or read (the message says why).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source not in ("auto", "offline", "full"):
        raise ValueError(f"source must be 'auto', 'offline' or 'full', got {source!r}")
    cached = (all(path.is_file() for path in _extracted(split))
              or (_cifar10_dir() / CIFAR10_ARCHIVE).is_file())
    if source == "full" or (source == "auto" and cached):
        data = _full_cifar10(split, timeout)
    else:
        data = make_standin(split)
    if verbose:
        print(f"CIFAR-10: using the {data.source}")
    return data
