"""MNIST: the real downloader (IDX files from public mirrors) and the shipped subset.

The full set is downloaded, sha256-checked and cached; without a network the loader
falls back to the subset in ``rtb_lab/assets`` and says so. Nothing here unpickles
data: the subset is an npz file read with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from rtb_lab.checkpoint import assets_dir
from rtb_lab.config import cache_dir
from rtb_lab.domains.images.data import DatasetError, ImageSet, Source, Split, download

MNIST_SUBSET = "mnist_subset.npz"
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
# The published sha256 of the four original IDX files.
MNIST_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte.gz",
                          "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    ("train", "labels"): ("train-labels-idx1-ubyte.gz",
                          "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ("test", "images"): ("t10k-images-idx3-ubyte.gz",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte.gz",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the original MNIST format) as a uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _download_mnist(split: Split, timeout: float) -> ImageSet:
    arrays = []
    for kind in ("images", "labels"):
        name, sha256 = MNIST_FILES[(split, kind)]
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                arrays.append(read_idx(download(mirror + name, cache_dir() / "mnist" / name,
                                                sha256, timeout)))
                break
            except DatasetError as error:
                errors.append(str(error))
        else:
            raise DatasetError("MNIST download failed from every mirror:\n" + "\n".join(errors))
    return ImageSet(arrays[0], arrays[1], f"full MNIST {split} ({len(arrays[1]):,} images)")


def _offline_mnist(split: Split) -> ImageSet:
    path = assets_dir() / MNIST_SUBSET
    if not path.is_file():
        raise DatasetError(f"the offline MNIST subset is missing: {path}; reinstall rtb-lab")
    with np.load(path, allow_pickle=False) as data:
        images, labels = data[f"x_{split}"], data[f"y_{split}"]
    full = 60_000 if split == "train" else 10_000
    return ImageSet(images, labels,
                    f"offline MNIST subset ({len(labels):,} of {full:,} {split} images)")


def load_mnist(split: Split = "train", source: Source = "auto", *, timeout: float = 30.0,
               verbose: bool = True) -> ImageSet:
    """MNIST digits as uint8 [N, 28, 28] with labels.

    Args:
        split: "train" or "test".
        source: "full" downloads all of MNIST (cached, sha256-checked); "offline" uses
            the subset shipped with rtb-lab (12,000 train / 2,000 test images);
            "auto" uses the full set when it is already cached, else the subset.
        timeout: seconds before a download attempt gives up.
        verbose: print which source is used.

    Raises:
        ValueError: an unknown split or source.
        DatasetError: "full" could not be downloaded (the message says why).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source not in ("auto", "offline", "full"):
        raise ValueError(f"source must be 'auto', 'offline' or 'full', got {source!r}")
    cached = all((cache_dir() / "mnist" / MNIST_FILES[(split, kind)][0]).is_file()
                 for kind in ("images", "labels"))
    if source == "full" or (source == "auto" and cached):
        data = _download_mnist(split, timeout)
    else:
        data = _offline_mnist(split)
    if verbose:
        print(f"MNIST: using the {data.source}")
    return data
