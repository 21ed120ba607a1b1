"""A noise-aware classifier: the value h_S(x_t) = E[r_S(x_0) | x_t] along the prior's chain.

The exact posterior of p(x) r(x) is a diffusion whose every step is the prior's step
tilted by h(x_next) / h(x) (Doob's h-transform). For small steps that tilt is a mean
shift of sigma^2 grad log h, which in noise-prediction terms is

    eps_post(x_t) = eps_prior(x_t) - sqrt(1 - abar_t) grad_x log h(x_t, t).

The reward's gradient at the prior's clean-image guess (DPS,
`rtb_lab.baselines.guidance.GuidedEps`) is a poor stand-in for grad log h at high
noise: the guess is a blurred average digit. A `NoisyClassifier` learns h itself.
Trained once, offline, on noised images labelled by the frozen reward classifier:
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise at a random training time t, target
p(c | x_0) (soft). Its output for class set S is then an estimate of E[r_S(x_0) | x_t]
for every S at once (r_S is a sum of class probabilities).

It is a frozen feature of the state for RTB (like the classifier itself), so a policy
that uses its gradient still has the exact posterior as RTB's optimum
(`mnist.GuidedPosterior(..., value=...)`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtb_lab.checkpoint import CheckpointError, load_module, save_weights
from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.domains.mnist.data import load_mnist
from rtb_lab.domains.mnist.prior import (
    END_TIME,
    IMAGE_SHAPE,
    NUM_STEPS,
    NUM_TRAIN_TIMES,
    EpsNet,
    decode,
    make_family,
    make_scheduler,
    sample_images,
)
from rtb_lab.domains.mnist.reward import NUM_CLASSES, DigitClassifier, fit_classifier
from rtb_lab.rtb import freeze

# The shipped value: trained on forward-noised images (`chains=0`), then continued on
# the prior's own chain (see its manifest entry for the two commands).
CHAIN_VALUE_ASSET = "mnist_chain_value.safetensors"
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


def _image_batches(classifier: DigitClassifier, prior: EpsNet | None, data: ImageSet,
                   prior_samples: int, batch_size: int, generator: torch.Generator
                   ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Forward-noised clean images (data plus prior samples) with their soft labels."""
    images, _ = data.tensors()
    if prior is not None and prior_samples > 0:
        images = torch.cat([images, sample_images(prior, prior_samples, generator=generator)])
    with torch.no_grad():
        labels = torch.cat([torch.softmax(classifier(chunk), 1) for chunk in images.split(1024)])
    scheduler = make_scheduler()
    while True:
        index = torch.randint(len(images), (batch_size,), generator=generator)
        t = torch.randint(END_TIME, NUM_TRAIN_TIMES, (batch_size,), generator=generator)
        noise = torch.randn(batch_size, 1, 28, 28, generator=generator)
        yield scheduler.add_noise(images[index], noise, t), t.float(), labels[index]


def _chain_batches(classifier: DigitClassifier, prior: EpsNet, chains: int,
                   generator: torch.Generator, num_steps: int = NUM_STEPS
                   ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Every state of `chains` fresh prior trajectories, labelled by the soft label of
    the image its trajectory ends in: a one-sample Monte Carlo estimate of h(x_t) for the
    very chain (T steps) that the posterior tilts, so the minimiser of the cross-entropy
    is the exact value of that chain, not of the forward noising process."""
    family = make_family(num_steps)
    device = next(prior.parameters()).device
    times = family.train_times[:-1].to(device, torch.float32)
    while True:
        states = sample_trajectories(prior, family, chains, IMAGE_SHAPE, generator=generator,
                                     device=device).states
        with torch.no_grad():
            labels = torch.softmax(classifier(decode(prior, states[:, -1])), 1)
        yield (states[:, :-1].flatten(0, 1), times.repeat(chains),
               labels.repeat_interleave(num_steps, 0))


def train_noisy_classifier(classifier: DigitClassifier, prior: EpsNet | None = None,
                           steps: int = 2000, *, batch_size: int = 256, lr: float = 2e-3,
                           width: int = 32, prior_samples: int = 4096,
                           data: ImageSet | None = None, chains: int = 0,
                           init: NoisyClassifier | None = None, seed: int = 0,
                           progress: bool = True) -> NoisyClassifier:
    """Fit a `NoisyClassifier` to the reward classifier's soft labels of clean images.

    Two sources of (x_t, t, label):

    * ``chains=0`` (default): clean MNIST training images plus `prior_samples` prior
      images, noised afresh every step at uniform times in [END_TIME, 999] (nothing is
      memorised however small the image set). Cheap; h of the forward process.
    * ``chains > 0``: all T states of `chains` fresh prior trajectories per step, labelled
      by where each trajectory ends (`_chain_batches`): h of the prior's own T-step chain,
      which is what the posterior's steps tilt. Costs a prior sampling run per step (a
      GPU job; start from `init`, a network trained on the first source).

    Args:
        classifier: the frozen reward classifier (labels: its softmax on clean images).
        prior: the frozen prior (extra clean images, or the chain; needed for chains).
        steps: optimisation steps (Adam, one-cycle learning rate).
        batch_size: noised images per step (first source).
        lr: peak learning rate.
        width: channels of the first convolution (ignored with `init`).
        prior_samples: prior images added to the training set (first source).
        data: clean training images (default: `load_mnist("train")`; first source).
        chains: prior trajectories per step (second source; 0: the first source).
        init: a network to continue from (copied; not modified).
        seed: seed for initialisation, batches, times and noise.

    Returns:
        The frozen network, on the prior's device (CPU without a prior).
    """
    if chains > 0 and prior is None:
        raise ValueError("training on chain states (chains > 0) needs the prior")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = next(prior.parameters()).device if prior is not None else torch.device("cpu")
    batches = (_chain_batches(classifier, prior, chains, generator) if chains > 0 else
               _image_batches(classifier, prior, data or load_mnist("train"), prior_samples,
                              batch_size, generator))
    model = NoisyClassifier(width) if init is None else copy.deepcopy(init)
    model = model.to(device).train().requires_grad_(True)

    def batch_loss() -> Tensor:  # cross-entropy against soft labels
        x_t, t, labels = (part.to(device) for part in next(batches))
        return -(labels * torch.log_softmax(model(x_t, t), 1)).sum(1).mean()

    return fit_classifier(model, batch_loss, steps, lr, "MNIST noisy classifier", progress,
                          pct_start=0.05)


def save_noisy_classifier(model: NoisyClassifier, path: str | Path, command: str,
                          **extra: float | str) -> str:
    """Save the noisy classifier as safetensors with provenance; return its sha256."""
    return save_weights(model, path, {"arch": "NoisyClassifier", "width": model.width,
                                      "command": command, **extra})


def load_noisy_classifier(path: str | Path | None = None,
                          device: torch.device | str = "cpu") -> NoisyClassifier:
    """Load a frozen noisy classifier: the shipped chain value (`CHAIN_VALUE_ASSET`,
    sha256-checked) or your file. The result's `source` names where it came from (a
    saved value-guided posterior records it, so it reloads with the same value).

    Raises:
        CheckpointError: the file is missing, corrupt, or not a NoisyClassifier.
    """
    model = load_module(path, CHAIN_VALUE_ASSET, "NoisyClassifier",
                        "an MNIST noisy classifier",
                        lambda meta: NoisyClassifier(int(meta["width"])))
    model.source = CHAIN_VALUE_ASSET if path is None else str(path)
    return freeze(model.eval().to(device))


def value_network(source: str | Path, device: torch.device | str = "cpu") -> NoisyClassifier:
    """`load_noisy_classifier` by one name: the shipped `CHAIN_VALUE_ASSET`, else a file.

    Raises:
        CheckpointError: neither the shipped name nor an existing file.
    """
    if str(source) == CHAIN_VALUE_ASSET:
        return load_noisy_classifier(device=device)
    if not Path(source).is_file():
        raise CheckpointError(f"{source} is neither a shipped value network "
                              f"({CHAIN_VALUE_ASSET}) nor a file")
    return load_noisy_classifier(source, device=device)
