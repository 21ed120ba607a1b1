"""The CIFAR-10 priors: the paper's hub DDPM online, and our small stand-in prior offline.

Online, `load_hub_prior` loads `google/ddpm-cifar10-32` (the paper's prior: a 35.7M
parameter UNet2DModel, 1000 linear-beta training times, the same schedule as ours).
Offline, `load_prior` loads the UNet we trained on the generated stand-in set
(`standin.py`): channels (16, 32, 64), 0.64M parameters, about 6.5 ms per image per
network call on 2 cores. Both sample with the shared recipe of
`rtb_lab.domains.images.prior` (T = 20 strided steps to time 50, then the prior's x0).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rtb_lab.domains.cifar10.standin import make_standin
from rtb_lab.domains.images import prior as image_prior
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.domains.images.prior import NUM_STEPS, EpsNet

IMAGE_SHAPE = (3, 32, 32)
PRIOR_CHANNELS = (16, 32, 64)
PRIOR_ASSET = "cifar10_prior.safetensors"
HUB_PRIOR = "google/ddpm-cifar10-32"


def train_prior(steps: int = 4000, *, batch_size: int = 64, lr: float = 2e-3,
                channels: tuple[int, ...] = PRIOR_CHANNELS, data: ImageSet | None = None,
                seed: int = 0, progress: bool = True, init: EpsNet | None = None) -> EpsNet:
    """Train the stand-in prior (default data: the generated training set, seed 0), from
    scratch or on from `init`."""
    images, _ = (data or make_standin("train")).tensors()
    return image_prior.train_prior(images, channels, steps, batch_size=batch_size, lr=lr,
                                   seed=seed, progress=progress, desc="CIFAR-10 prior",
                                   init=init)


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu") -> EpsNet:
    """Load a frozen 3 x 32 x 32 prior: the shipped stand-in prior or your own file.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a 3 x 32 x 32 prior.
    """
    return image_prior.load_prior(path, PRIOR_ASSET, IMAGE_SHAPE, device)


def load_hub_prior(repo_id: str = HUB_PRIOR, device: torch.device | str = "cpu") -> EpsNet:
    """The paper's pretrained CIFAR-10 DDPM from the Hugging Face hub (or its cache).

    Raises:
        RuntimeError: offline or the download failed; the message names the offline prior.
    """
    return image_prior.load_hub_prior(
        repo_id, "load_prior() (the stand-in prior shipped with rtb-lab)", device)


def sample_images(net: nn.Module, num: int, *, prior: nn.Module | None = None,
                  num_steps: int = NUM_STEPS, generator: torch.Generator | None = None,
                  cond: Tensor | None = None) -> Tensor:
    """[num, 3, 32, 32] images: T strided ancestral steps of `net`, decoded by the prior."""
    return image_prior.sample_images(net, num, IMAGE_SHAPE, prior=prior, num_steps=num_steps,
                                     generator=generator, cond=cond)
