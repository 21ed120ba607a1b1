"""The paper's image metrics (E[log r], in-set share, diversity, feature FID) for any
classifier reward, and an evaluator for a single-target trainer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains.images.bank import ImportanceBank
from rtb_lab.domains.images.classes import Classes, ClassSpace, set_log_prob
from rtb_lab.domains.images.classifier import ConvClassifier, class_set_log_prob
from rtb_lab.domains.images.prior import EpsNet, decode, make_family
from rtb_lab.metrics import cosine_diversity, frechet_distance
from rtb_lab.resample import importance_log_weights, kl_to_target
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


@torch.no_grad()
def measure_posterior(net: nn.Module, prior: EpsNet, classifier: ConvClassifier,
                      bank: ImportanceBank, classes: Classes, beta: float = 1.0,
                      num_samples: int = 256, seed: int = 0) -> dict[str, float]:
    """A single-target posterior (or the prior itself) against the exact posterior:
    the paper's metrics of `num_samples` samples and ``kl``, KL(q || p r^beta / Z) in
    nats with log Z from the bank, beside the bank's exact in-set share."""
    family = make_family()
    mask = bank.space.mask(classes)
    traj = sample_trajectories(net, family, num_samples, prior.image_shape,
                               generator=torch.Generator().manual_seed(seed),
                               device=next(net.parameters()).device)
    x = decode(prior, traj.x)
    traj = traj.with_log_reward(class_set_log_prob(classifier, x, mask))
    log_w = importance_log_weights(net, prior, family, traj, beta, chunk_steps=5)
    return {**evaluate_images(x, classes, classifier, space=bank.space),
            "kl": kl_to_target(log_w, bank.log_z(classes, beta)),
            "exact_in_set": bank.exact_metrics(classes, beta)["in_set"]}
