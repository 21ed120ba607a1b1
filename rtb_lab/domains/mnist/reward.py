"""The MNIST reward: the digit classifier, digit-set rewards and their conditions.

The reward of a set of target digits S is r(x) = max_{c in S} p(c | x), as in the
paper (one digit, or the even / odd digits); the posterior is p(x) r(x)^beta. A
conditional posterior reads the pair (S, beta) as a vector: a 10-entry mask of S
followed by log beta. The machinery is shared with the other vision domains
(`rtb_lab.domains.images`); this module binds MNIST's shape, digits and assets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from rtb_lab.domains.images import classifier as image_classifier
from rtb_lab.domains.images.classes import ClassSpace, set_log_prob  # noqa: F401
from rtb_lab.domains.images.classifier import (  # noqa: F401  (MNIST's reward API)
    ConvClassifier,
    accuracy,
    class_set_log_prob,
    fit_classifier,
)
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.domains.mnist.data import load_mnist

IMAGE_SHAPE = (1, 28, 28)
DIGITS = ClassSpace(tuple(str(d) for d in range(10)),
                    {"even": (0, 2, 4, 6, 8), "odd": (1, 3, 5, 7, 9)})
NUM_CLASSES = DIGITS.num_classes
COND_DIM = DIGITS.cond_dim
CLASSIFIER_ASSET = "mnist_classifier.safetensors"
NAMED_SETS = dict(DIGITS.named_sets)


class DigitClassifier(ConvClassifier):
    """The MNIST reward classifier: a `ConvClassifier` for 1 x 28 x 28 digits."""

    def __init__(self, width: int = 32) -> None:
        super().__init__(IMAGE_SHAPE, width, NUM_CLASSES)


def train_classifier(epochs: int = 4, *, batch_size: int = 128, lr: float = 2e-3,
                     width: int = 32, data: ImageSet | None = None, seed: int = 0,
                     progress: bool = True) -> DigitClassifier:
    """Train the reward classifier on MNIST (default: the offline training subset)."""
    torch.manual_seed(seed)
    model = DigitClassifier(width)
    return image_classifier.train_classifier(
        model, data or load_mnist("train"), epochs, batch_size=batch_size, lr=lr, seed=seed,
        progress=progress, desc="MNIST classifier")


def save_classifier(model: DigitClassifier, path: str | Path, command: str,
                    test_accuracy: float) -> str:
    """Save the classifier as safetensors with provenance; return its sha256."""
    return image_classifier.save_classifier(model, path, command, test_accuracy,
                                            arch="DigitClassifier")


def load_classifier(path: str | Path | None = None,
                    device: torch.device | str = "cpu") -> DigitClassifier:
    """Load the frozen reward classifier: the shipped one (sha256-checked) or yours.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a DigitClassifier.
    """
    return image_classifier.load_classifier(path, CLASSIFIER_ASSET, IMAGE_SHAPE,
                                            "an MNIST classifier", "DigitClassifier", device)


# ------------------------------------------------------------------ digit sets
def parse_classes(classes: str | int | Iterable[int]) -> tuple[int, ...]:
    """A sorted tuple of digits from "even", "odd", "3", 3, "17" or [1, 7].

    Raises:
        ValueError: an unknown name, an empty set, or a digit outside 0..9.
    """
    return DIGITS.parse(classes)


def class_mask(classes: str | int | Iterable[int]) -> Tensor:
    """[10] float mask of the target digits."""
    return DIGITS.mask(classes)


def make_condition(classes: str | int | Iterable[int], beta: float, n: int = 1) -> Tensor:
    """[n, 11] condition rows (class mask, log beta) for a conditional posterior."""
    return DIGITS.condition(classes, beta, n)


def split_condition(cond: Tensor) -> tuple[Tensor, Tensor]:
    """([B, 10] class mask, [B] beta) from [B, 11] conditions."""
    return DIGITS.split_condition(cond)


def class_set_reward(classifier: ConvClassifier, classes: str | int | Sequence[int],
                     space: ClassSpace = DIGITS):
    """log r(x) = log max_{c in S} p(c | x) for a fixed class set S: ``x [B, C, H, W] -> [B]``."""
    mask = space.mask(classes)

    def log_reward(x: Tensor) -> Tensor:
        return class_set_log_prob(classifier, x, mask)

    return log_reward


def conditional_reward(classifier: ConvClassifier, space: ClassSpace = DIGITS):
    """log r(x | cond) with the class set read from the condition's mask."""

    def log_reward(x: Tensor, cond: Tensor) -> Tensor:
        return class_set_log_prob(classifier, x, space.split_condition(cond)[0])

    return log_reward
