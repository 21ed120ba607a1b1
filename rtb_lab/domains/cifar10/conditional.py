"""One CIFAR-10 stand-in posterior conditioned on (class, beta) for three named classes,
and a sampler that falls back to the exact posterior (the prior bank) elsewhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import Tensor, nn

from rtb_lab.checkpoint import CheckpointError
from rtb_lab.domains.cifar10.prior import load_prior
from rtb_lab.domains.cifar10.reward import STANDIN, load_classifier
from rtb_lab.domains.cifar10.trainer import CIFAR10_CONFIG
from rtb_lab.domains.images import posterior as image_posterior
from rtb_lab.domains.images.bank import ImportanceBank
from rtb_lab.domains.images.classes import Classes
from rtb_lab.domains.images.conditional import (
    conditional_evaluator,
    set_expert_trainer,
    specialised_sampler,
)
from rtb_lab.domains.images.evaluation import evaluate_images
from rtb_lab.domains.images.posterior import SetExpertPosterior
from rtb_lab.train import RTBTrainer, TrainConfig

# A shape, a thinner shape and a texture: the three classes the shipped conditional
# posterior is trained on (a CPU budget; any other set falls back to the prior bank).
TRAIN_SETS: tuple[tuple[int, ...], ...] = tuple(STANDIN.parse(name)
                                               for name in ("disc", "triangle", "stripes"))
BETA_RANGE = (0.5, 2.0)
CONDITIONAL_ASSET = "cifar10_conditional_posterior.safetensors"
PER_SET_BATCH = 16
CONDITIONAL_CONFIG = replace(CIFAR10_CONFIG, loss="vargrad", cond_groups=len(TRAIN_SETS),
                             batch_size=PER_SET_BATCH * len(TRAIN_SETS), steps=300,
                             residual_per_beta=True, eval_every=50, checkpoint_every=25)


def conditional_config(steps: int | None = None, per_set_batch: int | None = None,
                       seed: int = 0) -> TrainConfig:
    """CONDITIONAL_CONFIG with `steps` and `per_set_batch` trajectories per class and step."""
    config = replace(CONDITIONAL_CONFIG, seed=seed)
    if steps is not None:
        config = config.with_steps(steps)
    if per_set_batch is not None:
        config = replace(config, batch_size=per_set_batch * len(TRAIN_SETS))
    return config


def make_conditional_trainer(config: TrainConfig | None = None, *,
                             prior: nn.Module | None = None,
                             classifier: nn.Module | None = None,
                             out_dir: str | Path | None = None,
                             evaluate: bool = True) -> RTBTrainer:
    """An RTB trainer (VarGrad per class) for the set-expert posterior over TRAIN_SETS,
    evaluated on each trained class at beta 1."""
    prior = prior if prior is not None else load_prior()
    classifier = classifier if classifier is not None else load_classifier()
    evaluator = conditional_evaluator(classifier, STANDIN, [(s, 1.0) for s in TRAIN_SETS]) \
        if evaluate else None
    return set_expert_trainer(prior, classifier, config or CONDITIONAL_CONFIG, space=STANDIN,
                              sets=TRAIN_SETS, beta_range=BETA_RANGE, evaluator=evaluator,
                              out_dir=out_dir)


def load_conditional_posterior(prior: nn.Module, path: str | Path | None = None
                               ) -> SetExpertPosterior:
    """The conditional posterior of `prior`: your file, or the shipped one.

    Raises:
        CheckpointError: missing or corrupt file, another prior's adapter, or a
            single-target posterior.
    """
    posterior = image_posterior.load_posterior(prior, path, CONDITIONAL_ASSET, STANDIN)
    if not isinstance(posterior, SetExpertPosterior):
        raise CheckpointError(f"{path} holds a single-target posterior, not a conditional one")
    return posterior


class AmortisedOrExact:
    """``sample(classes, beta, n)``: the conditional RTB posterior where it was trained
    (TRAIN_SETS, beta in BETA_RANGE), else the exact posterior from the prior bank.
    `source` names the one that drew the last samples; `evaluate` measures them beside
    the exact posterior (a panel's `sample_fn` and `evaluate_fn`). With no posterior
    (None) every draw comes from the bank."""

    def __init__(self, posterior: SetExpertPosterior | None, prior: nn.Module,
                 bank: ImportanceBank, classifier: nn.Module | None = None,
                 seed: int = 0) -> None:
        self.posterior, self.bank = posterior, bank
        self.classifier = classifier if classifier is not None else load_classifier()
        self.rtb = None if posterior is None else \
            specialised_sampler(posterior, prior, STANDIN, seed=seed)
        self.source = ""
        self.last_beta = float("nan")

    def trained_on(self, classes: Classes, beta: float) -> bool:
        """Whether the RTB posterior was trained for this class set and beta."""
        low, high = BETA_RANGE
        return (self.posterior is not None and STANDIN.parse(classes) in self.posterior.sets
                and low <= beta <= high)

    def __call__(self, classes: Classes, beta: float, n: int) -> Tensor:
        self.last_beta = beta
        if self.trained_on(classes, beta):
            self.source = "RTB posterior"
            return self.rtb(classes, beta, n)
        self.source = "exact (prior bank)"
        return self.bank.sample(classes, beta, n)

    def evaluate(self, classes: Classes, x: Tensor) -> dict[str, float | str]:
        """Metrics of the last draw `x`, who drew it, and the exact in-set share (and,
        for bank draws, their ESS)."""
        metrics: dict[str, float | str] = {
            "drawn by": self.source,
            **evaluate_images(x, classes, self.classifier, space=STANDIN),
            "exact in-set": self.bank.exact_metrics(classes, self.last_beta)["in_set"]}
        if self.source.startswith("exact"):
            metrics["ess"] = self.bank.last_ess
        return metrics
