"""RTB fine-tuning of an image prior for one class set and beta: the target, and a
trainer over a LoRA posterior (or any posterior module a domain builds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from rtb_lab.domains.images.classes import ClassSpace
from rtb_lab.domains.images.classifier import class_set_log_prob
from rtb_lab.domains.images.posterior import LoRAPosterior
from rtb_lab.domains.images.prior import NUM_STEPS, EpsNet, decode, make_family
from rtb_lab.rtb import check_beta
from rtb_lab.train import RTBTrainer, TrainConfig


@dataclass(frozen=True)
class ClassSetTarget:
    """The reward r_S(x) = max_{c in S} p(c | x) for a class set S, tilted by beta.

    Attributes:
        name: how the user named S ("even", "3", "disc", ...).
        classes: the class indices in S.
        beta: the reward exponent.
    """

    name: str
    classes: tuple[int, ...]
    beta: float = 1.0


def class_set_target(name: str | int, beta: float, space: ClassSpace) -> ClassSetTarget:
    """A `ClassSetTarget` from a class-set name (ValueError naming the accepted forms)."""
    check_beta(beta)
    return ClassSetTarget(str(name), space.parse(name), float(beta))


def class_set_trainer(prior: EpsNet, classifier: nn.Module, target: ClassSetTarget,
                      config: TrainConfig, *, space: ClassSpace,
                      posterior: nn.Module | None = None, rank: int = 8,
                      num_steps: int = NUM_STEPS, out_dir: str | Path | None = None,
                      evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None
                      ) -> RTBTrainer:
    """An RTB trainer for p(x) r_S(x)^beta over final states, decoded by the prior.

    The policy is `posterior` or, by default, a rank-`rank` LoRA copy of the prior.
    """
    check_beta(target.beta)
    mask = space.mask(target.classes)
    posterior = posterior if posterior is not None else LoRAPosterior(prior, rank)
    return RTBTrainer(prior, posterior, make_family(num_steps),
                      lambda x: class_set_log_prob(classifier, decode(prior, x), mask),
                      prior.image_shape, replace(config, beta=target.beta),
                      evaluator=evaluator, out_dir=out_dir)
