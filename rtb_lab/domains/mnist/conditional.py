"""One MNIST posterior conditioned on (class set, beta): its trainer, its sampler,
and the fallback to the exact posterior where it was not trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rtb_lab.diffusion import sample_trajectories
from rtb_lab.domains.images import conditional as image_conditional
from rtb_lab.domains.mnist import bank as mnist_bank
from rtb_lab.domains.mnist.evaluation import evaluate_images
from rtb_lab.domains.mnist.guided import GuidedPosterior
from rtb_lab.domains.mnist.io import load_conditional_posterior
from rtb_lab.domains.mnist.posterior import (
    BETA_RANGE,
    TRAIN_SETS,
    LoRAPosterior,
    SetExpertPosterior,
    warm_start,
)
from rtb_lab.domains.mnist.prior import (
    IMAGE_SHAPE,
    NUM_STEPS,
    EpsNet,
    decode,
    load_prior,
    make_family,
)
from rtb_lab.domains.mnist.reward import (
    DIGITS,
    DigitClassifier,
    class_set_reward,
    conditional_reward,
    load_classifier,
    make_condition,
    parse_classes,
    split_condition,
)
from rtb_lab.domains.mnist.trainer import MNIST_CONFIG
from rtb_lab.domains.mnist.value import NoisyClassifier
from rtb_lab.resample import resample_posterior
from rtb_lab.train import RTBTrainer, TrainConfig

# The conditional posterior (sized for a GPU): VarGrad within each of 12 groups of 64
# trajectories, one group per trained class set, each with its own beta. Every set owns
# its LoRA block, so each block sees the batch a single-target run would (64, not 32).
CONDITIONAL_CONFIG = replace(MNIST_CONFIG, loss="vargrad", cond_groups=len(TRAIN_SETS),
                             batch_size=64 * len(TRAIN_SETS), steps=1000,
                             residual_per_beta=True, eval_every=100, checkpoint_every=100)


def conditional_config(steps: int | None = None, per_set_batch: int | None = None,
                       lr: float | None = None, *, warm: bool = False, seed: int = 0,
                       num_sets: int = len(TRAIN_SETS)) -> TrainConfig:
    """CONDITIONAL_CONFIG with `steps`, `per_set_batch` trajectories per set and step,
    a start `lr` (cosine-decayed to a tenth of it). `warm` (training continues from a
    trained posterior) turns exploration off: it is for a policy still near the prior."""
    config = replace(CONDITIONAL_CONFIG, seed=seed)
    if steps is not None:
        config = config.with_steps(steps)
    if per_set_batch is not None:
        config = replace(config, batch_size=per_set_batch * num_sets, cond_groups=num_sets)
    if lr is not None:
        config = replace(config, lr=lr, lr_end=lr / 10, scalar_lr=10 * lr)
    return replace(config, explore=0.0) if warm else config


def sample_conditions(sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                      beta_range: tuple[float, float] = BETA_RANGE
                      ) -> Callable[[int, torch.Generator], Tensor]:
    """A sampler of digit-set conditions (see `rtb_lab.domains.images.conditional`)."""
    return image_conditional.sample_conditions(DIGITS, sets, beta_range)


def make_conditional_trainer(config: TrainConfig | None = None, *,
                             prior: EpsNet | None = None,
                             classifier: DigitClassifier | None = None, rank: int = 4,
                             sets: Iterable[tuple[int, ...]] = TRAIN_SETS,
                             beta_range: tuple[float, float] = BETA_RANGE,
                             num_steps: int = NUM_STEPS, device: torch.device | str = "cpu",
                             evaluator: Callable[[RTBTrainer], dict[str, float]] | None = None,
                             out_dir: str | Path | None = None,
                             init_from: str | Path | None = None,
                             value: NoisyClassifier | None = None,
                             init_scale: float = 1.0) -> RTBTrainer:
    """An RTB trainer for one posterior conditioned on (class set, beta), with VarGrad.

    The posterior is a `SetExpertPosterior` (a LoRA block of `rank` per set), trained on
    its own samples (with the config's exploration). See `conditional_evaluator` for an
    evaluator. `init_from` starts from a saved conditional posterior (same sets and
    rank). With a `value` network the policy is a value-guided `guided.GuidedPosterior`
    around the set experts, its per-set, per-step guidance scales starting at
    `init_scale` (or at those of `init_from`, if it is value-guided too).
    """
    prior = prior or load_prior(device=device)
    classifier = classifier or load_classifier(device=device)
    config = config or CONDITIONAL_CONFIG
    sets = tuple(sets)
    reward = conditional_reward(classifier)
    posterior = SetExpertPosterior(prior, sets, rank)
    trained = None if init_from is None else load_conditional_posterior(prior, init_from)
    if trained is not None:
        warm_start(posterior, getattr(trained, "base", trained))
    if value is not None:
        posterior = GuidedPosterior(posterior, num_steps=num_steps, value=value,
                                    init_scale=init_scale)
        if isinstance(trained, GuidedPosterior):  # continue its learned scales too
            with torch.no_grad():
                posterior.guide.copy_(trained.guide)
    return RTBTrainer(prior, posterior, make_family(num_steps),
                      lambda x, cond: reward(decode(prior, x), cond), IMAGE_SHAPE, config,
                      cond_sampler=sample_conditions(sets, beta_range),
                      beta_of_cond=lambda cond: split_condition(cond)[1], out_dir=out_dir,
                      evaluator=evaluator)


def conditional_sampler(posterior: LoRAPosterior, prior: EpsNet, num_steps: int = NUM_STEPS,
                        seed: int = 0, candidates: int = 1,
                        classifier: DigitClassifier | None = None
                        ) -> Callable[[str | int | Iterable[int], float, int], Tensor]:
    """``sample(classes, beta, n) -> [n, 1, 28, 28]`` images from a conditional posterior.

    Every call reuses the same noise (seed), so changing the classes or beta in a widget
    shows the effect of the condition alone. A `SetExpertPosterior` is specialised to
    the requested condition first (same samples, cheaper network). With `candidates`
    K > 1, each image is resampled from K posterior samples by its exact importance
    weight toward p r^beta (`rtb_lab.resample`; needs the reward's `classifier`).
    """
    if candidates > 1 and classifier is None:
        raise ValueError("resampling (candidates > 1) needs the reward's classifier=")
    family = make_family(num_steps)
    device = next(posterior.parameters()).device

    def sample(classes: str | int | Iterable[int], beta: float, n: int) -> Tensor:
        if posterior.cond_dim > 0:  # a conditional posterior (maybe guided)
            net, cond = posterior.specialise(prior, classes, beta), None
        else:
            net, cond = posterior, make_condition(classes, beta, n).to(device)
        generator = torch.Generator().manual_seed(seed)
        if candidates == 1:
            x_end = sample_trajectories(net, family, n, IMAGE_SHAPE, cond=cond, device=device,
                                        generator=generator).x
            return decode(prior, x_end)
        reward = class_set_reward(classifier, parse_classes(classes))
        found = resample_posterior(net, prior, family, lambda x, *_: reward(decode(prior, x)),
                                   n, IMAGE_SHAPE, candidates=candidates, beta=beta,
                                   cond=None if cond is None else cond[0],
                                   generator=generator, device=device)
        return decode(prior, found.x)

    return sample


class AmortisedOrExact:
    """``sample(classes, beta, n)``: the RTB conditional posterior where it was trained
    (its class sets, beta in `beta_range`), else the exact posterior from a resampled
    prior bank. `source` names the one that drew the last samples; `evaluate` measures
    them beside the exact posterior (a widget's `evaluate_fn`).

    Args:
        posterior: a conditional `SetExpertPosterior`.
        prior: the frozen prior (decodes the final states).
        bank: an `mnist_bank.ImportanceBank` for the other conditions and the exact figures.
        classifier: the reward classifier (for `evaluate`).
        beta_range: the betas the posterior was trained on.
        seed: the noise seed of the RTB samples (fixed: only the condition changes them).
        candidates: K > 1 resamples each RTB image from K by importance weight
            (`conditional_sampler`; needs `classifier`).
    """

    def __init__(self, posterior: SetExpertPosterior, prior: EpsNet,
                 bank: mnist_bank.ImportanceBank, classifier: DigitClassifier | None = None,
                 beta_range: tuple[float, float] = BETA_RANGE, seed: int = 0,
                 candidates: int = 1) -> None:
        self.posterior, self.bank, self.beta_range = posterior, bank, beta_range
        self.classifier = classifier
        self.rtb = conditional_sampler(posterior, prior, seed=seed, candidates=candidates,
                                       classifier=classifier)
        self.rtb_name = "RTB posterior" if candidates == 1 else \
            f"RTB posterior, 1 of {candidates} resampled"
        self.source = ""
        self.last_beta = float("nan")

    def trained_on(self, classes: str | int | Iterable[int], beta: float) -> bool:
        """Whether the RTB posterior was trained for this class set and beta."""
        low, high = self.beta_range
        return parse_classes(classes) in self.posterior.sets and low <= beta <= high

    def __call__(self, classes: str | int | Iterable[int], beta: float, n: int) -> Tensor:
        self.last_beta = beta
        if self.trained_on(classes, beta):
            self.source = self.rtb_name
            return self.rtb(classes, beta, n)
        self.source = "exact (prior bank)"
        return self.bank.sample(classes, beta, n)

    def evaluate(self, classes: str | int | Iterable[int], x: Tensor) -> dict[str, Any]:
        """Who drew `x`, its in-set share, E[log r] and diversity, and the exact
        posterior's in-set share and bank ESS at the last beta."""
        if self.classifier is None:
            raise ValueError("AmortisedOrExact.evaluate needs the classifier= argument")
        exact = self.bank.exact_metrics(classes, self.last_beta)
        return {"drawn by": self.source, **evaluate_images(x, classes, self.classifier),
                "exact in_set": exact["in_set"], "bank ESS": exact["ess"]}
