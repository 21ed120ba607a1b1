"""Run-wide settings: fast mode and the cache directory.

Fast mode (``RTB_LAB_FAST=1``, on by default when ``CI`` is set) shrinks training
runs so notebooks and statistical tests finish in about a minute on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

FAST_ENV = "RTB_LAB_FAST"
CACHE_ENV = "RTB_LAB_CACHE"


def is_fast() -> bool:
    """True when fast mode is requested (``RTB_LAB_FAST``) or implied by ``CI``."""
    value = os.environ.get(FAST_ENV)
    if value is not None:
        return value.strip().lower() not in ("", "0", "false", "no")
    return bool(os.environ.get("CI"))


def cache_dir() -> Path:
    """Directory for downloads and user checkpoints (``$RTB_LAB_CACHE`` or ~/.cache/rtb-lab)."""
    path = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "rtb-lab"))
    path.mkdir(parents=True, exist_ok=True)
    return path
