"""The paper's MNIST metrics (E[log r], in-set share, diversity, feature FID) and
evaluators built on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from rtb_lab.domains.mnist.data import load_mnist
from rtb_lab.domains.mnist.prior import (
    decode,
)
from rtb_lab.domains.mnist.reward import (
    DigitClassifier,
    class_mask,
    make_condition,
    set_log_prob,
)
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.train import RTBTrainer


@torch.no_grad()
def evaluate_images(x: Tensor, classes: str | int | Iterable[int], classifier: DigitClassifier,
                    reference: Tensor | None = None) -> dict[str, float]:
    """The paper's metrics for samples x [N, 1, 28, 28] and a target class set.

    Returns:
        mean_log_reward (E[log r]), in_set (share classified in the set), diversity
        (mean pairwise cosine distance of classifier features) and, with `reference`
        images of the target classes, fid (Frechet distance of those features).
    """
    mask = class_mask(classes)
    features = classifier.features(x)
    log_p = torch.log_softmax(classifier.head(features), 1)
    log_r = set_log_prob(log_p, mask)
    metrics = {"mean_log_reward": float(log_r.mean()),
               "in_set": float(mask.to(x.device)[log_p.argmax(1)].mean()),
               "diversity": cosine_diversity(features)}
    if reference is not None:
        metrics["fid"] = frechet_distance(features, classifier.features(reference.to(x.device)))
    return metrics


def target_images(classes: str | int | Iterable[int], split: str = "test",
                  limit: int = 1000) -> Tensor:
    """Real images of the target classes (the FID reference), [N, 1, 28, 28]."""
    data = load_mnist(split, verbose=False)
    images, labels = data.tensors()
    keep = class_mask(classes)[labels] > 0.5
    return images[keep][:limit]


def make_evaluator(classes: str | int | Iterable[int], classifier: DigitClassifier,
                   num_samples: int = 256, cond: Tensor | None = None
                   ) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for RTBTrainer: metrics of `num_samples` posterior samples."""
    reference = target_images(classes)

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        rows = None if cond is None else cond.expand(num_samples, -1)
        x = decode(trainer.prior, trainer.sample(num_samples, cond=rows).x)
        return evaluate_images(x, classes, classifier, reference)

    return evaluate


def set_evaluator(classifier: DigitClassifier
                  ) -> Callable[[str | int | Iterable[int], Tensor], dict[str, float]]:
    """``evaluate(classes, x) -> {in_set, mean_log_reward, diversity}`` (no FID: fast)."""
    return lambda classes, x: evaluate_images(x, classes, classifier)


def conditional_evaluator(classifier: DigitClassifier,
                          targets: Iterable[tuple[str | int, float]] = (("even", 1.0), (1, 1.0),
                                                                        (3, 1.0)),
                          num_samples: int = 256) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for a conditional trainer: ``in_set/<set>@<beta>`` and
    ``log_r/<set>@<beta>`` from `num_samples` posterior samples per target."""

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        metrics = {}
        for classes, beta in targets:
            cond = make_condition(classes, beta, num_samples).to(trainer.device)
            x = decode(trainer.prior, trainer.sample(num_samples, cond=cond).x)
            found = evaluate_images(x, classes, classifier)
            metrics[f"in_set/{classes}@{beta:g}"] = found["in_set"]
            metrics[f"log_r/{classes}@{beta:g}"] = found["mean_log_reward"]
        return metrics

    return evaluate
