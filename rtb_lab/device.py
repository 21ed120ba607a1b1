"""Device selection and seeding.

`get_device()` honours the ``RTB_LAB_DEVICE`` environment variable first, then
prefers CUDA, then Apple's MPS, then the CPU, so the same notebook runs on a GPU
box and on a laptop without edits.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "RTB_LAB_DEVICE"


def get_device(preferred: str | None = None) -> torch.device:
    """Return the torch device to compute on.

    Args:
        preferred: an explicit device string ("cpu", "cuda", "cuda:1", "mps").
            When None, ``$RTB_LAB_DEVICE`` is used if set, else cuda -> mps -> cpu.

    Raises:
        ValueError: if the requested device is not available on this machine.
    """
    name = preferred or os.environ.get(DEVICE_ENV)
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} was requested but MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a CPU generator seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
