"""The paper's metrics on MNIST digit sets (the shared ones of
`rtb_lab.domains.images.evaluation`), their reference images, and evaluators."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from rtb_lab.domains.images import evaluation as image_evaluation
from rtb_lab.domains.mnist.data import load_mnist
from rtb_lab.domains.mnist.prior import decode
from rtb_lab.domains.mnist.reward import DIGITS, DigitClassifier, class_mask, make_condition
from rtb_lab.train import RTBTrainer


def evaluate_images(x: Tensor, classes: str | int | Iterable[int], classifier: DigitClassifier,
                    reference: Tensor | None = None) -> dict[str, float]:
    """The paper's metrics for digit samples x [N, 1, 28, 28] (see
    `rtb_lab.domains.images.evaluation.evaluate_images`)."""
    return image_evaluation.evaluate_images(x, classes, classifier, reference, space=DIGITS)


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
    return image_evaluation.make_evaluator(classes, classifier, target_images(classes),
                                           space=DIGITS, num_samples=num_samples, cond=cond)


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
