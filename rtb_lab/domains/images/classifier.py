"""The classifier reward of the vision domains: a small CNN, its training and its files.

Two conv layers and an MLP head, for any C x H x W input whose sides divide by 4;
`features` (the 128-d penultimate layer) also serves the diversity and feature-FID
metrics. Training shifts images by up to 2 pixels (cheap augmentation, so the reward
does not hinge on exact positions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rtb_lab.checkpoint import CheckpointError, load_module, save_weights
from rtb_lab.domains.images.classes import set_log_prob
from rtb_lab.domains.images.data import ImageSet
from rtb_lab.rtb import freeze

M = TypeVar("M", bound=nn.Module)
ImageShape = tuple[int, int, int]


class ConvClassifier(nn.Module):
    """Two conv layers and an MLP head; `features` is the 128-d penultimate layer.

    Args:
        image_shape: (C, H, W) of the inputs; H and W must divide by 4.
        width: channels of the first conv layer (the second has twice as many).
        num_classes: outputs of the head.
    """

    def __init__(self, image_shape: ImageShape, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        channels, height, breadth = image_shape
        if height % 4 or breadth % 4:
            raise ValueError(f"image sides must divide by 4, got {list(image_shape)}")
        self.image_shape, self.width = tuple(image_shape), width
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (height // 4) * (breadth // 4), 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """[B, C, H, W] images in [-1, 1] -> [B, 128] features."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"expected images [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {list(x.shape)}")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, num_classes] logits."""
        return self.head(self.features(x))


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = 2) -> Tensor:
    """The batch translated by up to `max_shift` pixels (one shift per batch), padded with -1."""
    height, breadth = x.shape[-2:]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy:dy + height, dx:dx + breadth]


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


def train_classifier(model: M, data: ImageSet, epochs: int = 4, *, batch_size: int = 128,
                     lr: float = 2e-3, seed: int = 0, progress: bool = True,
                     desc: str = "classifier") -> M:
    """Train `model` on `data` by cross-entropy on shifted batches; return it frozen."""
    images, labels = data.tensors()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss() -> Tensor:
        index = torch.randint(len(labels), (batch_size,), generator=generator)
        return F.cross_entropy(model(random_shift(images[index], generator)), labels[index])

    return fit_classifier(model, batch_loss, epochs * (len(labels) // batch_size), lr, desc,
                          progress)


@torch.no_grad()
def accuracy(model: nn.Module, data: ImageSet) -> float:
    """Top-1 accuracy of `model` on `data`."""
    images, labels = data.tensors()
    predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    return float((predictions == labels).float().mean())


def save_classifier(model: ConvClassifier, path: str | Path, command: str,
                    test_accuracy: float, arch: str = "ConvClassifier") -> str:
    """Save a classifier as safetensors with its shape and provenance; return its sha256."""
    meta = {"arch": arch, "width": model.width, "image_shape": list(model.image_shape),
            "num_classes": model.head.out_features, "command": command,
            "test_accuracy": test_accuracy}
    return save_weights(model, path, json.loads(json.dumps(meta)))


def load_classifier(path: str | Path | None, asset: str, image_shape: ImageShape,
                    what: str, arch: str = "ConvClassifier",
                    device: torch.device | str = "cpu") -> ConvClassifier:
    """Load a frozen classifier for `image_shape`: the shipped `asset` or your file.

    Raises:
        CheckpointError: the file is missing, corrupt, not `what`, or for other images.
    """
    def build(meta: dict) -> ConvClassifier:
        shape = tuple(meta.get("image_shape", image_shape))
        if shape != tuple(image_shape):
            raise CheckpointError(f"{path or asset} is a classifier for images {list(shape)}, "
                                  f"expected {list(image_shape)}")
        return ConvClassifier(shape, meta["width"], meta.get("num_classes", 10))

    model = load_module(path, asset, arch, what, build)
    return freeze(model.eval().to(device))


def class_set_log_prob(classifier: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """[B] log max_{c in S} p(c | x) for masks [B, K] (or one mask [K])."""
    return set_log_prob(torch.log_softmax(classifier(x), dim=1), mask)
