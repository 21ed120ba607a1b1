"""The MNIST DDPM prior: a small diffusers UNet2DModel, trained and shipped by us.

Sized for CPUs: channels (16, 32, 32), one ResNet block per level, no attention
(0.27M parameters, about 1.2 ms per image per network call on 2 cores, versus 5 ms
for a (32, 64, 64) UNet), 1000 training noise levels and T = 20 strided ancestral
sampling steps that stop at training time END_TIME = 50; the image is then the frozen
prior's deterministic x0 estimate from that state (`decode`; see `DDPM` for why RTB
needs this). The paper's prior is larger and samples in 100 steps; on a GPU,
`load_hub_prior` loads a pretrained hub DDPM instead. The recipe itself is shared by
the vision domains (`rtb_lab.domains.images.prior`); this module fixes MNIST's shape,
widths and asset.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DModel
from torch import Tensor, nn

from rtb_lab.domains.images import prior as image_prior
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.domains.images.prior import (  # noqa: F401  (MNIST's prior API)
    END_TIME,
    NUM_STEPS,
    NUM_TRAIN_TIMES,
    EpsNet,
    decode,
    make_family,
    make_scheduler,
    save_prior,
)
from rtb_lab.domains.mnist.data import load_mnist

IMAGE_SHAPE = (1, 28, 28)
PRIOR_CHANNELS = (16, 32, 32)
PRIOR_ASSET = "mnist_prior.safetensors"
HUB_PRIOR = "1aurent/ddpm-mnist"


def make_unet(channels: tuple[int, ...] = PRIOR_CHANNELS) -> UNet2DModel:
    """An untrained UNet2DModel for 1 x 28 x 28 images (28 -> 14 -> 7)."""
    return image_prior.make_unet(IMAGE_SHAPE, channels)


def train_prior(steps: int = 4000, *, batch_size: int = 64, lr: float = 2e-3,
                channels: tuple[int, ...] = PRIOR_CHANNELS, ema_decay: float = 0.999,
                data: ImageSet | None = None, seed: int = 0,
                progress: bool = True, init: EpsNet | None = None) -> EpsNet:
    """Train the MNIST prior (default data: `load_mnist("train")`), from scratch or on
    from `init`; see `rtb_lab.domains.images.prior.train_prior` for the recipe."""
    images, _ = (data or load_mnist("train")).tensors()
    return image_prior.train_prior(images, channels, steps, batch_size=batch_size, lr=lr,
                                   ema_decay=ema_decay, seed=seed, progress=progress,
                                   desc="MNIST prior", init=init)


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu") -> EpsNet:
    """Load a frozen MNIST prior: the shipped one (sha256-checked) or your own file.

    Raises:
        CheckpointError: the file is missing, corrupt, or not an MNIST prior.
    """
    return image_prior.load_prior(path, PRIOR_ASSET, IMAGE_SHAPE, device)


def load_hub_prior(repo_id: str = HUB_PRIOR, device: torch.device | str = "cpu") -> EpsNet:
    """A pretrained DDPM MNIST UNet from the Hugging Face hub (needs a network).

    Raises:
        RuntimeError: offline or the download failed, with what to use instead.
    """
    return image_prior.load_hub_prior(repo_id, "load_prior() (the prior shipped with rtb-lab)",
                                      device)


def sample_images(net: nn.Module, num: int, *, prior: nn.Module | None = None,
                  num_steps: int = NUM_STEPS, generator: torch.Generator | None = None,
                  cond: Tensor | None = None) -> Tensor:
    """[num, 1, 28, 28] images: T strided ancestral steps of `net`, decoded by the prior."""
    return image_prior.sample_images(net, num, IMAGE_SHAPE, prior=prior, num_steps=num_steps,
                                     generator=generator, cond=cond)
