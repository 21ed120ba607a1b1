"""The CIFAR-10 reward: a classifier of 32 x 32 colour images and its class sets.

Offline it classifies the ten stand-in classes (`standin.CLASS_NAMES`; named sets
"shapes" and "textures"); a classifier trained on real CIFAR-10 (`load_cifar10("train",
"full")`, online) uses the real class names (`CIFAR10`; "vehicles", "animals"). Both
are the shared `ConvClassifier` with r_S(x) = max_{c in S} p(c | x).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rtb_lab.domains.cifar10.data import CLASS_NAMES_CIFAR10, load_cifar10
from rtb_lab.domains.cifar10.standin import CLASS_NAMES, make_standin
from rtb_lab.domains.images import classifier as image_classifier
from rtb_lab.domains.images.classes import ClassSpace
from rtb_lab.domains.images.classifier import ConvClassifier
from rtb_lab.domains.images.data import ImageSet

IMAGE_SHAPE = (3, 32, 32)
STANDIN = ClassSpace(CLASS_NAMES, {"shapes": (0, 1, 2, 3, 4), "textures": (5, 6, 7, 8, 9)})
CIFAR10 = ClassSpace(CLASS_NAMES_CIFAR10, {"vehicles": (0, 1, 8, 9), "animals": (2, 3, 4, 5, 6, 7)})
CLASSIFIER_ASSET = "cifar10_classifier.safetensors"
CLASSIFIER_WIDTH = 32


def classifier_data(split: str, source: str = "offline") -> ImageSet:
    """The classifier's images: the stand-in ("offline") or real CIFAR-10 ("full",
    downloaded once; see `data.load_cifar10`)."""
    return make_standin(split) if source == "offline" else load_cifar10(split, source)


def train_classifier(epochs: int = 4, *, data: ImageSet | None = None, lr: float = 2e-3,
                     width: int = CLASSIFIER_WIDTH, seed: int = 0, source: str = "offline",
                     progress: bool = True) -> ConvClassifier:
    """Train the reward classifier on `data`, else on `classifier_data("train", source)`:
    the generated stand-in by default, or real CIFAR-10 with source="full"."""
    torch.manual_seed(seed)
    model = ConvClassifier(IMAGE_SHAPE, width, STANDIN.num_classes)
    return image_classifier.train_classifier(model, data or classifier_data("train", source),
                                             epochs, lr=lr, seed=seed, progress=progress,
                                             desc="CIFAR-10 classifier")


def load_classifier(path: str | Path | None = None,
                    device: torch.device | str = "cpu") -> ConvClassifier:
    """Load the frozen reward classifier: the shipped stand-in one (sha256-checked) or yours.

    Raises:
        CheckpointError: the file is missing, corrupt, or not a 3 x 32 x 32 classifier.
    """
    return image_classifier.load_classifier(path, CLASSIFIER_ASSET, IMAGE_SHAPE,
                                            "a CIFAR-10 classifier", device=device)
