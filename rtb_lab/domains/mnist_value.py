"""A noise-aware classifier: the value h_S(x_t) = E[r_S(x_0) | x_t] along the prior's chain.

The exact posterior of p(x) r(x) is a diffusion whose every step is the prior's step
tilted by h(x_next) / h(x) (Doob's h-transform). For small steps that tilt is a mean
shift of sigma^2 grad log h, which in noise-prediction terms is

    eps_post(x_t) = eps_prior(x_t) - sqrt(1 - abar_t) grad_x log h(x_t, t).

The reward's gradient at the prior's clean-image guess (DPS, `mnist_guided`'s default)
is a poor stand-in for grad log h at high noise: the guess is a blurred average digit.
A `NoisyClassifier` learns h itself. Trained once, offline, on noised images labelled
by the frozen reward classifier: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise at a
random training time t, target p(c | x_0) (soft). Its output for class set S is then an
estimate of E[r_S(x_0) | x_t] for every S at once (r_S is a sum of class probabilities).

It is a frozen feature of the state for RTB (like the classifier itself), so a policy
that uses its gradient still has the exact posterior as RTB's optimum
(`mnist_guided.GuidedPosterior(value=...)`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import load_module, save_weights
from rtb_lab.domains.images import ImageSet, load_mnist
from rtb_lab.domains.mnist_prior import (
    END_TIME,
    NUM_TRAIN_TIMES,
    EpsNet,
    make_scheduler,
    sample_images,
)
from rtb_lab.domains.mnist_reward import NUM_CLASSES, DigitClassifier
from rtb_lab.rtb import freeze

VALUE_ASSET = "mnist_value.safetensors"
_FREQUENCIES = 8  # sinusoidal features of t / NUM_TRAIN_TIMES


class NoisyClassifier(nn.Module):
    """Class logits [B, 10] of noisy images x_t [B, 1, 28, 28] at training times t [B].

    Three convolutions, the time entering as a per-channel shift after the second, and
    an MLP head (about 0.46M parameters at width 32).
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.time = nn.Sequential(nn.Linear(2 * _FREQUENCIES, 64), nn.SiLU(),
                                  nn.Linear(64, 2 * width))
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.hidden = nn.Linear(2 * width * 49, 128)
        self.head = nn.Linear(128, NUM_CLASSES)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """[B, 1, 28, 28] noisy images, [B] training times -> [B, 10] logits."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images [B, 1, 28, 28], got {list(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"expected one time per image [{x.shape[0]}], got {list(t.shape)}")
        angles = t.to(x.dtype)[:, None] / NUM_TRAIN_TIMES * math.pi \
            * torch.arange(1, _FREQUENCIES + 1, device=x.device, dtype=x.dtype)
        shift = self.time(torch.cat([angles.sin(), angles.cos()], 1))[:, :, None, None]
        h = F.max_pool2d(F.silu(self.conv1(x)), 2)
        h = F.silu(self.conv2(h) + shift)
        h = F.max_pool2d(F.silu(self.conv3(h)), 2)
        return self.head(F.silu(self.hidden(h.flatten(1))))

    def log_value(self, x: Tensor, t: Tensor, mask: Tensor) -> Tensor:
        """[B] log h_S(x_t) for the class set `mask` ([10] or [B, 10], 1 for classes in S).

        The reward is r_S = max over S of p(c | x_0); the value sums the predicted class
        probabilities over S instead, which is the same for a confident classifier (one
        class holds nearly all the mass of a clean digit) and is smooth in x_t.
        """
        log_p = torch.log_softmax(self(x, t), 1)
        mask = mask.to(log_p.device).expand_as(log_p)
        return torch.logsumexp(log_p.masked_fill(mask < 0.5, float("-inf")), 1)


def train_noisy_classifier(classifier: DigitClassifier, prior: EpsNet | None = None,
                           steps: int = 2000, *, batch_size: int = 256, lr: float = 2e-3,
                           width: int = 32, prior_samples: int = 4096,
                           data: ImageSet | None = None, seed: int = 0,
                           progress: bool = True) -> NoisyClassifier:
    """Fit a `NoisyClassifier` to the reward classifier's soft labels on noised images.

    Clean images are MNIST training images plus `prior_samples` images from the prior
    (so h follows the prior's own distribution of digits, which the posterior tilts);
    every step noises a fresh batch at uniform times in [END_TIME, 999], so nothing is
    memorised however small the image set.

    Args:
        classifier: the frozen reward classifier (labels: its softmax on clean images).
        prior: the frozen prior to draw extra clean images from (None: MNIST only).
        steps: optimisation steps (Adam, one-cycle learning rate).
        batch_size: noised images per step.
        lr: peak learning rate.
        width: channels of the first convolution.
        prior_samples: prior images added to the training set.
        data: clean training images (default: `load_mnist("train")`).
        seed: seed for initialisation, batches, times and noise.

    Returns:
        The frozen network.
    """
    data = data or load_mnist("train")
    images, _ = data.tensors()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if prior is not None and prior_samples > 0:
        images = torch.cat([images, sample_images(prior, prior_samples, generator=generator)])
    with torch.no_grad():
        labels = torch.cat([torch.softmax(classifier(chunk), 1) for chunk in images.split(1024)])
    scheduler = make_scheduler()
    model = NoisyClassifier(width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=0.05)
    bar = tqdm(range(steps), desc="MNIST noisy classifier", disable=not progress)
    for _ in bar:
        index = torch.randint(len(images), (batch_size,), generator=generator)
        t = torch.randint(END_TIME, NUM_TRAIN_TIMES, (batch_size,), generator=generator)
        noise = torch.randn(batch_size, 1, 28, 28, generator=generator)
        x_t = scheduler.add_noise(images[index], noise, t)
        loss = -(labels[index] * torch.log_softmax(model(x_t, t.float()), 1)).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return freeze(model.eval())


def save_noisy_classifier(model: NoisyClassifier, path: str | Path, command: str,
                          **extra: float | str) -> str:
    """Save the noisy classifier as safetensors with provenance; return its sha256."""
    return save_weights(model, path, {"arch": "NoisyClassifier", "width": model.width,
                                      "command": command, **extra})


def load_noisy_classifier(path: str | Path | None = None,
                          device: torch.device | str = "cpu") -> NoisyClassifier:
    """Load a frozen noisy classifier: the shipped one (sha256-checked) or yours.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a NoisyClassifier.
    """
    model = load_module(path, VALUE_ASSET, "NoisyClassifier", "an MNIST noisy classifier",
                        lambda meta: NoisyClassifier(int(meta["width"])))
    return freeze(model.eval().to(device))
