"""Image datasets for the vision domains: a real downloader and shipped offline subsets.

Images are kept as uint8 arrays [N, H, W] (grey) or [N, H, W, C] (colour) and turned
into model space (float in [-1, 1], [N, C, H, W]) on demand. The full datasets are
downloaded from public mirrors, sha256-checked and cached; without a network the
loaders fall back to the subsets in ``rtb_lab/assets`` and say so. Nothing here
unpickles data: the subsets are npz files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rtb_lab.checkpoint import assets_dir, sha256_of
from rtb_lab.config import cache_dir

Split = Literal["train", "test"]
Source = Literal["auto", "offline", "full"]

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


class DatasetError(RuntimeError):
    """A dataset could not be downloaded, verified or read."""


@dataclass(frozen=True)
class ImageSet:
    """Images with labels, and where they came from.

    Attributes:
        images: uint8 [N, H, W] or [N, H, W, C].
        labels: int [N] class indices.
        source: a human-readable provenance, e.g. "offline subset (12,000 of 60,000)".
    """

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def tensors(self, limit: int | None = None) -> tuple[Tensor, Tensor]:
        """(x [N, C, H, W] float in [-1, 1], y [N] long), the first `limit` items."""
        images, labels = self.images[:limit], self.labels[:limit]
        return to_model_space(images), torch.as_tensor(labels.astype(np.int64))


def to_model_space(images: np.ndarray) -> Tensor:
    """uint8 [N, H, W(, C)] -> float [N, C, H, W] in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(images)).float() / 127.5 - 1.0
    return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


def to_pixels(x: Tensor) -> np.ndarray:
    """float [N, C, H, W] in [-1, 1] -> uint8 [N, H, W] (grey) or [N, H, W, C]."""
    pixels = ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1)
    return (pixels[..., 0] if pixels.shape[-1] == 1 else pixels).numpy()


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` (atomic), check its sha256, and return `dest`.

    Raises:
        DatasetError: no network, a timeout, an HTTP error or a checksum mismatch, with
            the URL and what to do instead.
    """
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"could not download {url}: {error}. Without a network, use "
                           "source='offline' (the subset shipped with rtb-lab).") from error
    if (found := sha256_of(tmp)) != sha256:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{url} has sha256 {found[:12]}..., expected {sha256[:12]}...; "
                           "the mirror may be serving something else")
    tmp.replace(dest)
    return dest


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
