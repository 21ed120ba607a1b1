"""Image data shared by the vision domains: uint8 image sets, model space, downloads.

Images are kept as uint8 arrays [N, H, W] (grey) or [N, H, W, C] (colour) and turned
into model space (float in [-1, 1], [N, C, H, W]) on demand. Downloads are atomic,
sha256-checked and time-limited, and a failure names the offline alternative.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rtb_lab.checkpoint import sha256_of

Split = Literal["train", "test"]
Source = Literal["auto", "offline", "full"]


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


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0,
             offline: str = "source='offline' (the subset shipped with rtb-lab)") -> Path:
    """Download `url` to `dest` (atomic), check its sha256, and return `dest`.

    `offline` names what to use instead without a network (it ends the error message).

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
                           f"{offline}.") from error
    if (found := sha256_of(tmp)) != sha256:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{url} has sha256 {found[:12]}..., expected {sha256[:12]}...; "
                           "the mirror may be serving something else")
    tmp.replace(dest)
    return dest
