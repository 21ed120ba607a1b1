"""The MNIST reward: a small CNN classifier, class-set rewards and their conditions.

The reward of a set of target classes S is r(x) = max_{c in S} p(c | x), as in the
paper (one class, or the even / odd digits); the posterior is p(x) r(x)^beta. A
conditional posterior reads the pair (S, beta) as a vector: a 10-entry mask of S
followed by log beta.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import load_module, save_weights
from rtb_lab.domains.mnist.data import ImageSet, load_mnist
from rtb_lab.rtb import check_beta, freeze

M = TypeVar("M", bound=nn.Module)

NUM_CLASSES = 10
COND_DIM = NUM_CLASSES + 1
CLASSIFIER_ASSET = "mnist_classifier.safetensors"
NAMED_SETS = {"even": (0, 2, 4, 6, 8), "odd": (1, 3, 5, 7, 9)}


class DigitClassifier(nn.Module):
    """Two conv layers and an MLP head; `features` is the 128-d penultimate layer."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * 49, 128), nn.ReLU())
        self.head = nn.Linear(128, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """[B, 1, 28, 28] images in [-1, 1] -> [B, 128] features."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images [B, 1, 28, 28], got {list(x.shape)}")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 1, 28, 28] -> [B, 10] logits."""
        return self.head(self.features(x))


def _shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    # Random translations by up to 2 pixels: cheap augmentation for a robust reward.
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy:dy + 28, dx:dx + 28]


def train_classifier(epochs: int = 4, *, batch_size: int = 128, lr: float = 2e-3,
                     width: int = 32, data: ImageSet | None = None, seed: int = 0,
                     progress: bool = True) -> DigitClassifier:
    """Train the reward classifier on MNIST (default: the offline training subset)."""
    data = data or load_mnist("train")
    images, labels = data.tensors()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitClassifier(width)

    def batch_loss() -> Tensor:
        index = torch.randint(len(labels), (batch_size,), generator=generator)
        return F.cross_entropy(model(_shift(images[index], generator)), labels[index])

    return fit_classifier(model, batch_loss, epochs * (len(labels) // batch_size), lr,
                          "MNIST classifier", progress)


def fit_classifier(model: M, batch_loss: Callable[[], Tensor], steps: int, lr: float,
                   desc: str, progress: bool = True, pct_start: float = 0.3) -> M:
    """Minimise `batch_loss()` (a fresh batch each call) over `model` for `steps` Adam
    steps on a one-cycle learning rate peaking at `lr`; return the frozen model."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps,
                                                   pct_start=pct_start)
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for _ in bar:
        loss = batch_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return freeze(model.eval())


@torch.no_grad()
def accuracy(model: DigitClassifier, data: ImageSet) -> float:
    """Top-1 accuracy of `model` on `data`."""
    images, labels = data.tensors()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    return float((predictions == labels).float().mean())


def save_classifier(model: DigitClassifier, path: str | Path, command: str,
                    test_accuracy: float) -> str:
    """Save the classifier as safetensors with provenance; return its sha256."""
    meta = {"arch": "DigitClassifier", "width": model.width, "command": command,
            "test_accuracy": test_accuracy}
    return save_weights(model, path, meta)


def load_classifier(path: str | Path | None = None,
                    device: torch.device | str = "cpu") -> DigitClassifier:
    """Load the frozen reward classifier: the shipped one (sha256-checked) or yours.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a DigitClassifier.
    """
    model = load_module(path, CLASSIFIER_ASSET, "DigitClassifier", "an MNIST classifier",
                        lambda meta: DigitClassifier(meta["width"]))
    return freeze(model.eval().to(device))


# ------------------------------------------------------------------ class sets
def parse_classes(classes: str | int | Iterable[int]) -> tuple[int, ...]:
    """A sorted tuple of target classes from "even", "odd", "3", 3 or [1, 7].

    Raises:
        ValueError: an unknown name, an empty set, or a class outside 0..9.
    """
    if isinstance(classes, str):
        key = classes.strip().lower()
        if key in NAMED_SETS:
            return NAMED_SETS[key]
        if not key.isdigit():
            raise ValueError(f"unknown class set {classes!r}: expected 'even', 'odd', "
                             "a digit, or a list of digits")
        classes = [int(c) for c in key]
    values = (classes,) if isinstance(classes, int) else tuple(int(c) for c in classes)
    if not values:
        raise ValueError("the class set is empty: pick at least one digit")
    bad = [c for c in values if not 0 <= c < NUM_CLASSES]
    if bad:
        raise ValueError(f"classes must be in 0..9, got {bad}")
    return tuple(sorted(set(values)))


def class_mask(classes: str | int | Iterable[int]) -> Tensor:
    """[10] float mask of the target classes."""
    mask = torch.zeros(NUM_CLASSES)
    mask[list(parse_classes(classes))] = 1.0
    return mask


def make_condition(classes: str | int | Iterable[int], beta: float, n: int = 1) -> Tensor:
    """[n, 11] condition rows (class mask, log beta) for a conditional posterior."""
    check_beta(beta)
    row = torch.cat([class_mask(classes), torch.tensor([float(beta)]).log()])
    return row.expand(n, -1).clone()


def split_condition(cond: Tensor) -> tuple[Tensor, Tensor]:
    """([B, 10] class mask, [B] beta) from [B, 11] conditions."""
    if cond.dim() != 2 or cond.shape[1] != COND_DIM:
        raise ValueError(f"expected conditions [B, {COND_DIM}] (mask, log beta), "
                         f"got {list(cond.shape)}")
    return cond[:, :NUM_CLASSES], cond[:, NUM_CLASSES].exp()


def set_log_prob(log_p: Tensor, mask: Tensor) -> Tensor:
    """[B] log max_{c in S} p(c | x) from log-probabilities [B, 10] and masks [B, 10] or [10]."""
    mask = mask.to(log_p.device).expand_as(log_p)
    return log_p.masked_fill(mask < 0.5, float("-inf")).max(1).values


def class_set_log_prob(classifier: DigitClassifier, x: Tensor, mask: Tensor) -> Tensor:
    """[B] log max_{c in S} p(c | x) for masks [B, 10] (or one mask [10])."""
    return set_log_prob(torch.log_softmax(classifier(x), dim=1), mask)


def class_set_reward(classifier: DigitClassifier, classes: str | int | Sequence[int]):
    """log r(x) = log max_{c in S} p(c | x) for a fixed class set S: ``x [B,1,28,28] -> [B]``."""
    mask = class_mask(classes)

    def log_reward(x: Tensor) -> Tensor:
        return class_set_log_prob(classifier, x, mask)

    return log_reward


def conditional_reward(classifier: DigitClassifier):
    """log r(x | cond) with the class set read from the condition's mask."""

    def log_reward(x: Tensor, cond: Tensor) -> Tensor:
        return class_set_log_prob(classifier, x, split_condition(cond)[0])

    return log_reward
