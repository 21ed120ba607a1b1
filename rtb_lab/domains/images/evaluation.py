"""The paper's image metrics (E[log r], in-set share, diversity, feature FID) for any
classifier reward, and an evaluator for a single-target trainer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rtb_lab.domains.images.bank import ImportanceBank
from rtb_lab.domains.images.classes import Classes, ClassSpace, set_log_prob
from rtb_lab.domains.images.classifier import ConvClassifier
from rtb_lab.domains.images.prior import decode
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.train import RTBTrainer


@torch.no_grad()
def evaluate_images(x: Tensor, classes: Classes, classifier: ConvClassifier,
                    reference: Tensor | None = None, *, space: ClassSpace) -> dict[str, float]:
    """The paper's metrics for samples x [N, C, H, W] and a target class set.

    Returns:
        mean_log_reward (E[log r]), in_set (share classified in the set), diversity
        (mean pairwise cosine distance of classifier features) and, with `reference`
        images of the target classes, fid (Frechet distance of those features).
    """
    mask = space.mask(classes)
    features = classifier.features(x)
    log_p = torch.log_softmax(classifier.head(features), 1)
    log_r = set_log_prob(log_p, mask)
    metrics = {"mean_log_reward": float(log_r.mean()),
               "in_set": float(mask.to(x.device)[log_p.argmax(1)].mean()),
               "diversity": cosine_diversity(features)}
    if reference is not None:
        metrics["fid"] = frechet_distance(features, classifier.features(reference.to(x.device)))
    return metrics


def make_evaluator(classes: Classes, classifier: ConvClassifier, reference: Tensor | None,
                   *, space: ClassSpace, num_samples: int = 256,
                   cond: Tensor | None = None) -> Callable[[RTBTrainer], dict[str, float]]:
    """An evaluator for RTBTrainer: metrics of `num_samples` decoded posterior samples."""

    def evaluate(trainer: RTBTrainer) -> dict[str, float]:
        rows = None if cond is None else cond.expand(num_samples, -1)
        x = decode(trainer.prior, trainer.sample(num_samples, cond=rows).x)
        return evaluate_images(x, classes, classifier, reference, space=space)

    return evaluate


def bank_evaluator(bank: ImportanceBank, classifier: ConvClassifier
                   ) -> Callable[[Classes, Tensor], dict[str, float]]:
    """``evaluate(classes, x)`` for samples just drawn by ``bank.sample``: the paper's
    metrics (no FID), the draw's ESS, and the exact in-set share at beta 1 (a panel's
    `evaluate_fn`)."""

    def evaluate(classes: Classes, x: Tensor) -> dict[str, float]:
        return {**evaluate_images(x, classes, classifier, space=bank.space),
                "ess": bank.last_ess,
                "exact in-set at β = 1": bank.exact_metrics(classes, 1.0)["in_set"]}

    return evaluate
